"""Opening a session with an iPhone: the spec's ``[ios]`` table, finding the phone, and the preconditions
checked one by one before anything is measured, each failure one line saying how to fix it.

:class:`Preconditions` is shared by a run (``IosAgent.open``, which installs the app when the spec gives
one) and by ``splitbench doctor ios`` (which changes nothing on the phone). Its last step launches the
agent app once (``hello``) through the launcher it is given (``measure.Launcher.launch``), so the app is
known to answer before the first job.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Iterator

from device_agents.base import AgentError, Check, DeviceUnavailable
from device_agents.ios import protocol, transport
from device_agents.ios.protocol import (AGENT_APP_VERSION, COMPUTE_UNITS_FOR, INSTALL_HINT, SCHEMA_VERSION, Launch,
                                       SchemaError)
from device_agents.ios.errors import (AppNotInstalled, DeveloperServicesUnavailable, DeviceLocked, InstallFailed,
                                      LaunchRefused, NotPaired, TunnelLost, TunnelUnavailable, UsbmuxdUnavailable)
from device_agents.ios.transport import IosTransport, Services, list_usb_udids

TARGET_RE = re.compile(r"^ios(?::(?P<udid>[A-Za-z0-9-]{8,64}))?$")
DEFAULT_BUNDLE_ID = "org.splitbench.agent"
TUNNELS = ("auto", "tunneld", "userspace")
HELLO_TIMEOUT_S = 60.0
MIN_FREE_B = 50_000_000  # room kept free beyond a model, for its compiled copy and the results

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
    "tunneld tunnel": "restart tunneld (`sudo pymobiledevice3 remote tunneld`), unlock the iPhone and check the "
                      "cable; or, on iOS 17.4+, set [ios].tunnel = 'userspace' to do without tunneld",
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
    # a launch iOS refused (errors.LaunchRefused.kind)
    "untrusted": "on the iPhone: Settings > General > VPN & Device Management, tap your developer profile (your "
                 "Apple ID) and Trust it, then retry; if it is trusted already, the signature is wrong: build the "
                 "app again with `make ios-agent TEAM=<team id>` with this iPhone in the team (docs/ios.md)",
    "no process": "open the agent app by hand on the iPhone to see why iOS does not start it; if it does not "
                  "open, install it again (`pymobiledevice3 apps install SplitbenchAgent.ipa`)",
    "dvt": "unlock the iPhone, open the agent app by hand once and retry; if it persists, restart the iPhone",
}


# --------------------------------------------------------------------------------------------------
# Options: the spec's [ios] table


@dataclass(frozen=True)
class IosOptions:
    """The spec's ``[ios]`` table."""

    app: str | None = None  # a signed SplitbenchAgent .ipa or .app to install when missing or of another version
    bundle_id: str = DEFAULT_BUNDLE_ID  # the bundle identifier it was signed with
    timeout_s: float | None = None  # a job on the phone, all its launches (default: [run].timeout_s)
    tunnel: str = "auto"  # iOS 17+: "auto" (tunneld if it runs, else the userspace tunnel), "tunneld", "userspace"
    sysmontap: bool = False  # also sample the app's memory from the host (DVT sysmontap)


OPTION_TYPES: dict[str, tuple[type, ...]] = {"app": (str,), "bundle_id": (str,), "timeout_s": (int, float),
                                             "tunnel": (str,), "sysmontap": (bool,)}


def parse_options(options: dict[str, Any]) -> IosOptions:
    """Validate the ``[ios]`` table; :class:`AgentError` naming the key for anything unknown or wrong."""
    known = [f.name for f in fields(IosOptions)]
    if "compute_units" in options:  # before issue 19 a setting of its own; now the accelerator's
        said = {v: k for k, v in COMPUTE_UNITS_FOR.items()}.get(options["compute_units"])
        raise AgentError("[ios].compute_units is gone: Core ML's compute units follow [run].accelerators (cpu: cpuOnly, "
                         "gpu: cpuAndGPU, npu: cpuAndNeuralEngine); remove it"
                         + (f" and set [run].accelerators = [\"{said}\"]" if said else ""))
    for key, value in options.items():
        if key not in known:
            raise AgentError(f"[ios]: unknown key {key!r}; known keys: {', '.join(known)}")
        types = OPTION_TYPES[key]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise AgentError(f"[ios].{key} = {value!r}: expected {' or '.join(t.__name__ for t in types)}")
    opts = IosOptions(**options)
    if opts.tunnel not in TUNNELS:
        raise AgentError(f"[ios].tunnel = {opts.tunnel!r}; valid: {', '.join(TUNNELS)}")
    if opts.timeout_s is not None and not opts.timeout_s > 0:
        raise AgentError(f"[ios].timeout_s must be > 0, got {opts.timeout_s!r}")
    if not re.fullmatch(r"[A-Za-z0-9.-]+", opts.bundle_id):
        raise AgentError(f"[ios].bundle_id = {opts.bundle_id!r} is not a bundle identifier")
    return opts


def wanted_udid(target: str) -> str | None:
    """The UDID ``ios:<udid>`` names (None for ``ios``), or :class:`AgentError` for a malformed target."""
    m = TARGET_RE.match(target)
    if not m:
        raise AgentError(f"unknown iOS target {target!r}; use ios or ios:<udid>")
    return m["udid"]


# --------------------------------------------------------------------------------------------------
# Finding the phone


def find_services() -> Services:
    """pymobiledevice3's entry points, or :class:`AgentError` with the install hint."""
    try:
        return transport.load_services()
    except ImportError as exc:
        raise AgentError(f"iOS needs pymobiledevice3: {INSTALL_HINT} ({exc})") from None


def usb_udids(services: Services) -> list[str]:
    """The iPhones usbmuxd lists over USB, or :class:`AgentError` saying how to reach usbmuxd."""
    try:
        return list_usb_udids(services)
    except UsbmuxdUnavailable as exc:
        raise AgentError(f"usbmuxd cannot be reached ({exc}): {FIX['usbmuxd']}") from None
    except DeviceUnavailable as exc:
        raise AgentError(f"usbmuxd did not answer ({exc.reason}): {FIX['usbmuxd']}") from None


def same_udid(a: str, b: str) -> bool:
    return a.replace("-", "").lower() == b.replace("-", "").lower()


def resolve_udid(udids: list[str], wanted: str | None) -> str:
    """The UDID a target names among ``udids`` (``ios``: the only iPhone attached), or :class:`AgentError`."""
    if wanted:
        for u in udids:
            if same_udid(u, wanted):
                return u
        seen = f"attached: {', '.join(udids)}" if udids else "none attached"
        raise AgentError(f"iPhone {wanted} is not attached over USB ({seen}): {FIX['attached']}")
    if not udids:
        raise AgentError(f"no iPhone attached over USB: {FIX['attached']}")
    if len(udids) > 1:
        raise AgentError(f"{len(udids)} iPhones attached ({', '.join(udids)}): choose one with --target ios:<udid>")
    return udids[0]


def phone_name(values: dict[str, Any]) -> str:
    """The phone for people, from lockdown's values: "Alice's iPhone (iPhone11,2, iOS 17.5)"."""
    return f"{values.get('DeviceName') or 'iPhone'} ({values.get('ProductType')}, iOS {values.get('ProductVersion')})"


def one_line(text: str) -> str:
    """What the CLI prints is one line: device messages may hold several."""
    return " ".join(str(text).split())


def human_size(b: int) -> str:
    """Bytes for people (SI units, like every size splitbench reports)."""
    return f"{b / 1e9:.2f} GB" if b >= 1e9 else f"{b / 1e6:.1f} MB" if b >= 1e6 else f"{b / 1e3:.0f} kB"


# --------------------------------------------------------------------------------------------------
# Preconditions

ALL_CHECKS = ("usbmuxd", "iPhone attached", "paired and trusted", "Developer Mode", "developer disk image",
              "tunnel (iOS 17+)", "developer services", "agent app", "app container", "free space",
              "agent app answers")


class Preconditions:
    """The precondition steps of a session, in order, each one yielding a :class:`Check`.

    ``launcher(job_document, deadline)`` launches the app once and returns a :class:`Launch` or what the
    launch gave instead (its ``describe()`` says what); ``cleaner(job_id)`` removes the launch's files.
    """

    def __init__(self, t: IosTransport, options: IosOptions, *, install: bool,
                 launcher: Callable[[dict[str, Any], float], Any], cleaner: Callable[[str], None]):
        self.t, self.options, self.install = t, options, install
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
        except TunnelLost as exc:
            raise PreconditionUnavailable(self.t.udid, Check("tunnel (iOS 17+)", False, exc.reason,
                                                             FIX["tunneld tunnel"])) from None
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
            yield Check("free space", free >= MIN_FREE_B, f"{human_size(free)} free",
                        "" if free >= MIN_FREE_B else FIX["free space"])

    def _answers(self) -> Iterator[Check]:
        job_id = f"hello-{uuid.uuid4().hex[:8]}"
        doc = protocol.job_document(job_id=job_id, phase="hello", index=0, job=None, package=None,
                                    compute_units=COMPUTE_UNITS_FOR["cpu"])
        try:
            out = self.launcher(doc, time.monotonic() + HELLO_TIMEOUT_S)
        except DeviceLocked:
            yield Check("agent app answers", False, "the iPhone is locked", FIX["locked"])
            return
        except (AppNotInstalled, LaunchRefused) as exc:
            yield refusal_check(exc)
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


def refusal_check(exc: LaunchRefused | AppNotInstalled) -> Check:
    """The "agent app answers" step failed by a launch iOS refused: what it said and the fix for it."""
    if isinstance(exc, AppNotInstalled):
        return Check("agent app answers", False, f"the app is not installed: {exc}", FIX["agent app"])
    return Check("agent app answers", False, exc.detail, FIX[exc.kind])


def refusal_line(udid: str, exc: LaunchRefused | AppNotInstalled) -> str:
    """A launch refused during a run, as one line with the fix (the reason of a DeviceUnavailable)."""
    check = refusal_check(exc)
    return one_line(f"iPhone {udid}: {check.detail.rstrip('.')}. Fix: {check.fix}")


class PreconditionUnavailable(DeviceUnavailable):
    """A step found the phone unavailable for now rather than set up wrong (tunneld's tunnel lost): the run
    skips the phone like any lost one; ``doctor`` shows ``check``."""

    def __init__(self, device_id: str, check: Check):
        super().__init__(device_id, one_line(f"{check.name}: {check.detail.rstrip('.')}. Fix: {check.fix}"))
        self.check = check


def require(pre: Preconditions, udid: str) -> None:
    """Run every step of ``pre``; the first unmet one is :class:`AgentError`, one line with its fix."""
    for check in pre.checks():
        if check.ok is False:
            raise AgentError(one_line(f"iPhone {udid}: {check.name}: {check.detail.rstrip('.')}. Fix: {check.fix}"))
