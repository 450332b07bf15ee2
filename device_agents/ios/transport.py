"""Transport to an iPhone: pymobiledevice3 behind a synchronous session.

pymobiledevice3 (11.x) is asyncio throughout, and its connections are bound to the loop that made them,
so a session owns one event loop running in a thread of its own and every call is a coroutine handed to
it with a timeout (:class:`IosTransport`). Above this module nothing is async.

The pymobiledevice3 entry points are reached through one :class:`Services` object, so the tests' loopback
iPhone (``tests/loopback_ios.py``) stands in for them with the same names, signatures and reply shapes.
Which entry point, and where it is defined in pymobiledevice3 11.45.0 (the installed wheel):

- ``usbmux.list_devices(usbmux_address=None) -> list[MuxDevice]`` (usbmux.py l.493), ``MuxDevice`` with
  ``serial``, ``connection_type``, ``is_usb`` (usbmux.py l.147-170);
- ``lockdown.create_using_usbmux(serial=..., autopair=...)`` (lockdown.py l.1278) -> a client with
  ``all_values``, ``paired``, ``product_version`` (lockdown.py l.221-290) and
  ``get_developer_mode_status()`` (lockdown_service_provider.py l.169);
- ``InstallationProxyService(lockdown)``: ``get_apps(bundle_identifiers=[...])``,
  ``install_from_local(path, developer=...)`` (services/installation_proxy.py l.501, l.261);
- ``HouseArrestService.create(lockdown, bundle_id, documents_only=False)`` (services/house_arrest.py
  l.40), an AFC client: ``push``, ``get_file_contents``, ``set_file_contents``, ``exists``, ``makedirs``,
  ``rm``, ``listdir``, ``get_device_info`` (services/afc.py l.482-1020);
- ``MobileImageMounterService(lockdown).is_image_mounted(image_type)`` and ``image_type_for_device``
  (services/mobile_image_mounter.py l.133, l.724);
- ``DvtProvider(lockdown or rsd)``, ``ProcessControl(dvt)``: ``launch(bundle_id, arguments, kill_existing,
  start_suspended, environment)``, ``kill(pid)`` (services/dvt/instruments/dvt_provider.py l.37,
  process_control.py l.138, l.188); ``DeviceInfo(dvt).is_running_pid(pid)`` (device_info.py l.120);
  ``Sysmontap.create(dvt, interval)`` and ``iter_processes()`` (sysmontap.py l.56, l.72);
- ``CrashReportsManager(lockdown)``: ``ls(path, depth)``, ``afc``, ``aclose()``, and what its ``flush()``
  uses, ``lockdown.start_lockdown_service(crash_mover_service_name)`` (services/crash_reports.py l.56-95,
  l.120, l.225; lockdown.py l.747), whose connection ``recvall``\s the mover's ping and is closed here;
- for iOS 17 and later, developer services need an RSD tunnel: ``tunneld.api.get_tunneld_device_by_udid``
  (tunneld/api.py l.176) when a tunneld runs, else ``remote.rsd_tunnel.PreferredRsdTunnel(serial=...)``
  (remote/rsd_tunnel.py l.28, the no-root userspace tunnel; one per process).

What a failure means to the agent (the phone gone or locked, a launch refused, ...) is ``errors.py``'s.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, Coroutine

from device_agents.ios.errors import (DvtError, LaunchRefused, TunnelLost, TunnelUnavailable, translate)
from device_agents.ios.protocol import INSTALL_HINT

CALL_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Services:
    """The pymobiledevice3 entry points the iOS agent uses (see the module docstring), as values."""

    version: str
    list_devices: Callable[..., Awaitable[list[Any]]]
    create_using_usbmux: Callable[..., Awaitable[Any]]
    InstallationProxyService: Any
    HouseArrestService: Any
    MobileImageMounterService: Any
    image_type_for_device: Callable[[Any], str]
    DvtProvider: Any
    ProcessControl: Any
    DeviceInfo: Any
    Sysmontap: Any
    CrashReportsManager: Any
    PreferredRsdTunnel: Any
    get_tunneld_device_by_udid: Callable[..., Awaitable[Any]]


def load_services() -> Services:
    """The real pymobiledevice3 entry points; ImportError with the install hint when it is missing."""
    try:
        from importlib import metadata

        from pymobiledevice3.lockdown import create_using_usbmux
        from pymobiledevice3.remote.rsd_tunnel import PreferredRsdTunnel
        from pymobiledevice3.services.crash_reports import CrashReportsManager
        from pymobiledevice3.services.dvt.instruments.device_info import DeviceInfo
        from pymobiledevice3.services.dvt.instruments.dvt_provider import DvtProvider
        from pymobiledevice3.services.dvt.instruments.process_control import ProcessControl
        from pymobiledevice3.services.dvt.instruments.sysmontap import Sysmontap
        from pymobiledevice3.services.house_arrest import HouseArrestService
        from pymobiledevice3.services.installation_proxy import InstallationProxyService
        from pymobiledevice3.services.mobile_image_mounter import MobileImageMounterService, image_type_for_device
        from pymobiledevice3.tunneld.api import get_tunneld_device_by_udid
        from pymobiledevice3.usbmux import list_devices
    except ImportError as exc:
        raise ImportError(f"pymobiledevice3 is not installed or too old ({exc}): {INSTALL_HINT}") from exc
    return Services(
        version=metadata.version("pymobiledevice3"), list_devices=list_devices, create_using_usbmux=create_using_usbmux,
        InstallationProxyService=InstallationProxyService, HouseArrestService=HouseArrestService,
        MobileImageMounterService=MobileImageMounterService, image_type_for_device=image_type_for_device,
        DvtProvider=DvtProvider, ProcessControl=ProcessControl, DeviceInfo=DeviceInfo, Sysmontap=Sysmontap,
        CrashReportsManager=CrashReportsManager, PreferredRsdTunnel=PreferredRsdTunnel,
        get_tunneld_device_by_udid=get_tunneld_device_by_udid,
    )


# --------------------------------------------------------------------------------------------------
# The loop


class _LoopThread:
    """One asyncio event loop in a daemon thread; coroutines are run on it with a timeout."""

    def __init__(self, name: str):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, Any], timeout_s: float) -> Any:
        fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return fut.result(timeout_s)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            raise TimeoutError(f"no answer within {timeout_s:g} s") from None

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> concurrent.futures.Future:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        if not self.thread.is_alive():
            self.loop.close()


def list_usb_udids(services: Services, timeout_s: float = 10.0) -> list[str]:
    """The UDIDs usbmuxd lists over USB (a phone also seen over Wi-Fi is listed once)."""
    loop = _LoopThread("splitbench-ios-discover")
    try:
        devices = loop.run(services.list_devices(), timeout_s)
    except BaseException as exc:  # noqa: BLE001 - translated
        raise translate("usbmuxd", exc) from exc
    finally:
        loop.stop()
    seen: list[str] = []
    for d in devices:
        if d.is_usb and d.serial not in seen:
            seen.append(d.serial)
    return seen


# --------------------------------------------------------------------------------------------------
# Crash reports


async def flush_crash_reports(reports: Any) -> None:
    """Ask the crash mover to move pending reports where ``reports`` lists them, through one connection
    that is closed again.

    This is ``CrashReportsManager.flush`` (services/crash_reports.py l.225-236) but for the connection:
    ``flush`` starts the ``crashreportmover`` service and never closes it (``aclose`` closes only the AFC
    client), so every call left a socket open.
    """
    from pymobiledevice3.exceptions import ProtocolError

    ack = b"ping\x00"
    service = await reports.lockdown.start_lockdown_service(reports.crash_mover_service_name)
    try:
        response = await service.recvall(len(ack))
    finally:
        await service.close()
    if response != ack:
        raise ProtocolError(f"The crash report mover sent an unexpected acknowledgement: {response!r}")


class CrashReports:
    """The phone's crash and jetsam reports during one job: one ``CrashReportsManager`` (an AFC client of
    ``com.apple.crashreportcopymobile``), flushed once when opened, listed and read through the same
    connection until :meth:`close`. Reports written after the flush are listed without another one:
    iOS writes them straight into that folder (``CrashReportsManager.watch`` reads new ones the same way,
    crash_reports.py l.238-275)."""

    def __init__(self, t: IosTransport, stack: contextlib.AsyncExitStack, reports: Any):
        self.t, self._stack, self.reports = t, stack, reports

    def names(self) -> set[str]:
        """The reports there now (top level of the CrashReports folder)."""
        return set(self.t._call(lambda: self.reports.ls("/", depth=1)))

    def read(self, names: list[str], max_bytes: int = 200_000) -> list[tuple[str, str]]:
        async def go():
            out = []
            for name in names:
                data = await self.reports.afc.get_file_contents(name)
                out.append((name, data[:max_bytes].decode(errors="replace")))
            return out

        return self.t._call(go)

    def close(self) -> None:
        """Close the connection; never raises (the phone may be gone)."""
        if self._stack is not None and self.t.is_open:
            with contextlib.suppress(BaseException):
                self.t._call(self._stack.aclose, timeout_s=15)
        self._stack = None


# --------------------------------------------------------------------------------------------------
# The session


class IosTransport:
    """A session with one iPhone: lockdown, its developer services, the agent app's container, launches.

    Open it in steps (``connect``, then ``open_developer`` and ``open_container``), so that a precondition
    check can tell which step fails; ``close`` undoes what was opened and never raises.
    """

    def __init__(self, udid: str, services: Services, *, tunnel: str = "auto", call_timeout_s: float = CALL_TIMEOUT_S):
        self.udid, self.services, self.tunnel, self.call_timeout_s = udid, services, tunnel, call_timeout_s
        self._loop: _LoopThread | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self.lockdown: Any = None
        self.values: dict[str, Any] = {}
        self.paired = False
        self.rsd: Any = None
        self.dvt: Any = None
        self.process_control: Any = None
        self.device_info: Any = None
        self.afc: Any = None
        self.container_mode: str | None = None  # "container" (VendContainer) or "documents" (VendDocuments)
        self._sysmon: concurrent.futures.Future | None = None
        self._sysmon_samples: list[int] = []

    # -- plumbing --------------------------------------------------------------------------------
    def _call(self, make: Callable[[], Coroutine[Any, Any, Any]], timeout_s: float | None = None) -> Any:
        if self._loop is None:
            self._loop = _LoopThread(f"splitbench-ios-{self.udid[:8]}")
        try:
            return self._loop.run(make(), self.call_timeout_s if timeout_s is None else timeout_s)
        except BaseException as exc:  # noqa: BLE001 - translated, or re-raised as is
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            new = translate(self.udid, exc)
            if new is exc:
                raise
            raise new from exc

    @property
    def is_open(self) -> bool:
        return self._loop is not None

    @property
    def product_version(self) -> str:
        return str(self.values.get("ProductVersion") or "0")

    @property
    def ios_major(self) -> int:
        try:
            return int(self.product_version.split(".")[0])
        except ValueError:
            return 0

    # -- steps -----------------------------------------------------------------------------------
    def connect(self) -> dict[str, Any]:
        """Lockdown over usbmux without pairing (pairing needs the user's Trust tap); its values."""
        async def go():
            self._stack = contextlib.AsyncExitStack()
            self.lockdown = await self.services.create_using_usbmux(serial=self.udid, autopair=False)
            self._stack.push_async_callback(self.lockdown.close)
            return dict(self.lockdown.all_values), bool(self.lockdown.paired)

        self.values, self.paired = self._call(go)
        return self.values

    def developer_mode(self) -> bool | None:
        """Developer Mode (iOS 16+); None below iOS 16, where it does not exist."""
        if self.ios_major < 16:
            return None
        return bool(self._call(lambda: self.lockdown.get_developer_mode_status()))

    def ddi_mounted(self) -> bool:
        async def go():
            image_type = self.services.image_type_for_device(self.lockdown)
            async with self.services.MobileImageMounterService(self.lockdown) as mounter:
                return await mounter.is_image_mounted(image_type)

        return bool(self._call(go))

    def app_info(self, bundle_id: str) -> dict[str, Any] | None:
        """installation_proxy's entry for the app (CFBundleShortVersionString, ...), None when not installed."""
        async def go():
            async with self.services.InstallationProxyService(self.lockdown) as proxy:
                return await proxy.get_apps(bundle_identifiers=[bundle_id])

        return (self._call(go) or {}).get(bundle_id)

    def install(self, package: Path) -> None:
        """Install a signed .ipa or .app (a directory is zipped on the fly by pymobiledevice3)."""
        async def go():
            async with self.services.InstallationProxyService(self.lockdown) as proxy:
                await proxy.install_from_local(Path(package))

        self._call(go, timeout_s=600)

    def open_developer(self) -> None:
        """The DVT instruments connection (over the RSD tunnel on iOS 17+): process control, device info."""
        async def go():
            assert self._stack is not None
            provider = self.lockdown
            if self.ios_major >= 17:
                provider = await self._open_tunnel()
                self.rsd = provider
            self.dvt = await self._stack.enter_async_context(self.services.DvtProvider(provider))
            self.process_control = await self._stack.enter_async_context(self.services.ProcessControl(self.dvt))
            self.device_info = await self._stack.enter_async_context(self.services.DeviceInfo(self.dvt))

        self._call(go, timeout_s=120)

    async def _open_tunnel(self) -> Any:
        from pymobiledevice3.exceptions import TunneldConnectionError

        assert self._stack is not None
        if self.tunnel in ("auto", "tunneld"):
            try:
                rsd = await self.services.get_tunneld_device_by_udid(self.udid)
            except TunneldConnectionError:
                rsd = None
                if self.tunnel == "tunneld":
                    raise TunnelUnavailable("tunneld is not running") from None
            except IndexError:
                # tunneld lists the phone, but none of its tunnels could be connected: get_tunneld_device_by_udid
                # returns rsds[0] (tunneld/api.py l.195) of what _create_rsds_from_tunnels connected, and that
                # skips a tunnel that fails to connect (l.240-244).
                raise TunnelLost(self.udid, "tunneld lists this iPhone but its tunnel could not be connected "
                                            "(tunneld has a tunnel that no longer answers)") from None
            if rsd is not None:
                self._stack.push_async_callback(rsd.close)
                return rsd
            if self.tunnel == "tunneld":
                raise TunnelUnavailable("tunneld runs but has no tunnel to this iPhone")
        try:
            return await self._stack.enter_async_context(self.services.PreferredRsdTunnel(serial=self.udid,
                                                                                        autopair=False))
        except Exception as exc:  # noqa: BLE001 - sorted below
            new = translate(self.udid, exc)
            if new is not exc:
                raise new from exc
            # e.g. "A userspace tunnel is already active in this process" (one per process,
            # remote/userspace_tunnel.py l.755-761): a second iPhone on iOS 17+ needs tunneld.
            said = exc.args[0] if exc.args else exc  # str() of a bare pymobiledevice3 error adds "please report"
            raise TunnelUnavailable(f"{type(exc).__name__}: {said} (several iPhones on iOS 17+ in one run need "
                                    "`sudo pymobiledevice3 remote tunneld` and [ios] tunnel = 'tunneld')") from exc

    def open_container(self, bundle_id: str) -> str:
        """The app's container over house arrest: the whole sandbox (development-signed apps), else Documents."""
        from pymobiledevice3.exceptions import AppNotInstalledError, PyMobileDevice3Exception

        async def go():
            assert self._stack is not None
            try:
                afc = await self.services.HouseArrestService.create(self.lockdown, bundle_id, documents_only=False)
                mode = "container"
            except AppNotInstalledError:
                raise
            except PyMobileDevice3Exception:
                # VendContainer is refused to apps not signed for development; VendDocuments works for
                # apps that set UIFileSharingEnabled (the agent app does).
                afc = await self.services.HouseArrestService.create(self.lockdown, bundle_id, documents_only=True)
                mode = "documents"
            self.afc = await self._stack.enter_async_context(afc)
            return mode

        self.container_mode = self._call(go)
        return self.container_mode

    # -- files in the container ------------------------------------------------------------------
    def exists(self, path: str) -> bool:
        return bool(self._call(lambda: self.afc.exists(path)))

    def read(self, path: str) -> bytes:
        return self._call(lambda: self.afc.get_file_contents(path))

    def write(self, path: str, data: bytes) -> None:
        self._call(lambda: self.afc.set_file_contents(path, data))

    def makedirs(self, path: str) -> None:
        async def go():
            if not await self.afc.exists(path):  # as pymobiledevice3's own push does (afc.py l.568-569)
                await self.afc.makedirs(path)

        self._call(go)

    def remove(self, path: str) -> None:
        """Remove a file or a directory tree; nothing when it is not there."""
        async def go():
            if await self.afc.exists(path):
                await self.afc.rm(path, force=True)

        self._call(go)

    def listdir(self, path: str) -> list[str]:
        async def go():
            return await self.afc.listdir(path) if await self.afc.exists(path) else []

        return self._call(go)

    def push(self, local: Path, remote_parent: str, size_b: int) -> None:
        """Copy a local file or directory into ``remote_parent`` (as ``remote_parent/<name>``)."""
        timeout = self.call_timeout_s + size_b / 5e6  # USB 2 moves well over 5 MB/s
        self._call(lambda: self.afc.push(str(local), remote_parent, progress_bar=False), timeout_s=timeout)

    def free_bytes(self) -> int | None:
        """Free bytes of the phone's data volume, as AFC reports it (None when it does not)."""
        info = self._call(lambda: self.afc.get_device_info()) or {}
        try:
            return int(info["FSFreeBytes"])
        except (KeyError, TypeError, ValueError):
            return None

    # -- processes -------------------------------------------------------------------------------
    def launch(self, bundle_id: str, arguments: list[str]) -> int:
        """Launch the app in a fresh process (an instance already running is killed first); its pid.

        :class:`LaunchRefused` when iOS does not start it (``untrusted`` comes from ``translate``),
        :class:`AppNotInstalled` or :class:`DeviceLocked` when SpringBoard says so."""
        try:
            pid = self._call(lambda: self.process_control.launch(bundle_id, arguments=arguments, kill_existing=True,
                                                                start_suspended=False, environment={}))
        except AssertionError:
            # ProcessControl.launch (process_control.py l.225): `assert result` on the pid the phone sent.
            pid = 0
        except DvtError as exc:
            raise LaunchRefused("dvt", f"iOS refused to launch the app: {exc}") from exc
        if not pid:
            raise LaunchRefused("no process", "DVT process control launched no process (the iPhone answered pid 0 "
                                              "to the launch request)")
        return int(pid)

    def is_running(self, pid: int) -> bool:
        return bool(self._call(lambda: self.device_info.is_running_pid(pid)))

    def kill(self, pid: int) -> None:
        self._call(lambda: self.process_control.kill(pid))

    # -- what the system logged ------------------------------------------------------------------
    def open_crash_reports(self) -> CrashReports:
        """One connection to the phone's crash reports, flushed once (see :class:`CrashReports`)."""
        async def go():
            stack = contextlib.AsyncExitStack()
            try:
                reports = await stack.enter_async_context(self.services.CrashReportsManager(self.lockdown))
                await flush_crash_reports(reports)
            except BaseException:
                await stack.aclose()
                raise
            return stack, reports

        stack, reports = self._call(go)
        return CrashReports(self, stack, reports)

    # -- memory seen from the host (optional) ----------------------------------------------------
    def sysmon_start(self, pid: int, interval_ms: int = 100) -> None:
        """Sample the app's physFootprint from the host (DVT sysmontap) until ``sysmon_stop``."""
        self._sysmon_samples = []

        async def go():
            sysmon = await self.services.Sysmontap.create(self.dvt, interval=interval_ms)
            async with sysmon:
                async for processes in sysmon.iter_processes():
                    for p in processes:
                        if p.get("pid") == pid and isinstance(p.get("physFootprint"), int):
                            self._sysmon_samples.append(p["physFootprint"])

        assert self._loop is not None
        self._sysmon = self._loop.spawn(go())

    def sysmon_stop(self) -> list[int]:
        if self._sysmon is not None:
            self._sysmon.cancel()
            with contextlib.suppress(BaseException):
                self._sysmon.result(timeout=5)
            self._sysmon = None
        return list(self._sysmon_samples)

    # -- end -------------------------------------------------------------------------------------
    def close(self) -> None:
        """Close every service opened, then the loop. Never raises (the phone may be gone already)."""
        if self._loop is None:
            return
        self.sysmon_stop()
        if self._stack is not None:
            with contextlib.suppress(BaseException):
                self._loop.run(self._stack.aclose(), 15)
            self._stack = None
        self._loop.stop()
        self._loop = None
