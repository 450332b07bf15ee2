"""The iOS profile (``ios``, ``ios:<udid>``): Core ML measured on an iPhone by the splitbench agent app,
driven from a Linux or macOS host with pymobiledevice3.

A session checks the preconditions one by one (each failure is one line saying how to fix it), installs
the agent app when the spec gives one, and asks the app who it is. ``prepare`` pushes an ``.mlpackage``
into the app's container once per content key; ``measure`` writes one job file per launch and launches
the app once per phase (compile, cold, each warm load: fresh processes), polls it, kills it on timeout and
reads its result (``protocol.py``). How bytes reach the phone is ``transport.py``'s business.

Faults: the phone unplugged, locked, or full is :class:`DeviceUnavailable` (the job gets no row, the run
goes on with other devices and ``--resume`` finishes it); the app ended by the system without a result is a
``crashed`` row with what the system logged (jetsam or crash report); an app that does not finish in time
is killed and is a ``timeout`` row; Core ML refusing the model is a ``failed`` row with its error.
"""

from __future__ import annotations

import contextlib
import json
import posixpath
import re
import time
import uuid
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Iterator

from device_agents.base import (CRASHED, FAILED, TIMEOUT, AgentError, ArtifactRef, Check, ContractError,
                                DeviceAgent, DeviceInfo, DeviceUnavailable, MeasureJob, MeasureResult, MemoryReading)
from device_agents.ios import protocol
from device_agents.ios.protocol import (AGENT_APP_VERSION, COMPUTE_UNITS, INSTALL_HINT, INTERRUPTED, JOBS, MODELS,
                                        ROOT, SCHEMA_VERSION, Launch, SchemaError, container_path)
from device_agents.ios.transport import (AppNotInstalled, DeveloperServicesUnavailable, DeviceLocked, DiskFull,
                                         InstallFailed, IosTransport, NotPaired, Services, TransportError,
                                         TunnelUnavailable, UsbmuxdUnavailable, list_usb_udids, load_services)

TARGET_RE = re.compile(r"^ios(?::(?P<udid>[A-Za-z0-9-]{8,64}))?$")
DEFAULT_BUNDLE_ID = "org.splitbench.agent"
APP_EXECUTABLE = "SplitbenchAgent"  # CFBundleExecutable, the process name crash reports carry
POLL_S = 0.2
HELLO_TIMEOUT_S = 60.0
EXIT_GRACE_S = 5.0  # after the result is written the app exits; kill it if it lingers
MIN_FREE_B = 50_000_000  # room kept free beyond a model, for its compiled copy and the results
SYSMON_INTERVAL_MS = 100
TUNNELS = ("auto", "tunneld", "userspace")

FIX = {
    "usbmuxd": "Linux: install and start usbmuxd (`sudo apt-get install usbmuxd`, `sudo systemctl start usbmuxd`); "
               "macOS: it is built in",
    "attached": "connect the iPhone with a USB cable, unlock it and tap Trust",
    "paired": "unlock the iPhone, run `pymobiledevice3 lockdown pair` and tap Trust on the phone",
    "locked": "unlock the iPhone and keep it unlocked for the run (Settings > Display & Brightness > Auto-Lock: Never)",
    "developer mode": "on the iPhone: Settings > Privacy & Security > Developer Mode, turn it on and restart "
                      "(or `pymobiledevice3 amfi enable-developer-mode` when no passcode is set)",
    "developer disk image": "`pymobiledevice3 mounter auto-mount` (once per boot of the phone; on iOS 17+ it asks "
                            "Apple's server for a personalized image, so the host needs internet)",
    "tunnel": "iOS 17.4+: check the cable and run `pymobiledevice3 doctor`; iOS 17.0-17.3: run "
              "`sudo pymobiledevice3 remote tunneld` and keep it running (then [ios].tunnel = 'tunneld')",
    "developer services": "turn Developer Mode on and mount the developer disk image (`pymobiledevice3 mounter "
                          "auto-mount`), then retry",
    "agent app": "build and sign the app once on a Mac (`make ios-agent TEAM=<your team id>`), then set "
                 "[ios].app = 'path/to/SplitbenchAgent.ipa' in the spec (a run installs it) or run "
                 "`pymobiledevice3 apps install SplitbenchAgent.ipa`",
    "install": "sign the app for this iPhone (`make ios-agent TEAM=<team id>` with the phone registered in the team); "
               "with a free team, trust it on the phone (Settings > General > VPN & Device Management)",
    "app container": "install a development-signed build of the agent app (`make ios-agent` signs for development)",
    "free space": "free space on the iPhone (Settings > General > iPhone Storage)",
    "app answers": "open the agent app once by hand; with a free team, trust the developer on the phone "
                   "(Settings > General > VPN & Device Management); then retry",
}


# --------------------------------------------------------------------------------------------------
# Options: the spec's [ios] table


@dataclass(frozen=True)
class IosOptions:
    """The spec's ``[ios]`` table."""

    app: str | None = None  # a signed SplitbenchAgent .ipa or .app to install when missing or of another version
    bundle_id: str = DEFAULT_BUNDLE_ID  # the bundle identifier it was signed with
    compute_units: str = "cpuOnly"  # MLModelConfiguration.computeUnits
    timeout_s: float | None = None  # a job on the phone, all its launches (default: [run].timeout_s)
    tunnel: str = "auto"  # iOS 17+: "auto" (tunneld if it runs, else the userspace tunnel), "tunneld", "userspace"
    sysmontap: bool = False  # also sample the app's memory from the host (DVT sysmontap)


_OPTION_TYPES: dict[str, tuple[type, ...]] = {"app": (str,), "bundle_id": (str,), "compute_units": (str,),
                                              "timeout_s": (int, float), "tunnel": (str,), "sysmontap": (bool,)}


def parse_options(options: dict[str, Any]) -> IosOptions:
    """Validate the ``[ios]`` table; :class:`AgentError` naming the key for anything unknown or wrong."""
    known = [f.name for f in fields(IosOptions)]
    for key, value in options.items():
        if key not in known:
            raise AgentError(f"[ios]: unknown key {key!r}; known keys: {', '.join(known)}")
        types = _OPTION_TYPES[key]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise AgentError(f"[ios].{key} = {value!r}: expected {' or '.join(t.__name__ for t in types)}")
    opts = IosOptions(**options)
    if opts.compute_units not in COMPUTE_UNITS:
        raise AgentError(f"[ios].compute_units = {opts.compute_units!r}; valid: {', '.join(COMPUTE_UNITS)}")
    if opts.tunnel not in TUNNELS:
        raise AgentError(f"[ios].tunnel = {opts.tunnel!r}; valid: {', '.join(TUNNELS)}")
    if opts.timeout_s is not None and not opts.timeout_s > 0:
        raise AgentError(f"[ios].timeout_s must be > 0, got {opts.timeout_s!r}")
    if not re.fullmatch(r"[A-Za-z0-9.-]+", opts.bundle_id):
        raise AgentError(f"[ios].bundle_id = {opts.bundle_id!r} is not a bundle identifier")
    return opts


def _services() -> Services:
    try:
        return load_services()
    except ImportError as exc:
        raise AgentError(f"iOS needs pymobiledevice3: {INSTALL_HINT} ({exc})") from None


def _usb_udids(services: Services) -> list[str]:
    try:
        return list_usb_udids(services)
    except UsbmuxdUnavailable as exc:
        raise AgentError(f"usbmuxd cannot be reached ({exc}): {FIX['usbmuxd']}") from None
    except DeviceUnavailable as exc:
        raise AgentError(f"usbmuxd did not answer ({exc.reason}): {FIX['usbmuxd']}") from None


def _same_udid(a: str, b: str) -> bool:
    return a.replace("-", "").lower() == b.replace("-", "").lower()


def resolve_udid(udids: list[str], wanted: str | None) -> str:
    """The UDID a target names among ``udids`` (``ios``: the only iPhone attached), or :class:`AgentError`."""
    if wanted:
        for u in udids:
            if _same_udid(u, wanted):
                return u
        seen = f"attached: {', '.join(udids)}" if udids else "none attached"
        raise AgentError(f"iPhone {wanted} is not attached over USB ({seen}): {FIX['attached']}")
    if not udids:
        raise AgentError(f"no iPhone attached over USB: {FIX['attached']}")
    if len(udids) > 1:
        raise AgentError(f"{len(udids)} iPhones attached ({', '.join(udids)}): choose one with --target ios:<udid>")
    return udids[0]


# --------------------------------------------------------------------------------------------------
# Crash and jetsam reports


def summarize_report(name: str, text: str, executable: str = APP_EXECUTABLE, pid: int | None = None) -> str:
    """One line from an ``.ips`` report (a JSON header line, then a JSON body; pycrashreport reads the same
    shape): a jetsam event's reason for the app, or a crash's exception and termination (0x8badf00d: the
    watchdog). The report's file name comes last, in brackets."""
    base = posixpath.basename(name)
    head, _, body = text.partition("\n")
    try:
        meta = json.loads(head)
    except ValueError:
        return f"{' '.join(text.split())[:160]} [{base}]"
    try:
        data = json.loads(body)
    except ValueError:
        data = {}
    bug = str(meta.get("bug_type"))
    if bug == "298":  # JetsamEvent
        procs = data.get("processes") or []
        mine = next((p for p in procs if isinstance(p, dict) and (p.get("pid") == pid or p.get("name") == executable)),
                    None)
        reason = f" {executable} {mine.get('reason')}" if mine and mine.get("reason") else ""
        largest = data.get("largestProcess")
        return (f"jetsam (the system freed memory):{reason or ' the app was not named'}"
                + (f"; largest process {largest}" if largest else "") + f" [{base}]")
    if bug in ("309", "109"):  # a crash of a user process
        exc = data.get("exception") or {}
        term = data.get("termination") or {}
        code = term.get("code")
        code_s = hex(code) if isinstance(code, int) else (str(code) if code is not None else "")
        watchdog = "the watchdog (0x8badf00d: the app took too long); " if code_s.lower() == "0x8badf00d" else ""
        what = " ".join(str(v) for v in (exc.get("type"), exc.get("signal")) if v)
        ended = " ".join(str(v) for v in (term.get("namespace"), code_s, term.get("indicator")) if v)
        return f"{watchdog}crash {what or '(no exception)'}, termination {ended or '(none given)'} [{base}]"
    return f"{meta.get('name') or 'a report'} (bug_type {bug}) [{base}]"


def _one_line(text: str) -> str:
    """What the CLI prints is one line: device messages may hold several."""
    return " ".join(str(text).split())


def _size(b: int) -> str:
    """Bytes for people (SI units, like every size splitbench reports)."""
    return f"{b / 1e9:.2f} GB" if b >= 1e9 else f"{b / 1e6:.1f} MB" if b >= 1e6 else f"{b / 1e3:.0f} kB"


def _phone_name(values: dict[str, Any]) -> str:
    """The phone for people, from lockdown's values: "Alice's iPhone (iPhone11,2, iOS 17.5)"."""
    return f"{values.get('DeviceName') or 'iPhone'} ({values.get('ProductType')}, iOS {values.get('ProductVersion')})"


def _is_app_report(name: str, executable: str) -> bool:
    base = posixpath.basename(name)
    return base.startswith(executable) or base.startswith("JetsamEvent")


# --------------------------------------------------------------------------------------------------
# Preconditions


class _Session:
    """The precondition steps of a session, in order, each one yielding a :class:`Check`."""

    def __init__(self, transport: IosTransport, options: IosOptions, *, install: bool,
                 launcher: Callable[[dict[str, Any], float], Any], cleaner: Callable[[str], None]):
        self.t, self.options, self.install = transport, options, install
        self.launcher, self.cleaner = launcher, cleaner
        self.app: dict[str, Any] | None = None
        self.hello: dict[str, Any] | None = None

    def checks(self) -> Iterator[Check]:
        for step in (self._paired, self._developer_mode, self._ddi, self._developer_services, self._agent_app,
                     self._container, self._free_space, self._answers):
            for check in step():
                yield check
                if check.ok is False:
                    return

    def _paired(self) -> Iterator[Check]:
        try:
            values = self.t.connect()
        except DeviceLocked:
            yield Check("paired and trusted", False, "the iPhone is locked", FIX["locked"])
            return
        except NotPaired as exc:
            yield Check("paired and trusted", False, str(exc), FIX["paired"])
            return
        what = f"{values.get('ProductType')}, iOS {values.get('ProductVersion')} ({values.get('BuildVersion')})"
        if not self.t.paired:
            yield Check("paired and trusted", False, f"{what}: this computer is not trusted", FIX["paired"])
        else:
            yield Check("paired and trusted", True, what)

    def _developer_mode(self) -> Iterator[Check]:
        on = self.t.developer_mode()
        if on is None:
            yield Check("Developer Mode", True, "not needed below iOS 16")
        else:
            yield Check("Developer Mode", on, "on" if on else "off", "" if on else FIX["developer mode"])

    def _ddi(self) -> Iterator[Check]:
        mounted = self.t.ddi_mounted()
        yield Check("developer disk image", mounted, "mounted" if mounted else "not mounted",
                    "" if mounted else FIX["developer disk image"])

    def _developer_services(self) -> Iterator[Check]:
        needs_tunnel = self.t.ios_major >= 17
        try:
            self.t.open_developer()
        except TunnelUnavailable as exc:
            yield Check("tunnel (iOS 17+)", False, str(exc), FIX["tunnel"])
            return
        except DeveloperServicesUnavailable as exc:
            if needs_tunnel:
                yield Check("tunnel (iOS 17+)", True, "open")
            yield Check("developer services", False, str(exc), FIX["developer services"])
            return
        yield Check("tunnel (iOS 17+)", True, "open" if needs_tunnel else "not needed below iOS 17")
        yield Check("developer services", True, "process control and device info (DVT)")

    def _agent_app(self) -> Iterator[Check]:
        bundle = self.options.bundle_id
        app = self.t.app_info(bundle)
        version = (app or {}).get("CFBundleShortVersionString")
        if version != AGENT_APP_VERSION and self.install and self.options.app:
            package = Path(self.options.app).expanduser()
            if not package.exists():
                yield Check("agent app", False, f"[ios].app: no such file {package}", FIX["agent app"])
                return
            try:
                self.t.install(package)
            except InstallFailed as exc:
                yield Check("agent app", False, f"installing {package.name} failed: {exc}", FIX["install"])
                return
            app = self.t.app_info(bundle)
            version = (app or {}).get("CFBundleShortVersionString")
        self.app = app
        if app is None:
            yield Check("agent app", False, f"{bundle} is not installed", FIX["agent app"])
        elif version != AGENT_APP_VERSION:
            yield Check("agent app", False, f"{bundle} {version} is installed, this splitbench needs {AGENT_APP_VERSION}",
                        FIX["agent app"])
        else:
            yield Check("agent app", True, f"{bundle} {version}")

    def _container(self) -> Iterator[Check]:
        try:
            mode = self.t.open_container(self.options.bundle_id)
        except AppNotInstalled as exc:
            yield Check("app container", False, str(exc), FIX["app container"])
            return
        yield Check("app container", True, "the whole container (development-signed)" if mode == "container"
                    else "Documents only (UIFileSharingEnabled)")

    def _free_space(self) -> Iterator[Check]:
        free = self.t.free_bytes()
        if free is None:
            yield Check("free space", None, "the phone does not say")
        else:
            yield Check("free space", free >= MIN_FREE_B, f"{_size(free)} free",
                        "" if free >= MIN_FREE_B else FIX["free space"])

    def _answers(self) -> Iterator[Check]:
        job_id = f"hello-{uuid.uuid4().hex[:8]}"
        doc = protocol.job_document(job_id=job_id, phase="hello", index=0, job=None, package=None,
                                    compute_units=self.options.compute_units)
        try:
            out = self.launcher(doc, time.monotonic() + HELLO_TIMEOUT_S)
        except DeviceLocked:
            yield Check("agent app answers", False, "the iPhone is locked", FIX["locked"])
            return
        except AppNotInstalled as exc:
            yield Check("agent app answers", False, str(exc), FIX["agent app"])
            return
        except SchemaError as exc:
            yield Check("agent app answers", False, f"its answer breaks schema v{SCHEMA_VERSION}: {exc}", FIX["agent app"])
            return
        finally:
            self.cleaner(job_id)
        if not isinstance(out, Launch):
            yield Check("agent app answers", False, out.describe(), FIX["app answers"])
            return
        r = out.result
        if r["status"] != "ok":
            yield Check("agent app answers", False, f"{r['status']}: {r['reason']}", FIX["app answers"])
            return
        self.hello = r
        d = r["device"]
        yield Check("agent app answers", True, f"{d['model']}, {d['os_name']} {d['os_version']} ({d['os_build']}), "
                                               f"app {r['app']['version']}, {r['runtime']['name']}")


# --------------------------------------------------------------------------------------------------
# A launch that gave no result


@dataclass(frozen=True)
class _NoResult:
    phase: str
    index: int
    pid: int
    duration_s: float
    timed_out: bool

    def describe(self) -> str:
        if self.timed_out:
            return f"the {self.phase} launch wrote no result in time and was killed (pid {self.pid})"
        return f"the {self.phase} launch ended without a result (pid {self.pid}, after {self.duration_s:.1f} s)"


# --------------------------------------------------------------------------------------------------
# The agent


class IosAgent(DeviceAgent):
    """Core ML on one iPhone, through the splitbench agent app."""

    backends = ("coreml",)

    def __init__(self, target: str = "ios", options: IosOptions | None = None, *, services: Services | None = None,
                 crash_report_wait_s: float = 5.0):
        """``services``: the pymobiledevice3 entry points (default the real ones; the tests give a loopback).
        ``crash_report_wait_s``: how long to wait for the system's report after the app ended without a result."""
        m = TARGET_RE.match(target)
        if not m:
            raise AgentError(f"unknown iOS target {target!r}; use ios or ios:<udid>")
        self.target, self.wanted_udid = target, m["udid"]
        self.options = options or IosOptions()
        self._services = services
        self.crash_report_wait_s = crash_report_wait_s
        self.transport: IosTransport | None = None
        self.udid: str | None = None
        self._info: DeviceInfo | None = None
        self._executable = APP_EXECUTABLE
        self._prepared: dict[str, str] = {}

    # -- session ---------------------------------------------------------------------------------
    def open(self) -> None:
        """Check the preconditions in order (an unmet one: :class:`AgentError` with its fix), install the app
        when asked, say hello. A phone that drops during the checks raises :class:`DeviceUnavailable`."""
        services = self._services or _services()
        self.udid = resolve_udid(_usb_udids(services), self.wanted_udid)
        self.transport = IosTransport(self.udid, services, tunnel=self.options.tunnel)
        session = _Session(self.transport, self.options, install=True, launcher=self._launch, cleaner=self._clean_job)
        try:
            for check in session.checks():
                if check.ok is False:
                    raise AgentError(_one_line(f"iPhone {self.udid}: {check.name}: {check.detail.rstrip('.')}. "
                                               f"Fix: {check.fix}"))
        except TransportError as exc:
            self.close()
            raise AgentError(_one_line(f"iPhone {self.udid}: {type(exc).__name__}: {exc}")) from None
        except BaseException:
            self.close()
            raise
        assert session.hello is not None
        self._executable = (session.app or {}).get("CFBundleExecutable") or APP_EXECUTABLE
        self._info = self._device_info(session.hello, session.app or {})

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None

    def _device_info(self, hello: dict[str, Any], app: dict[str, Any]) -> DeviceInfo:
        assert self.transport is not None and self.udid is not None
        v = self.transport.values
        d, rt = hello["device"], hello["runtime"]
        standin = " — loopback stand-in, not an iPhone, not Core ML" if d["standin"] else ""
        name = f"{_phone_name(v)}{standin}"
        fingerprint = {
            "platform": "ios", "product_type": v.get("ProductType"), "hardware_model": v.get("HardwareModel"),
            "cpu_architecture": v.get("CPUArchitecture"), "device_class": v.get("DeviceClass"),
            "ios_version": v.get("ProductVersion"), "ios_build": v.get("BuildVersion"),
            "app_device_model": d["model"], "simulator": d["simulator"], "standin": d["standin"],
            "agent_app_version": hello["app"]["version"], "agent_app_build": hello["app"]["build"],
            "agent_bundle_id": hello["app"]["bundle_id"], "schema_version": SCHEMA_VERSION,
            "compute_units": self.options.compute_units, "runtime": f"{rt['name']} {rt['version']}",
        }
        return DeviceInfo(device_id=self.udid, target="ios", platform="ios", name=name,
                          backends={"coreml": f"{rt['name']} {rt['version']}"}, fingerprint=fingerprint, threads=None,
                          compute_units=self.options.compute_units)

    def describe(self) -> DeviceInfo:
        if self._info is None:
            raise RuntimeError("open the agent first (use it in a `with` block)")
        return self._info

    # -- artifacts -------------------------------------------------------------------------------
    def prepare(self, artifact: ArtifactRef) -> str:
        """Push the ``.mlpackage`` into the app's Documents once per content key; return its path there."""
        t = self._t()
        if artifact.key in self._prepared:
            return self._prepared[artifact.key]
        local = Path(artifact.path)
        if not (local.is_dir() and local.suffix == ".mlpackage"):
            raise ValueError(f"the iOS agent runs Core ML .mlpackage directories, not {local.name}")
        key = re.sub(r"[^A-Za-z0-9._-]", "_", artifact.key)[:96]
        remote_dir = container_path(f"{MODELS}/{key}")
        marker = f"{remote_dir}/complete.json"
        rel = f"{MODELS}/{key}/{local.name}"
        if not (t.exists(marker) and json.loads(t.read(marker)).get("sha256") == artifact.sha256):
            t.remove(remote_dir)
            free = t.free_bytes()
            if free is not None and free < artifact.size_b + MIN_FREE_B:
                raise DeviceUnavailable(self.udid or "ios", self._full_line(free, artifact.size_b))
            try:
                t.makedirs(remote_dir)
                t.push(local, remote_dir, artifact.size_b)
                # Written last: a package without it (a push cut short) is pushed again.
                t.write(marker, protocol.encode({"key": artifact.key, "sha256": artifact.sha256,
                                                 "size_b": artifact.size_b, "files": len(artifact.files)}))
            except DiskFull:
                with contextlib.suppress(DeviceUnavailable, TransportError):
                    t.remove(remote_dir)
                raise DeviceUnavailable(self.udid or "ios", self._full_line(None, artifact.size_b)) from None
        self._prepared[artifact.key] = rel
        return rel

    def _full_line(self, free: int | None, size_b: int) -> str:
        have = f"{_size(free)} free, " if free is not None else ""
        return (f"the iPhone is full ({have}the model needs {_size(size_b)} and {_size(MIN_FREE_B)} are kept free): "
                f"{FIX['free space']}, then --resume")

    # -- measuring -------------------------------------------------------------------------------
    def measure(self, job: MeasureJob) -> MeasureResult:
        self._t()  # a session is open
        units = self.options.compute_units
        if job.backend != "coreml":
            return MeasureResult(status=FAILED, reason=f"the iOS agent runs Core ML only, not {job.backend}")
        package = job.artifact_path
        if not package.startswith(f"{MODELS}/"):  # a host path: place it first
            package = self.prepare(ArtifactRef.from_path(package, key=job.artifact_key or Path(package).name,
                                                         backend=job.backend))
        timeout_s = self.options.timeout_s or job.timeout_s
        deadline = time.monotonic() + timeout_s
        job_id = f"{re.sub(r'[^A-Za-z0-9]', '', job.artifact_key)[:12] or 'job'}-{uuid.uuid4().hex[:8]}"
        reports_before = self._report_names()
        launches: list[Launch] = []
        host_peak: list[int] = []
        try:
            for phase, index in protocol.launch_plan(job):
                doc = protocol.job_document(job_id=job_id, phase=phase, index=index, job=job, package=package,
                                            compute_units=units)
                out = self._launch(doc, deadline, sysmon=self.options.sysmontap and phase == "cold", samples=host_peak)
                if isinstance(out, _NoResult):
                    return self._no_result(out, launches, reports_before, timeout_s, units)
                status = out.result["status"]
                if status == INTERRUPTED:
                    raise DeviceUnavailable(self.udid or "ios", f"the agent app was sent to the background during the "
                                            f"{phase} launch ({out.result['reason']}): {FIX['locked']}")
                if status != "ok":
                    return protocol.failed_result(out, compute_units=units)
                launches.append(out)
            host_memory = None
            if host_peak:
                host_memory = MemoryReading(method="sysmontap", peak_b=max(host_peak),
                                            detail={"samples": len(host_peak), "interval_ms": SYSMON_INTERVAL_MS})
            result = protocol.to_measure_result(job, launches, compute_units=units, host_memory=host_memory)
            result.check(job)
            return result
        except SchemaError as exc:
            return MeasureResult(status=FAILED, compute_units=units,
                                 reason=f"the agent app and this host disagree on the result format: {exc}")
        except ContractError as exc:
            return MeasureResult(status=FAILED, compute_units=units, reason=f"the agent app's result is incomplete: {exc}")
        except DiskFull:
            raise DeviceUnavailable(self.udid or "ios", self._full_line(None, 0)) from None
        finally:
            self._clean_job(job_id)

    def _t(self) -> IosTransport:
        if self.transport is None:
            raise RuntimeError("open the agent first (use it in a `with` block)")
        return self.transport

    def _launch(self, doc: dict[str, Any], deadline: float, *, sysmon: bool = False,
                samples: list[int] | None = None) -> Launch | _NoResult:
        """Write the job file, launch the app, wait for its result (or its end, or the deadline)."""
        t = self._t()
        lid, phase, index = doc["launch_id"], doc["phase"], doc["index"]
        result_path = container_path(doc["result_path"])
        t.makedirs(container_path(JOBS))
        t.makedirs(posixpath.dirname(result_path))
        t.remove(result_path)
        t.write(container_path(f"{JOBS}/{lid}.json"), protocol.encode(doc))
        start = time.monotonic()
        pid = t.launch(self.options.bundle_id, ["--splitbench-job", lid])
        if sysmon:
            t.sysmon_start(pid, SYSMON_INTERVAL_MS)
        try:
            return self._wait(pid, lid, phase, index, result_path, start, deadline)
        except BaseException as exc:
            if not isinstance(exc, DeviceUnavailable):  # Ctrl-C, a result that breaks the schema: stop the app
                with contextlib.suppress(Exception):
                    t.kill(pid)
            raise
        finally:
            if sysmon and samples is not None:
                samples.extend(t.sysmon_stop())

    def _wait(self, pid: int, lid: str, phase: str, index: int, result_path: str, start: float,
              deadline: float) -> Launch | _NoResult:
        """Poll until the app's result is there, the app is gone, or the deadline (then kill it)."""
        t = self._t()
        while True:
            if t.exists(result_path):
                result = protocol.decode_result(t.read(result_path))
                duration = time.monotonic() - start
                self._reap(pid)
                if result["launch_id"] != lid:
                    raise SchemaError(f"asked for launch {lid}, the result is for {result['launch_id']}")
                return Launch(phase, index, lid, pid, duration, result)
            if not t.is_running(pid):
                if t.exists(result_path):  # written just before it exited
                    continue
                return _NoResult(phase, index, pid, time.monotonic() - start, timed_out=False)
            if time.monotonic() >= deadline:
                t.kill(pid)
                return _NoResult(phase, index, pid, time.monotonic() - start, timed_out=True)
            time.sleep(POLL_S)

    def _report_names(self) -> set[str] | None:
        """The crash reports on the phone now; None when they cannot be read (a crashed row then says so)."""
        try:
            return self._t().crash_report_names()
        except DeviceUnavailable:
            raise
        except Exception:  # noqa: BLE001 - the reports only explain a crash; measuring goes on without them
            return None

    def _reap(self, pid: int) -> None:
        t = self._t()
        end = time.monotonic() + EXIT_GRACE_S
        while t.is_running(pid):
            if time.monotonic() >= end:
                t.kill(pid)
                return
            time.sleep(POLL_S)

    def _no_result(self, out: _NoResult, launches: list[Launch], before: set[str] | None, timeout_s: float,
                   units: str) -> MeasureResult:
        reached = ", ".join(f"warm load {la.index + 1}" if la.phase == "warm" else la.phase for la in launches) or "nothing"
        if out.timed_out:
            return MeasureResult(status=TIMEOUT, compute_units=units,
                                 reason=f"no result within timeout_s={timeout_s:g}: {out.describe()} "
                                        f"(finished: {reached})",
                                 diagnostics={"pid": out.pid, "phase": out.phase})
        logged = self._system_reports(before, out.pid)
        said = "; ".join(line for line, _ in logged) or "no crash or jetsam report appeared"
        return MeasureResult(status=CRASHED, compute_units=units,
                             reason=f"the system logged: {said}; {out.describe()} (finished: {reached})",
                             stderr_tail="\n\n".join(text for _, text in logged)[-4000:],
                             diagnostics={"pid": out.pid, "phase": out.phase,
                                          "reports": [posixpath.basename(n) for n, _ in logged]})

    def _system_reports(self, before: set[str] | None, pid: int) -> list[tuple[str, str]]:
        """The crash or jetsam reports written since the job started that concern the app (waits a little:
        ReportCrash writes them a moment after the process ends)."""
        t = self._t()
        if before is None:
            return [("the crash reports could not be read", "")]
        end = time.monotonic() + self.crash_report_wait_s
        while True:
            new = sorted(n for n in t.crash_report_names() - before if _is_app_report(n, self._executable))
            if new or time.monotonic() >= end:
                break
            time.sleep(0.5)
        return [(summarize_report(name, text, self._executable, pid), text) for name, text in t.read_crash_reports(new)]

    def _clean_job(self, job_id: str) -> None:
        """Remove the job's files and its compiled model (the pushed package stays, keyed by content)."""
        t = self.transport
        if t is None:
            return
        with contextlib.suppress(DeviceUnavailable, TransportError, OSError):
            for folder in (protocol.JOBS, protocol.RESULTS):
                for name in t.listdir(container_path(folder)):
                    if name.startswith(job_id):
                        t.remove(container_path(f"{folder}/{name}"))
            t.remove(container_path(f"{protocol.COMPILED}/{job_id}.mlmodelc"))


# --------------------------------------------------------------------------------------------------
# The platform module's functions (see device_agents.base.discover_devices)


def agent_for(target: str, **options: Any) -> IosAgent:
    """The agent for ``ios`` or ``ios:<udid>``; ``options`` is the spec's ``[ios]`` table."""
    return IosAgent(target, parse_options(options))


def discover() -> list[DeviceInfo]:
    """Every iPhone attached over USB, as lockdown describes it (no app or developer service needed)."""
    services = _services()
    found = []
    for udid in _usb_udids(services):
        t = IosTransport(udid, services)
        try:
            v = t.connect()
            note = "" if t.paired else " — not paired: run `splitbench doctor ios`"
            found.append(DeviceInfo(
                device_id=udid, target="ios", platform="ios",
                name=f"{_phone_name(v)}{note}",
                backends={"coreml": f"Core ML (iOS {v.get('ProductVersion')} {v.get('BuildVersion')})"},
                fingerprint={"product_type": v.get("ProductType"), "ios_version": v.get("ProductVersion"),
                             "ios_build": v.get("BuildVersion"), "paired": t.paired},
                threads=None, compute_units="cpuOnly"))
        except (DeviceUnavailable, TransportError) as exc:
            found.append(DeviceInfo(device_id=udid, target="ios", platform="ios", name=f"iPhone ({exc})", backends={},
                                    threads=None))
        finally:
            t.close()
    return found


def doctor(target: str = "ios", **options: Any) -> list[Check]:
    """Every precondition of ``target``, one :class:`Check` each, in order; after the first that fails the
    rest are listed as not checked. Changes nothing on the phone (the app is not installed here)."""
    try:
        opts = parse_options(options)
        agent = IosAgent(target, opts)
        services = _services()
    except AgentError as exc:
        return _with_rest([Check("pymobiledevice3 and [ios] options", False, str(exc), INSTALL_HINT)])
    checks = [Check("pymobiledevice3", True, services.version)]
    try:
        udids = list_usb_udids(services)
    except (UsbmuxdUnavailable, DeviceUnavailable) as exc:
        return _with_rest(checks + [Check("usbmuxd", False, str(exc), FIX["usbmuxd"])])
    checks.append(Check("usbmuxd", True, f"{len(udids)} device(s) over USB"))
    try:
        udid = resolve_udid(udids, agent.wanted_udid)
    except AgentError as exc:
        return _with_rest(checks + [Check("iPhone attached", False, str(exc), FIX["attached"])])
    checks.append(Check("iPhone attached", True, udid))
    agent.udid, agent.transport = udid, IosTransport(udid, services, tunnel=opts.tunnel)
    session = _Session(agent.transport, opts, install=False, launcher=agent._launch, cleaner=agent._clean_job)
    try:
        for check in session.checks():
            checks.append(check)
    except (DeviceUnavailable, TransportError) as exc:
        checks.append(Check("iPhone reachable", False, str(exc), FIX["attached"]))
    finally:
        agent.close()
    return _with_rest(checks) if checks[-1].ok is False else checks


_ALL_CHECKS = ("usbmuxd", "iPhone attached", "paired and trusted", "Developer Mode", "developer disk image",
               "tunnel (iOS 17+)", "developer services", "agent app", "app container", "free space",
               "agent app answers")


def _with_rest(checks: list[Check]) -> list[Check]:
    """``checks`` and, after its failure, every later step as not checked."""
    done = {c.name for c in checks}
    return checks + [Check(n, None, "not checked: an earlier step failed") for n in _ALL_CHECKS if n not in done]


def clean(target: str = "ios", **options: Any) -> list[str]:
    """Remove everything splitbench put in the agent app's container (models, jobs, results); what was removed."""
    opts = parse_options(options)
    agent = IosAgent(target, opts)
    services = _services()
    udid = resolve_udid(_usb_udids(services), agent.wanted_udid)
    t = IosTransport(udid, services)
    try:
        t.connect()
        if not t.paired:
            raise AgentError(f"iPhone {udid}: not paired: {FIX['paired']}")
        try:
            t.open_container(opts.bundle_id)
        except AppNotInstalled:
            return []
        root = container_path(ROOT)
        if not t.exists(root):
            return []
        models = t.listdir(container_path(MODELS))
        t.remove(root)
        return [f"{udid}: removed {root} from {opts.bundle_id} ({len(models)} pushed model(s))"]
    except DeviceUnavailable as exc:
        raise AgentError(f"iPhone {udid}: {exc.reason}") from None
    finally:
        t.close()
