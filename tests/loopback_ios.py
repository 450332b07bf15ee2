"""A loopback iPhone for the iOS agent's tests: the pymobiledevice3 services the agent uses, with their
names, call signatures, reply shapes and exceptions taken from pymobiledevice3 11.45.0 (the installed
wheel; file and line cited per class), backed by directories and processes on this host.

- usbmux lists the phone while it is attached (``usbmux.py``); lockdown answers with ``all_values`` like a
  real phone's (``lockdown.py``);
- the app's container is a directory (house arrest is AFC over it, ``services/afc.py``), crash reports
  another (``services/crash_reports.py``);
- DVT process control launches the app stand-in (``tests/loopback_ios_app.py``) as a real process on this
  host; it reads the job file and writes a schema-valid result, doing real work that is not Core ML, and
  says so in every result (its device model is ``Loopback1,1``, its runtime "loopback stand-in").

Knobs make every precondition fail on demand, and :class:`Fault` injects the run-time faults: the phone
unplugged or locked during a launch, the app killed by the system (jetsam, the watchdog; a report is
written where iOS writes one), the app hung.
"""

from __future__ import annotations

import collections
import datetime as _dt
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from pymobiledevice3 import exceptions as pmd3
from pymobiledevice3.dtx.exceptions import DTXNsError
from pymobiledevice3.dtx.ns_types import NSError
from pymobiledevice3.usbmux import MuxDevice

from device_agents.ios.protocol import AGENT_APP_VERSION
from device_agents.ios.transport import Services
from tests.loopback_ios_services import (EXECUTABLE, LoopbackCrashReports, LoopbackDeviceInfo, LoopbackDvtProvider,
                                         LoopbackHouseArrest, LoopbackImageMounter, LoopbackInstallationProxy,
                                         LoopbackLockdown, LoopbackProcessControl, LoopbackRsd, LoopbackRsdTunnel,
                                         LoopbackSysmontap, image_type_for_device)

STANDIN = Path(__file__).with_name("loopback_ios_app.py")
REPO = Path(__file__).resolve().parents[1]  # on the stand-in's PYTHONPATH: it reads memory as the local worker does
BUNDLE_ID = "org.splitbench.agent"
FAULTS = ("unplug", "lock", "jetsam", "watchdog", "hang", "bad_result")


@dataclass
class Fault:
    """Something that happens during the ``nth`` launch of ``phase`` (hello, compile, cold, warm)."""

    kind: str  # one of FAULTS
    phase: str = "cold"
    nth: int = 1


@dataclass
class Knobs:
    """The phone's state. Every default is a phone ready to measure."""

    usbmuxd: bool = True
    attached: bool = True
    paired: bool = True
    developer_mode: bool = True
    ddi_mounted: bool = True
    tunnel: bool = True  # iOS 17+: the userspace tunnel can be opened
    # A tunneld: None (not running), "serves" (it has a working tunnel to this phone), "unlisted" (it runs
    # but lists no tunnel to this phone), "broken" (it lists one, but it cannot be connected).
    tunneld: Optional[str] = None
    locked: bool = False
    # SpringBoard refusing a launch: "untrusted" (Security: profile not trusted, or a bad signature),
    # "not_found" (the app is gone from SpringBoard's library), "no_pid" (DVT answers pid 0), "other" (an
    # NSError SpringBoard gives no name). "Locked" is the ``locked`` knob.
    launch_refusal: Optional[str] = None
    app_installed: bool = True
    app_version: str = AGENT_APP_VERSION
    app_development_signed: bool = True  # house arrest vends the whole container only to these
    free_bytes: int = 64 * 10**9
    faults: list[Fault] = field(default_factory=list)


class LoopbackPhone:
    """One loopback iPhone rooted at a directory of this host."""

    def __init__(self, root: Path, *, udid: str = "00008020-LOOPBACK0000001E", ios: str = "17.5",
                 knobs: Knobs | None = None):
        self.root, self.udid, self.ios = Path(root), udid, ios
        self.knobs = knobs or Knobs()
        self.apps: dict[str, dict[str, Any]] = {}
        self.processes: dict[int, subprocess.Popen] = {}
        self.launches: list[dict[str, Any]] = []  # every launch, for the tests to look at
        self.used_bytes = 0
        self.pushes = 0  # house-arrest pushes, for the tests
        # service connections by service name, opened and closed (crash reports, the crash mover, AFC)
        self.opened: collections.Counter[str] = collections.Counter()
        self.closed: collections.Counter[str] = collections.Counter()
        self._phase_counts: dict[str, int] = {}
        self.crash_dir.mkdir(parents=True, exist_ok=True)
        if self.knobs.app_installed:
            self.install_info({"CFBundleIdentifier": BUNDLE_ID, "CFBundleShortVersionString": self.knobs.app_version,
                                "CFBundleVersion": "1", "CFBundleExecutable": EXECUTABLE})

    # -- places ----------------------------------------------------------------------------------
    @property
    def crash_dir(self) -> Path:
        return self.root / "CrashReports"

    def container(self, bundle_id: str = BUNDLE_ID) -> Path:
        return self.root / "Containers" / bundle_id

    @property
    def values(self) -> dict[str, Any]:
        """lockdown's GetValue dict (the keys lockdown.py l.221-231 and restore/device.py read)."""
        return {"UniqueDeviceID": self.udid, "ProductType": "Loopback1,1", "ProductVersion": self.ios,
                "BuildVersion": "LOOPBACK", "HardwareModel": "LOOPBACKAP", "CPUArchitecture": "arm64e",
                "DeviceClass": "iPhone", "DeviceName": "Loopback iPhone", "UniqueChipID": 1,
                "DevicePublicKey": b"loopback"}

    def require_attached(self) -> None:
        if not self.knobs.attached:
            raise pmd3.ConnectionTerminatedError()

    # -- apps ------------------------------------------------------------------------------------
    def install_info(self, info: dict[str, Any]) -> None:
        bundle = info["CFBundleIdentifier"]
        self.apps[bundle] = {**info, "Path": f"/private/var/containers/Bundle/Application/{bundle}/{EXECUTABLE}.app",
                             "ApplicationType": "User"}
        (self.container(bundle) / "Documents").mkdir(parents=True, exist_ok=True)

    # -- processes -------------------------------------------------------------------------------
    def launch(self, bundle_id: str, arguments: list[str], kill_existing: bool) -> int:
        if bundle_id not in self.apps or self.knobs.launch_refusal == "not_found":
            # fritzlb/iOS17-JIT-WIN#72 (pymobiledevice3's `dvt launch` of an app that is not installed)
            raise DTXNsError(NSError(4, "FBSOpenApplicationErrorDomain", {
                "BSErrorCodeDescription": "NotFound",
                "NSLocalizedFailureReason": f'Application info provider (FBSApplicationLibrary) returned nil for "{bundle_id}"'}))
        if self.knobs.locked:
            # SpringBoard's refusal; the agent reads BSErrorCodeDescription and the reason text, not the code.
            raise DTXNsError(NSError(7, "FBSOpenApplicationErrorDomain", {
                "BSErrorCodeDescription": "Locked",
                "NSLocalizedDescription": f'The request to open "{bundle_id}" failed.',
                "NSLocalizedFailureReason": "The request was denied by service delegate (SBMainWorkspace) for reason: "
                                            f'Locked ("Unable to launch {bundle_id} because the device was not, or '
                                            'could not be, unlocked").'}))
        refusal = self.knobs.launch_refusal
        if refusal == "untrusted":
            # A free team's app before its developer is trusted, or a bad signature: SpringBoard's NSError as
            # its log shows it (appium/appium#14339): RequestDenied, wrapping FBSOpenApplicationErrorDomain 3
            # (Security); appium/appium#6230 has the same "Security (3)".
            why = (f"Unable to launch {bundle_id} because it has an invalid code signature, inadequate entitlements "
                   "or its profile has not been explicitly trusted by the user.")
            raise DTXNsError(NSError(1, "FBSOpenApplicationServiceErrorDomain", {
                "BSErrorCodeDescription": "RequestDenied",
                "NSLocalizedDescription": f'The request to open "{bundle_id}" failed.',
                "NSLocalizedFailureReason": "The request was denied by service delegate (SBMainWorkspace) for "
                                            f'reason: Security ("{why.rstrip(".")}").',
                "NSUnderlyingError": NSError(3, "FBSOpenApplicationErrorDomain", {
                    "BSErrorCodeDescription": "Security", "NSLocalizedFailureReason": why})}))
        if refusal == "other":
            # An NSError with no BSErrorCodeDescription (AloneMonkey/frida-ios-dump#71: "The operation
            # couldn't be completed. (FBSOpenApplicationErrorDomain error 1.)").
            raise DTXNsError(NSError(1, "FBSOpenApplicationErrorDomain", {
                "NSLocalizedDescription": "The operation couldn’t be completed. (FBSOpenApplicationErrorDomain "
                                          "error 1.)"}))
        if refusal == "no_pid":
            return 0  # what ProcessControl.launch then asserts on (process_control.py l.225)
        if kill_existing:
            for pid, p in list(self.processes.items()):
                if p.poll() is None and getattr(p, "bundle_id", None) == bundle_id:
                    p.kill()
                    p.wait()
        phase = self._phase_of(bundle_id, arguments)
        self._phase_counts[phase] = n = self._phase_counts.get(phase, 0) + 1
        fault = next((f for f in self.knobs.faults if f.phase == phase and f.nth == n), None)
        held = self.root / "held"
        held.mkdir(exist_ok=True)
        app = self.apps[bundle_id]
        env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO), "PYTHONHASHSEED": "0",
               "STANDIN_BUNDLE_ID": bundle_id, "STANDIN_APP_VERSION": app["CFBundleShortVersionString"],
               "STANDIN_APP_BUILD": app["CFBundleVersion"], "STANDIN_OS_VERSION": self.ios,
               "STANDIN_HELD_DIR": str(held)}
        if fault and fault.kind in ("hang", "bad_result"):
            env["STANDIN_FAULT"] = fault.kind
        elif fault and fault.kind in ("jetsam", "watchdog", "lock"):
            env["STANDIN_FAULT"] = "hold"  # block once loaded, until the "system" acts
        log = open(self.root / "console.log", "ab")
        proc = subprocess.Popen([sys.executable, str(STANDIN), "--container", str(self.container(bundle_id)), *arguments],
                                cwd=str(self.container(bundle_id)), env=env, stdout=log, stderr=log,
                                start_new_session=True)
        log.close()
        proc.bundle_id = bundle_id  # type: ignore[attr-defined]
        self.processes[proc.pid] = proc
        self.launches.append({"pid": proc.pid, "phase": phase, "arguments": list(arguments),
                              "fault": fault.kind if fault else None, "job": self._job_of(bundle_id, arguments)})
        if fault and fault.kind == "unplug":
            self.knobs.attached = False  # the app goes on running; the host loses the phone
        elif fault and fault.kind in ("jetsam", "watchdog", "lock"):
            threading.Thread(target=self._act_when_held, args=(proc, fault.kind, held / str(proc.pid)),
                             daemon=True).start()
        return proc.pid

    def _job_of(self, bundle_id: str, arguments: list[str]) -> dict[str, Any]:
        """The job file of a launch (the loopback may look inside the container); {} when there is none."""
        try:
            lid = arguments[arguments.index("--splitbench-job") + 1]
            return json.loads((self.container(bundle_id) / "Documents" / "splitbench" / "jobs" / f"{lid}.json").read_text())
        except (ValueError, IndexError, OSError):
            return {}

    def _phase_of(self, bundle_id: str, arguments: list[str]) -> str:
        """The phase of a launch, read from its job file."""
        return self._job_of(bundle_id, arguments).get("phase", "unknown")

    def _act_when_held(self, proc: subprocess.Popen, kind: str, marker: Path) -> None:
        end = time.monotonic() + 60
        while not marker.exists() and proc.poll() is None and time.monotonic() < end:
            time.sleep(0.02)
        if proc.poll() is not None:
            return
        if kind == "lock":
            self.knobs.locked = True
            proc.send_signal(signal.SIGUSR1)  # the app is sent to the background
            return
        proc.kill()
        proc.wait()
        self._write_report(kind, proc.pid)

    def _write_report(self, kind: str, pid: int) -> None:
        """A report where iOS writes one, in its .ips shape: a JSON header line, then a JSON body."""
        now = _dt.datetime.now()
        stamp = now.strftime("%Y-%m-%d-%H%M%S")
        header = {"bug_type": "298" if kind == "jetsam" else "309", "timestamp": now.strftime("%Y-%m-%d %H:%M:%S.00 +0000"),
                  "os_version": f"iPhone OS {self.ios} (LOOPBACK)", "incident_id": f"LOOPBACK-{pid}"}
        if kind == "jetsam":
            name = f"JetsamEvent-{stamp}.ips"
            body = {"product": "Loopback1,1", "largestProcess": EXECUTABLE,
                    "processes": [{"name": EXECUTABLE, "pid": pid, "reason": "per-process-limit", "rpages": 180000,
                                   "states": ["frontmost"]},
                                  {"name": "SpringBoard", "pid": 34, "rpages": 9000, "states": ["daemon"]}]}
        else:
            name = f"{EXECUTABLE}-{stamp}.ips"
            header.update({"app_name": EXECUTABLE, "name": EXECUTABLE})
            body = {"procName": EXECUTABLE, "pid": pid, "exception": {"type": "EXC_CRASH", "signal": "SIGKILL"},
                    "termination": {"namespace": "FRONTBOARD", "code": 0x8BADF00D,
                                    "indicator": "scene-update watchdog transgression"}}
        (self.crash_dir / name).write_text(json.dumps(header) + "\n" + json.dumps(body, indent=2))

    def shutdown(self) -> None:
        for p in self.processes.values():
            if p.poll() is None:
                p.kill()
            p.wait()


# --------------------------------------------------------------------------------------------------
# The services object


def services(*phones: LoopbackPhone) -> Services:
    """The loopback's :class:`~device_agents.ios.transport.Services`: the agent's only way to these phones."""
    by_udid = {p.udid: p for p in phones}

    def _usbmuxd() -> None:
        if not all(p.knobs.usbmuxd for p in phones):
            raise pmd3.ConnectionFailedToUsbmuxdError()

    async def list_devices(usbmux_address: Optional[str] = None) -> list[MuxDevice]:
        """usbmux.py l.493: every device usbmuxd knows, as MuxDevice(devid, serial, connection_type)."""
        _usbmuxd()
        return [MuxDevice(i + 1, p.udid, "USB") for i, p in enumerate(phones) if p.knobs.attached]

    async def create_using_usbmux(serial: Optional[str] = None, identifier: Optional[str] = None,
                                  label: str = "pymobiledevice3", autopair: bool = True,
                                  connection_type: Optional[str] = None, pair_timeout: Optional[float] = None,
                                  local_hostname: Optional[str] = None, pair_record: Optional[dict] = None,
                                  pairing_records_cache_folder: Optional[Path] = None, port: int = 62078,
                                  usbmux_address: Optional[str] = None) -> LoopbackLockdown:
        """lockdown.py l.1278; service_connection.py l.380-388 for the device-not-found errors."""
        _usbmuxd()
        attached = [p for p in phones if p.knobs.attached]
        if serial is None:
            if not attached:
                raise pmd3.NoDeviceConnectedError()
            phone = attached[0]
        else:
            phone = by_udid.get(serial)
            if phone is None or not phone.knobs.attached:
                raise pmd3.DeviceNotFoundError(serial, f"Device not found: usbmux has no device matching udid {serial}")
        if not phone.knobs.paired and autopair:
            raise pmd3.PairingDialogResponsePendingError()
        return LoopbackLockdown(phone, paired=phone.knobs.paired)

    async def get_tunneld_device_by_udid(udid: str, tunneld_address: tuple[str, int] = ("127.0.0.1", 49151),
                                         bridge: Optional[bool] = None) -> Optional[LoopbackRsd]:
        """tunneld/api.py l.176-195, step by step: TunneldConnectionError when no tunneld runs, None when it
        lists no tunnel to ``udid``, else ``rsds[0]`` of the tunnels that connected (IndexError when none)."""
        running = {u: p for u, p in by_udid.items() if p.knobs.tunneld is not None}
        if not running:
            raise pmd3.TunneldConnectionError()
        tunnels = {u: p for u, p in running.items() if p.knobs.tunneld in ("serves", "broken")}
        if udid not in tunnels:
            return None
        rsds = [LoopbackRsd(p) for p in [tunnels[udid]] if p.knobs.tunneld == "serves" and p.knobs.attached]
        return rsds[0]

    class _Tunnel(LoopbackRsdTunnel):
        def __init__(self, serial: Optional[str] = None, autopair: bool = True, prefer_native: bool = False):
            super().__init__(by_udid, serial, autopair, prefer_native)

    return Services(
        version="loopback (pymobiledevice3 11.45.0 signatures)", list_devices=list_devices,
        create_using_usbmux=create_using_usbmux, InstallationProxyService=LoopbackInstallationProxy,
        HouseArrestService=LoopbackHouseArrest, MobileImageMounterService=LoopbackImageMounter,
        image_type_for_device=image_type_for_device, DvtProvider=LoopbackDvtProvider,
        ProcessControl=LoopbackProcessControl, DeviceInfo=LoopbackDeviceInfo, Sysmontap=LoopbackSysmontap,
        CrashReportsManager=LoopbackCrashReports, PreferredRsdTunnel=_Tunnel,
        get_tunneld_device_by_udid=get_tunneld_device_by_udid,
    )
