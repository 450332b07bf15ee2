"""The device side of a lab run through Ray: what a host with phones runs, without torch or a converter.

A host joins the lab's Ray cluster with ``splitbench cluster join`` (:mod:`harness.measure.lab.cluster`): its Ray
node carries one resource ``phone:<device_id>`` of 1 per device (the local profile is a device too), and
its *registration* (which target string opens each device on that host, what it is) is written to the
cluster's key-value store. Ray cannot add a resource to a running node: a phone plugged in later needs
the host to join again.

Per run, the driver (:mod:`harness.measure.lab.driver`) starts one :class:`DeviceActor` per device on the
device's host, holding that device's resource (so two runs never share a device) and no CPU. The actor
keeps one agent session (the same :class:`harness.measure.session.Session` as a local run: prepare once per
content key, failures as rows, results checked against the contract), takes the host's lease of the
device (so a local run on that host does not measure on it at the same time), and places each
artifact in a per-host content-addressed cache before the agent's ``prepare``: read from a shared path
when the driver's file is visible here with the same bytes, else fetched once from Ray's object store.

This module imports neither torch nor an exporter (a test checks it), and imports Ray only inside
functions: the driver's code reaches the hosts through Ray, never the other way round.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from device_agents.base import (CONTRACT_VERSION, AgentError, ArtifactFile, ArtifactRef, DeviceInfo, DeviceUnavailable,
                                MeasureJob, sha256_file, target_platform)
from harness.core.clock import utc_now

NAMESPACE = "splitbench"  # the Ray namespace of splitbench's actors and key-value entries
RESOURCE_PREFIX = "phone:"  # a device is the resource phone:<device_id> (quantity 1) of its host's node
_KV_DEVICE = "device/"  # registration of a device, by device id
_KV_HOLDER = "holder/"  # the run that holds a device, by device id (for `splitbench cluster status`)
ENV_DEVICE_CACHE = "SPLITBENCH_DEVICE_CACHE"
ARTIFACT_MODES = {
    "auto": "the driver's path when this host sees the same bytes there (a shared file system), else the "
            "object store",
    "object-store": "always through Ray's object store into the host's content cache",
    "shared": "only the driver's path (a shared file system); a host that cannot read it fails the job",
}


def resource_name(device_id: str) -> str:
    return RESOURCE_PREFIX + device_id



# --------------------------------------------------------------------------------------------------
# Registrations


@dataclass(frozen=True)
class Registration:
    """A device a host offers to the lab: its id, the target string that opens it on that host, what it is.

    ``opener`` names the function that opens its agent (``module:function``, default
    :func:`device_agents.base.open_agent`); ``options`` are the host's agent options, under the spec's.
    """

    device_id: str
    target: str  # what the host opens: "cpu-1core:1", "android:R58N12ABCDE", "ios:00008110-..."
    host: str
    info: dict[str, Any]  # DeviceInfo.to_dict() when the host joined (the run asks the device again)
    options: dict[str, Any] = field(default_factory=dict)
    opener: str = ""
    registered_at: str = ""
    node_id: str = ""  # the Ray node that carries its resource (set when the node is up)

    @property
    def resource(self) -> str:
        return resource_name(self.device_id)

    @property
    def name(self) -> str:
        return str(self.info.get("name") or self.device_id)

    def to_json(self) -> bytes:
        return json.dumps(dataclasses.asdict(self), sort_keys=True, default=str).encode()

    @classmethod
    def from_json(cls, data: bytes) -> "Registration":
        return cls(**json.loads(data))


def target_of(info: DeviceInfo) -> str:
    """The target string that opens a discovered device on its host, and only that device."""
    if info.platform == "local":
        cpu = info.fingerprint.get("pinned_cpu")
        return f"{info.target}:{cpu}" if cpu is not None else info.target
    return f"{info.target}:{info.device_id}"


def host_registrations(targets: list[str] | None = None, *, options: dict[str, dict[str, Any]] | None = None,
                       opener: str = "") -> tuple[list[Registration], list[str]]:
    """This host's devices as registrations, and notes on platforms that could not be asked.

    ``targets`` None: every device :func:`device_agents.base.discover_devices` finds (the local profile and
    each attached phone); else exactly these targets, each opened and described once. ``options`` maps a
    platform (``local``, ``android``, ``ios``) to its agent options.
    """
    from device_agents.base import discover_devices

    host = platform.node()
    options = options or {}
    stamp = utc_now()
    if targets is None:
        found, notes = discover_devices()
        return [Registration(i.device_id, target_of(i), host, i.to_dict(), dict(options.get(i.platform, {})),
                             opener, stamp) for i in found], notes
    regs = []
    for target in targets:
        opts = dict(options.get(target_platform(target), {}))
        with _open(opener)(target, **opts) as agent:
            info = agent.describe()
        regs.append(Registration(info.device_id, target, host, info.to_dict(), opts, opener, stamp))
    return regs, []


def node_resources(regs: list[Registration]) -> dict[str, float]:
    """The custom resources of the node that carries these devices: one ``phone:<device_id>`` of 1 each."""
    ids = [r.device_id for r in regs]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise AgentError(f"device {', '.join(dup)} is listed twice on this host; list each device once")
    return {r.resource: 1.0 for r in regs}


def _kv():
    from ray.experimental import internal_kv

    return internal_kv


def register(regs: list[Registration]) -> None:
    """Write the registrations into the cluster's key-value store (the caller is connected to Ray)."""
    kv = _kv()
    for r in regs:
        kv._internal_kv_put(_KV_DEVICE + r.device_id, r.to_json(), overwrite=True, namespace=NAMESPACE)


def unregister(device_ids: list[str]) -> None:
    kv = _kv()
    for d in device_ids:
        kv._internal_kv_del(_KV_DEVICE + d, namespace=NAMESPACE)


def registrations() -> dict[str, Registration]:
    """Every registration in the cluster, by device id (including devices whose host has left)."""
    kv = _kv()
    out = {}
    for key in kv._internal_kv_list(_KV_DEVICE, namespace=NAMESPACE):
        data = kv._internal_kv_get(key, namespace=NAMESPACE)
        if data:
            reg = Registration.from_json(data)
            out[reg.device_id] = reg
    return out


def holders() -> dict[str, dict[str, Any]]:
    """Which run holds each device, as the device actors wrote it (stale once the device is free again)."""
    kv = _kv()
    out = {}
    for key in kv._internal_kv_list(_KV_HOLDER, namespace=NAMESPACE):
        data = kv._internal_kv_get(key, namespace=NAMESPACE)
        if data:
            k = key.decode() if isinstance(key, bytes) else key
            out[k[len(_KV_HOLDER):]] = json.loads(data)
    return out


# --------------------------------------------------------------------------------------------------
# Artifacts on a device host


class ArtifactPlacementError(Exception):
    """An artifact could not be placed on this host (bytes differ from their hashes, disk full, no path)."""


def device_cache_dir() -> Path:
    """Where a host keeps artifacts by content: ``$SPLITBENCH_DEVICE_CACHE``, else the user's cache directory."""
    if os.environ.get(ENV_DEVICE_CACHE):
        return Path(os.environ[ENV_DEVICE_CACHE])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "splitbench" / "device-artifacts"


def _matches(root: Path, files: tuple[ArtifactFile, ...], *, hash_: bool) -> bool:
    """Whether every file is under ``root`` with its size (and, with ``hash_``, its sha256)."""
    for f in files:
        p = root / f.relpath
        try:
            if p.stat().st_size != f.size_b:
                return False
        except OSError:
            return False
        if hash_ and sha256_file(p) != f.sha256:
            return False
    return True


def read_payload(ref: ArtifactRef) -> dict[str, bytes]:
    """The bytes of every file of an artifact, by relative path: what the driver puts in the object store."""
    root = Path(ref.root)
    return {f.relpath: (root / f.relpath).read_bytes() for f in ref.files}


def _relocated(ref: ArtifactRef, root: Path) -> ArtifactRef:
    return dataclasses.replace(ref, root=str(root), path=str(root / ref.relpath))


def place_artifact(ref: ArtifactRef, fetch: Callable[[], dict[str, bytes]] | None, *, mode: str = "auto",
                   cache: Path | None = None) -> tuple[ArtifactRef, str]:
    """Make ``ref``'s files readable on this host; return the ref to hand the agent and how it got here.

    ``auto``: the host's content cache, else the driver's path when its bytes match here (a shared file
    system), else ``fetch()`` (the object store) into the cache. The cache is keyed by the artifact's
    content hash and published by an atomic rename, so actors of one host share it and a crash never
    leaves half an entry; fetched bytes are checked against their sha256 before they are kept.
    """
    if mode not in ARTIFACT_MODES:
        raise ArtifactPlacementError(f"unknown artifact mode {mode!r}; use one of {', '.join(ARTIFACT_MODES)}")
    if mode == "shared":
        if _matches(Path(ref.root), ref.files, hash_=True):
            return ref, "shared path"
        raise ArtifactPlacementError(f"{ref.path} is not on this host with the driver's bytes (artifact mode "
                                     "'shared' needs a shared file system; use 'auto' or 'object-store')")
    cache = cache or device_cache_dir()
    entry = cache / ref.sha256
    if entry.is_dir() and _matches(entry, ref.files, hash_=False):
        return _relocated(ref, entry), "host cache"
    if mode == "auto" and _matches(Path(ref.root), ref.files, hash_=True):
        return ref, "shared path"
    if fetch is None:
        raise ArtifactPlacementError(f"{ref.path} is not on this host and no bytes were sent")
    payload = fetch()
    try:
        cache.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{ref.sha256[:16]}-", dir=cache))
        try:
            for f in ref.files:
                data = payload.get(f.relpath)
                if data is None or len(data) != f.size_b or hashlib.sha256(data).hexdigest() != f.sha256:
                    raise ArtifactPlacementError(f"artifact {ref.key[:12]}: {f.relpath} arrived with other bytes "
                                                 "than its sha256 says")
                dest = tmp / f.relpath
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(data)
            try:
                os.rename(tmp, entry)  # publish whole; another actor of this host may have won the race
            except OSError:
                if not (entry.is_dir() and _matches(entry, ref.files, hash_=False)):
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    except OSError as exc:
        raise ArtifactPlacementError(f"cannot place artifact {ref.key[:12]} in {cache}: {exc}") from None
    return _relocated(ref, entry), "object store"


# --------------------------------------------------------------------------------------------------
# The actor


def _open(opener: str) -> Callable[..., Any]:
    """The function that opens an agent: ``module:function``, or ``device_agents.base.open_agent``."""
    if not opener:
        from device_agents.base import open_agent

        return open_agent
    module, _, name = opener.partition(":")
    return getattr(importlib.import_module(module), name)


class DeviceActor:
    """One device of this host for one run (a Ray actor: the driver adds the ``ray.remote`` options).

    Methods answer with plain dicts so nothing of the driver's (torch, the exporters, the spec) is ever
    unpickled here. ``open`` answers ``{"info": ...}``, ``{"busy": ...}`` (another run on this host holds
    the device), ``{"lost": ...}`` or ``{"error": ...}``; ``measure`` answers ``{"result": ...}`` or
    ``{"lost": ...}``; ``close`` runs in its own concurrency group, so it can end a job in flight.
    """

    def __init__(self, registration: dict[str, Any], options: dict[str, Any], run: dict[str, Any],
                 artifacts: str = "auto"):
        self.reg = Registration(**registration)
        self.options = {**self.reg.options, **options}
        self.run, self.artifacts = run, artifacts
        self.stack = contextlib.ExitStack()
        self.session = None
        self.placed: dict[str, str] = {}  # artifact key -> how it reached this host
        self.versions: dict[str, Any] = {}
        self.lost: str | None = None  # once the device is gone, queued jobs are answered without touching it

    def open(self) -> dict[str, Any]:
        from harness import __version__
        from harness.results import store
        from harness.measure.session import Session

        if self.session is not None:
            return self._hello()
        try:
            self.stack.enter_context(store.device_lease(self.reg.device_id, timeout_s=0, poll_s=0.1))
        except store.ResultsBusy as exc:
            return {"busy": str(exc)}
        try:
            agent = _open(self.reg.opener)(self.reg.target, **self.options)
            self.stack.enter_context(agent)
            info = agent.describe()
        except DeviceUnavailable as exc:
            self.close()
            return {"lost": exc.reason}
        except Exception as exc:  # noqa: BLE001 - an AgentError or a broken agent: one line for the driver
            self.close()
            return {"error": f"{type(exc).__name__}: {exc}" if not isinstance(exc, AgentError) else str(exc)}
        if info.device_id != self.reg.device_id:
            self.close()
            return {"error": f"{self.reg.target} on {self.reg.host} now answers as {info.device_id}, not "
                             f"{self.reg.device_id}: run `splitbench cluster join` on that host again"}
        self.session = Session(self.reg.target, agent, info)
        self._set_holder({**self.run, "since": utc_now(), "actor_pid": os.getpid()})
        self.versions = {"splitbench": __version__, "contract": CONTRACT_VERSION,
                         "python": platform.python_version()}
        return self._hello()

    def _hello(self) -> dict[str, Any]:
        import ray

        return {"info": self.session.info.to_dict(), "host": platform.node(), "pid": os.getpid(),
                "node_id": ray.get_runtime_context().get_node_id(), "versions": self.versions}

    def measure(self, job: dict[str, Any], artifact: dict[str, Any], payload: list) -> dict[str, Any]:
        """Place the artifact (once per content key), then measure; ``payload`` is ``[ObjectRef]`` of the
        artifact's bytes, or ``[]``, wrapped in a list so Ray fetches it only when this host needs it."""
        if self.lost is not None or self.session is None:
            return {"lost": self.lost or "the session was closed"}
        ref = ArtifactRef.from_dict(artifact)
        mjob = MeasureJob.from_dict(job)

        def fetch() -> dict[str, bytes]:
            import ray

            return ray.get(payload[0])

        def placed() -> ArtifactRef:
            try:
                local, how = place_artifact(ref, fetch if payload else None, mode=self.artifacts)
            except ArtifactPlacementError:
                raise
            except Exception as exc:  # noqa: BLE001 - the object store lost the bytes (driver gone), ...
                raise ArtifactPlacementError(f"artifact {ref.key[:12]} could not be fetched: "
                                             f"{type(exc).__name__}: {exc}") from None
            self.placed[ref.key] = how
            return local

        started_at, t0 = utc_now(), time.monotonic()
        try:
            result, ran = self.session.measure_artifact(ref.key, placed, mjob)
        except DeviceUnavailable as exc:
            self.lost = exc.reason
            return {"lost": exc.reason}
        return {"result": result.to_dict(), "job": ran.to_dict() if ran else None, "started_at": started_at,
                "duration_s": time.monotonic() - t0, "placed": self.placed.get(ref.key, "")}

    def close(self) -> None:
        """End the session (the agent undoes what it changed on the device) and release the device."""
        self.session = None
        self.stack.close()
        self._set_holder(None)

    def _set_holder(self, holder: dict[str, Any] | None) -> None:
        with contextlib.suppress(Exception):  # the status line is a convenience, never a failure
            kv = _kv()
            if holder is None:
                kv._internal_kv_del(_KV_HOLDER + self.reg.device_id, namespace=NAMESPACE)
            else:
                kv._internal_kv_put(_KV_HOLDER + self.reg.device_id, json.dumps(holder).encode(),
                                    overwrite=True, namespace=NAMESPACE)

    def imported(self, names: list[str]) -> dict[str, bool]:
        """Whether each module is imported in this actor's process (the tests check torch never is)."""
        return {n: n in sys.modules for n in names}


__all__ = ["Registration", "DeviceActor", "place_artifact", "read_payload", "host_registrations", "register",
           "registrations", "holders", "node_resources", "resource_name", "target_of", "NAMESPACE",
           "ARTIFACT_MODES", "ArtifactPlacementError"]
