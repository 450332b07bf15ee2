"""``--executor ray``: one spec measured across the phones of many hosts through a Ray cluster.

The driver (this module, in the ``splitbench run`` process) stays the only writer of results; Ray only
carries jobs to devices and results back:

- **devices**: every spec target is resolved to one registered device (a host's
  ``splitbench cluster join`` registered it; :mod:`harness.measure.lab.device_host`). All the run's devices are
  reserved at once in one placement group of ``phone:<device_id>`` bundles: two runs wanting overlapping
  devices never deadlock, and the second waits (saying for which devices) until the first releases them;
- **actors**: one :class:`harness.measure.lab.device_host.DeviceActor` per device on the device's host, holding its
  resource and no CPU, never restarted, never moved: a job is bound to its device id, and a device (or
  host) lost mid-run is one ``lost`` event, its jobs are not attempted, ``--resume`` finishes them later;
- **jobs**: each device runs its jobs one at a time, in plan order; its next job is already queued on its
  actor, so the driver writing a result never keeps a phone idle;
- **artifacts**: sent by content key, once: the driver puts each artifact's bytes in Ray's object store
  once per run and passes a reference; a host fetches them only if its content cache does not have them
  and it cannot read the driver's path with the same bytes (``SPLITBENCH_RAY_ARTIFACTS``: auto,
  object-store, shared);
- **code**: the driver's ``harness`` and ``device_agents`` packages are shipped to the hosts with the job
  (Ray's ``py_modules``), so every host measures with the driver's splitbench and needs neither torch nor
  a converter, only Ray and its devices' runtimes or tools;
- **the head**: probed while jobs run (:class:`HeadWatch`); silent for ``SPLITBENCH_RAY_HEAD_GRACE_S``
  (default 20 s), every device still measuring is one ``lost`` event naming the head, and the driver leaves
  Ray before Ray would end its process (60 s after the head): the run ends as a lost phone's does.

Ray is an optional extra (``pip install 'splitbench[ray]'``): importing this module without it raises
ImportError, which :func:`harness.measure.factory.make_executor` turns into the install hint.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import math
import os
import platform
import socket
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import ray
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from device_agents.base import (CONTRACT_VERSION, FAILED, ArtifactRef, ContractError, DeviceInfo, MeasureJob,
                                MeasureResult)
from harness import __version__
from harness.measure.lab import device_host
from harness.results import store
from harness.measure.lab.device_host import ARTIFACT_MODES, NAMESPACE, Registration
from harness.core.errors import UserError
from harness.measure.executors import Executor
from harness.measure.session import DeviceUnreachable, Event, device_options
from harness.measure.session import say_stderr as _say
from harness.config.spec import Spec

RAY_REQUIREMENT = "ray[default]==2.60.0"  # every node of a cluster must run the same Ray (and Python)
ENV_ARTIFACTS = "SPLITBENCH_RAY_ARTIFACTS"
_POLL_S = 0.2  # how often the driver looks up from ray.wait (Ctrl-C, stop) while jobs run
_DEPTH = 2  # jobs sent ahead to each device: the one it runs and the next
_CLOSE_S = 15.0  # how long the actors get to close their sessions before they are killed
# The head: Ray ends a driver's process 60 s after its GCS stopped answering ("Failed to connect to GCS within
# 60 seconds"), while calls to actors go on without it. The driver probes the GCS's port itself (a TCP connect,
# no Ray call: those block while the head is gone) and, once it has not answered for HEAD_GRACE_S, reports
# every device as lost and leaves Ray, so the tables and the manifest are written and the run ends (exit 4)
# while the process still lives. A head back within the grace (a restart with GCS fault tolerance, a network
# blip) is no loss.
HEAD_PROBE_S = 2.0
HEAD_GRACE_S = 20.0
ENV_HEAD_GRACE = "SPLITBENCH_RAY_HEAD_GRACE_S"
_RAY_GCS_TIMEOUT_S = 60.0


# --------------------------------------------------------------------------------------------------
# The connection (one per process, shared by the runs of that process)


_conn_lock = threading.Lock()
_conn_users = 0
_conn_owned = False


def code_runtime_env() -> dict[str, Any]:
    """Ship this process's splitbench packages to every host of the job (hosts need Ray, not splitbench)."""
    import device_agents
    import harness

    return {"py_modules": [str(Path(package.__file__).resolve().parent) for package in (harness, device_agents)]}


def enable_token_auth_if_available() -> None:
    """Use Ray's token authentication when this host has a token and ``RAY_AUTH_MODE`` is unset.

    Ray 2.60 does this by itself only for a local cluster found with ``address="auto"``; a driver or a host
    joining with an explicit address would connect without the token and be refused by a head that has
    token authentication on (``splitbench cluster start-head`` turns it on).
    """
    if os.environ.get("RAY_AUTH_MODE") is not None:
        return
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available)
    except ImportError:  # another Ray: its own defaults apply
        return
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def connect(address: str | None, *, runtime_env: dict[str, Any] | None = None) -> None:
    """Connect this process to the cluster (once; later runs of the process share the connection).

    A process already connected to Ray (``ray.init`` by the caller) is used as it is, with the caller's
    runtime environment.
    """
    global _conn_users, _conn_owned
    with _conn_lock:
        if _conn_users == 0 and not ray.is_initialized():
            where = address or os.environ.get("RAY_ADDRESS") or "auto"
            _check_reachable(where)
            enable_token_auth_if_available()
            env = code_runtime_env()
            for key, value in (runtime_env or {}).items():
                env[key] = value
            try:
                ray.init(address=where, namespace=NAMESPACE, runtime_env=env, logging_level=logging.WARNING,
                         log_to_driver=False)
            except (ConnectionError, RuntimeError, ValueError, ray.exceptions.RayError) as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise UserError(f"cannot connect to the Ray cluster at {where} ({first}); start one with "
                                "`splitbench cluster start-head` and pass its address with --ray-address (with "
                                "token authentication, this host needs the head's token: see `splitbench cluster "
                                "--help`)") from None
            _conn_owned = True
        _conn_users += 1


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Refuse at once an address where nothing listens (Ray itself retries for minutes)."""
    if address == "auto" or address.startswith("ray://") or ":" not in address:
        return
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except (OSError, ValueError) as exc:
        raise UserError(f"no Ray cluster answers at {address} ({exc}); start one with `splitbench cluster "
                        "start-head` and pass the address it prints with --ray-address") from None


def _abandon() -> None:
    """Leave Ray now: the head is gone (``ray.shutdown`` takes a few seconds without it), and Ray would end this
    process once its GCS reconnect timeout passes."""
    global _conn_owned
    with _conn_lock:
        with contextlib.suppress(Exception):
            ray.shutdown()
        _conn_owned = False


def head_grace_s() -> float:
    """How long the head may stay silent before its devices are reported lost: ``$SPLITBENCH_RAY_HEAD_GRACE_S``,
    else HEAD_GRACE_S; well under Ray's 60 s, after which Ray ends the driver."""
    raw = os.environ.get(ENV_HEAD_GRACE)
    if raw is None or not raw.strip():
        return HEAD_GRACE_S
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    limit = _RAY_GCS_TIMEOUT_S - 15.0  # the time left to leave Ray (a few seconds) and write the tables
    if not 0 < value <= limit:
        raise UserError(f"{ENV_HEAD_GRACE}={raw!r}: give the seconds the lab's head may stay silent, in (0, "
                        f"{limit:g}] (Ray ends the driver {_RAY_GCS_TIMEOUT_S:g} s after its head is lost)")
    return value


class HeadWatch:
    """Whether the head's GCS still answers: a TCP connect to its port every ``probe_s`` (cheap, and never a Ray
    call, which would block while the head is gone). :meth:`silent_for` is how long it has not answered."""

    def __init__(self, gcs_address: str, *, probe_s: float = HEAD_PROBE_S,
                 connect: Callable[[str, int, float], bool] | None = None):
        host, _, port = gcs_address.rpartition(":")
        self.address, self.host, self.port = gcs_address, host.strip("[]"), int(port)
        self.probe_s = probe_s
        self._connect = connect or _tcp_answers
        self._next = 0.0
        self._silent_since: float | None = None

    def silent_for(self) -> float:
        """Seconds since the head stopped answering (0 while it answers); probes at most every ``probe_s``."""
        now = time.monotonic()
        if now >= self._next:
            self._next = now + self.probe_s
            if self._connect(self.host, self.port, min(1.0, self.probe_s)):
                self._silent_since = None
            elif self._silent_since is None:
                self._silent_since = now
        return 0.0 if self._silent_since is None else now - self._silent_since


def _tcp_answers(host: str, port: int, timeout_s: float) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _gcs_address() -> str | None:
    """The head's GCS address of this process's connection (None where Ray does not say: a Ray client)."""
    try:
        address = ray.get_runtime_context().gcs_address
    except Exception:  # noqa: BLE001 - no address, no watch: the run goes on as before
        return None
    return address if isinstance(address, str) and ":" in address else None


def disconnect() -> None:
    global _conn_users, _conn_owned
    with _conn_lock:
        _conn_users = max(_conn_users - 1, 0)
        if _conn_users == 0 and _conn_owned:
            ray.shutdown()
            _conn_owned = False


# --------------------------------------------------------------------------------------------------
# Devices of the cluster


def live_resources() -> set[str]:
    """The ``phone:`` resources of the nodes alive now."""
    return {r for r in ray.cluster_resources() if r.startswith(device_host.RESOURCE_PREFIX)
            and "_group_" not in r}


def resolve(target: str, regs: dict[str, Registration]) -> Registration:
    """The one registered device a spec target names: by the target string its host opens it with, or by
    its device id. None or several is a :class:`UserError` that lists what the lab has."""
    found = [r for r in regs.values() if target in (r.target, r.device_id)]
    if len(found) == 1:
        return found[0]
    have = ", ".join(sorted(f"{r.target} ({r.device_id} on {r.host})" for r in regs.values())) or "none"
    if not found:
        raise DeviceUnreachable(f"no host of the cluster registered {target}; registered devices: {have}. "
                                "Join its host with `splitbench cluster join`, or fix [run].targets")
    hosts = ", ".join(f"{r.device_id} on {r.host}" for r in found)
    raise UserError(f"{target} names {len(found)} devices of the cluster ({hosts}); name one by its device id "
                    "in [run].targets")


@dataclasses.dataclass
class _Remote:
    """One device of the run: its registration, its actor and what the actor said when it opened."""

    spec_target: str
    reg: Registration
    actor: Any
    info: DeviceInfo | None = None
    hello: dict[str, Any] = dataclasses.field(default_factory=dict)
    lost: str | None = None


_ACTOR_CLASS = None


def _actor_class():
    global _ACTOR_CLASS
    if _ACTOR_CLASS is None:
        # "control": close() runs beside a job in flight (a second thread), as the devices executor closes
        # a session from the writer's thread.
        _ACTOR_CLASS = ray.remote(concurrency_groups={"control": 1})(device_host.DeviceActor)
    return _ACTOR_CLASS


def _lost_reason(exc: BaseException) -> str:
    """One line from a Ray actor error: why the device's actor is gone."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    why = next((ln for ln in lines if "because" in ln), lines[0] if lines else type(exc).__name__)
    return f"its host or its actor was lost ({why})"


# --------------------------------------------------------------------------------------------------
# The executor


class RayExecutor(Executor):
    """Runs a spec's jobs on the devices of a Ray cluster; see the module docstring."""

    def __init__(self, spec: Spec, *, address: str | None = None, lease_timeout_s: float | None = None,
                 artifacts: str | None = None, runtime_env: dict[str, Any] | None = None):
        # Not Executor.__init__: the spec's targets are opened on their hosts, not here.
        self.spec, self.address, self.lease_timeout_s = spec, address, lease_timeout_s
        self.artifacts = artifacts or os.environ.get(ENV_ARTIFACTS) or "auto"
        if self.artifacts not in ARTIFACT_MODES:
            raise UserError(f"{ENV_ARTIFACTS}={self.artifacts!r}: use one of {', '.join(ARTIFACT_MODES)}")
        self.head_grace_s = head_grace_s()
        self.runtime_env = runtime_env
        self.sessions = {}
        self.remotes: dict[str, _Remote] = {}  # spec target -> device
        self._stop = threading.Event()
        self._pg = None
        self._connected = False
        self._payloads: dict[str, Any] = {}  # artifact key -> ObjectRef of its bytes
        self._refs: dict[str, dict[str, Any]] = {}  # artifact key -> ArtifactRef.to_dict()
        self._key_left: collections.Counter = collections.Counter()

    @property
    def parallel(self) -> int:  # type: ignore[override]
        return max(len(self.remotes), 1)

    # -- devices ------------------------------------------------------------------------------------
    def open_devices(self) -> dict[str, DeviceInfo]:
        connect(self.address, runtime_env=self.runtime_env)
        self._connected = True
        regs = device_host.registrations()
        live = live_resources()
        chosen: list[tuple[str, Registration]] = []
        seen: dict[str, str] = {}
        for target in self.spec.run.targets:
            reg = resolve(target, regs)
            if reg.device_id in seen:
                raise UserError(f"targets {seen[reg.device_id]} and {target} are the same device ({reg.device_id}); "
                                "list it once")
            seen[reg.device_id] = target
            if reg.resource not in live:
                raise DeviceUnreachable(f"{target} ({reg.device_id}) is registered by {reg.host}, which is not in "
                                        "the cluster now; run `splitbench cluster join` there again (or remove it "
                                        "from [run].targets)")
            chosen.append((target, reg))
        self._reserve([reg for _, reg in chosen])

        run = {"driver": f"pid {os.getpid()} on {platform.node()}", "argv": " ".join(sys.argv[:4])}
        cls = _actor_class()
        for i, (target, reg) in enumerate(chosen):
            actor = cls.options(
                num_cpus=0, resources={reg.resource: 1}, max_restarts=0, max_task_retries=0,
                scheduling_strategy=PlacementGroupSchedulingStrategy(self._pg, placement_group_bundle_index=i),
            ).remote(dataclasses.asdict(reg), device_options(self.spec, target), run, self.artifacts)
            self.remotes[target] = _Remote(target, reg, actor)
        self._open_actors()
        return {t: r.info for t, r in self.remotes.items()}

    def _reserve(self, regs: list[Registration]) -> None:
        """Reserve every device of the run at once (all or none), waiting while another run holds some."""
        self._pg = placement_group([{r.resource: 1} for r in regs], strategy="PACK",
                                   name=f"splitbench {platform.node()} pid {os.getpid()} {uuid.uuid4().hex[:8]}")
        ready = self._pg.ready()
        start, told = time.monotonic(), False
        while True:
            done, _ = ray.wait([ready], timeout=1.0)
            if done:
                return
            gone = [r for r in regs if r.resource not in live_resources()]
            if gone:
                raise DeviceUnreachable(f"{', '.join(r.device_id for r in gone)} left the cluster while this run "
                                        "waited for it; join its host again (or remove it from [run].targets)")
            if self.lease_timeout_s is not None and time.monotonic() - start > self.lease_timeout_s:
                raise store.ResultsBusy(f"device(s) {', '.join(self._held(regs)) or '?'} are in use by another run")
            if not told and time.monotonic() - start > 1.0:
                held = self._held(regs)
                who = device_host.holders()
                detail = "; ".join(f"{d}: {who[d].get('driver', '?')}" for d in held if d in who)
                _say(f"waiting for device(s) {', '.join(held) or '(being released)'}: another run holds them"
                     + (f" ({detail})" if detail else "") + "; `splitbench cluster status` shows who")
                told = True

    @staticmethod
    def _held(regs: list[Registration]) -> list[str]:
        free = ray.available_resources()
        return [r.device_id for r in regs if free.get(r.resource, 0) < 1]

    def _open_actors(self) -> None:
        """Open every device's session on its host (in parallel); a busy lease is retried, saying so once."""
        pending = {r.actor.open.remote(): r for r in self.remotes.values()}
        told: set[str] = set()
        start = time.monotonic()
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            for obj in done:
                r = pending.pop(obj)
                try:
                    answer = ray.get(obj)
                except ray.exceptions.RayActorError as exc:
                    raise DeviceUnreachable(f"{r.spec_target} is unavailable: {_lost_reason(exc)}") from None
                if "busy" in answer:
                    if self.lease_timeout_s is not None and time.monotonic() - start > self.lease_timeout_s:
                        raise store.ResultsBusy(answer["busy"])
                    if r.reg.device_id not in told:
                        _say(f"waiting for device {r.reg.device_id} on {r.reg.host}: {answer['busy']}")
                        told.add(r.reg.device_id)
                    time.sleep(0.5)
                    pending[r.actor.open.remote()] = r
                elif "lost" in answer:
                    raise DeviceUnreachable(f"{r.spec_target} is unavailable on {r.reg.host}: {answer['lost']}; "
                                            "connect it (or remove it from [run].targets) and run again")
                elif "error" in answer:
                    raise UserError(f"{r.spec_target} on {r.reg.host}: {answer['error']}")
                else:
                    self._hello(r, answer)

    def _hello(self, r: _Remote, answer: dict[str, Any]) -> None:
        versions = answer.get("versions", {})
        if versions.get("contract") != CONTRACT_VERSION:
            raise UserError(f"{r.reg.host} runs agent contract {versions.get('contract')}, this driver "
                            f"{CONTRACT_VERSION}: run the same splitbench on both")
        if versions.get("splitbench") != __version__:
            _say(f"note: {r.reg.host} measures with splitbench {versions.get('splitbench')}, this driver is "
                 f"{__version__}")
        r.info, r.hello = DeviceInfo(**answer["info"]), answer

    def describe(self) -> dict[str, Any]:
        """For the manifest: the cluster, and where each device was measured."""
        return {"name": "ray", "address": self.address or os.environ.get("RAY_ADDRESS") or "auto",
                "ray_version": ray.__version__, "artifacts": self.artifacts,
                "devices": {r.reg.device_id: {"host": r.hello.get("host", r.reg.host), "node_id": r.hello.get("node_id"),
                                              "registered_target": r.reg.target,
                                              "splitbench": r.hello.get("versions", {}).get("splitbench")}
                            for r in self.remotes.values()}}

    # -- jobs ---------------------------------------------------------------------------------------
    def _artifact(self, job) -> tuple[dict[str, Any], list]:
        """The job's ArtifactRef (as a dict) and ``[ObjectRef]`` of its bytes (put once per run and key)."""
        a = job.artifact
        if a.key not in self._refs:
            self._refs[a.key] = a.ref().to_dict()
        if self.artifacts == "shared":
            return self._refs[a.key], []
        if a.key not in self._payloads:
            ref = ArtifactRef.from_dict(self._refs[a.key])
            self._payloads[a.key] = ray.put(device_host.read_payload(ref))
        return self._refs[a.key], [self._payloads[a.key]]

    def _done_with(self, job) -> None:
        """One job of an artifact is over: its bytes leave the object store after its last job."""
        key = job.artifact.key
        self._key_left[key] -= 1
        if self._key_left[key] <= 0:
            self._payloads.pop(key, None)

    def run(self, jobs: list, *, say: Callable[[str], None], start: Callable[[str], None]) -> Iterator[Event]:
        queues = {t: collections.deque(j for j in jobs if j.spec_target == t) for t in self.remotes}
        self._key_left.update(j.artifact.key for j in jobs)
        in_flight: dict[Any, tuple[_Remote, Any]] = {}

        def submit(r: _Remote) -> None:
            """Keep _DEPTH jobs sent to the device: it starts the next one the moment one ends, however long
            the writer takes over the last result (the actor runs them one at a time, in order)."""
            while queues[r.spec_target] and sum(1 for x, _ in in_flight.values() if x is r) < _DEPTH:
                job = queues[r.spec_target].popleft()
                start(job.label)
                artifact, payload = self._artifact(job)
                in_flight[r.actor.measure.remote(job.job.to_dict(), artifact, payload)] = (r, job)

        def lose(r: _Remote, why: str) -> Event:
            """The device is gone: its jobs sent and queued are not attempted (no row); its actor is ended."""
            sent = [obj for obj, (x, _) in in_flight.items() if x is r]
            dropped = [in_flight.pop(obj)[1] for obj in sent] + list(queues[r.spec_target])
            queues[r.spec_target].clear()
            for j in dropped:
                self._done_with(j)
            r.lost = why
            with contextlib.suppress(Exception):
                ray.kill(r.actor, no_restart=True)  # nothing of that device runs on, wherever it is
            return Event(r.reg.device_id, lost=why, left=len(dropped))

        def head_lost(silent_s: float) -> list[Event]:
            """The head is gone: every device still measuring is lost with it (its jobs sent and queued are not
            attempted); this process leaves Ray before Ray ends it."""
            why = (f"the lab's head at {watch.address} stopped answering {silent_s:.0f} s ago, and the hosts are "
                   "reached through it: start it again (`splitbench cluster start-head`, then `join` on each host)")
            events = []
            for r in self.remotes.values():
                if r.lost is None:
                    left = sum(1 for x, _ in in_flight.values() if x is r) + len(queues[r.spec_target])
                    queues[r.spec_target].clear()
                    r.lost = why
                    events.append(Event(r.reg.device_id, lost=why, left=left))
            in_flight.clear()
            self._payloads.clear()
            _abandon()
            return events

        address = _gcs_address()
        watch = HeadWatch(address, probe_s=min(HEAD_PROBE_S, self.head_grace_s / 2)) if address else None
        for r in self.remotes.values():
            submit(r)
        while in_flight:
            if self._stop.is_set():
                return
            silent_s = watch.silent_for() if watch is not None else 0.0
            if silent_s >= self.head_grace_s:
                yield from head_lost(silent_s)
                return
            done, _ = ray.wait(list(in_flight), num_returns=1, timeout=_POLL_S)
            for obj in done:
                if obj not in in_flight:  # a job of a device lost meanwhile
                    continue
                r, job = in_flight[obj]
                try:
                    answer = ray.get(obj)
                except ray.exceptions.RayActorError as exc:
                    yield lose(r, _lost_reason(exc))
                    continue
                if "lost" in answer:
                    yield lose(r, answer["lost"])
                    continue
                del in_flight[obj]
                self._done_with(job)
                if not self._stop.is_set():
                    submit(r)
                yield self._event(r, job, answer)

    @staticmethod
    def _event(r: _Remote, job, answer: dict[str, Any]) -> Event:
        try:
            result = MeasureResult.from_dict(answer["result"])
            mjob = MeasureJob.from_dict(answer["job"]) if answer.get("job") else job.job
        except (ContractError, TypeError) as exc:  # a host running another splitbench
            result, mjob = MeasureResult(status=FAILED, reason=f"the result from {r.reg.host} breaks this "
                                         f"driver's contract: {exc}"), job.job
        return Event(r.reg.device_id, job=job, result=result, measure_job=mjob, started_at=answer["started_at"],
                     duration_s=answer["duration_s"])

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        """Close every session on its host (a job in flight ends at once, unwritten), free the devices."""
        self._stop.set()
        try:
            if ray.is_initialized():
                live = [r for r in self.remotes.values() if r.lost is None]
                closing = [r.actor.close.options(concurrency_group="control").remote() for r in live]
                if closing:
                    with contextlib.suppress(Exception):
                        ray.wait(closing, num_returns=len(closing), timeout=_CLOSE_S)
                for r in self.remotes.values():
                    with contextlib.suppress(Exception):
                        ray.kill(r.actor, no_restart=True)
                if self._pg is not None:
                    with contextlib.suppress(Exception):
                        remove_placement_group(self._pg)
        finally:
            self._payloads.clear()
            self._pg = None
            if self._connected:
                self._connected = False
                disconnect()


__all__ = ["RayExecutor", "RAY_REQUIREMENT", "connect", "disconnect", "resolve", "live_resources",
           "code_runtime_env", "HeadWatch", "head_grace_s", "HEAD_GRACE_S", "ENV_HEAD_GRACE"]
