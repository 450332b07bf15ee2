"""The pymobiledevice3 services of the loopback iPhone (``tests/loopback_ios.py``): lockdown, the RSD and its
tunnel, AFC (house arrest, the crash reports), installation_proxy, the image mounter, DVT. Each keeps the
names, call signatures (``tests/test_ios_standin.py`` compares them with the installed pymobiledevice3),
reply shapes and exceptions of pymobiledevice3 11.45.0, file and line cited per class; what they act on
is a :class:`~tests.loopback_ios.LoopbackPhone`. Their own wiring is underscored (``_phone``), so every
public name is one the real class has.
"""

from __future__ import annotations

import asyncio
import plistlib
import posixpath
import shutil
import signal
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from pymobiledevice3 import exceptions as pmd3
from pymobiledevice3.services.afc import AfcError

if TYPE_CHECKING:
    from tests.loopback_ios import LoopbackPhone

EXECUTABLE = "SplitbenchAgent"  # the agent app's CFBundleExecutable


class _Service:
    """A service used as ``async with`` that has nothing to open or close (pymobiledevice3's services take
    ``__aexit__(exc_type, exc_val, exc_tb)``)."""

    async def __aenter__(self):
        return self

    async def __aexit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        pass


# --------------------------------------------------------------------------------------------------
# usbmux and lockdown


class LoopbackLockdown:
    """What ``create_using_usbmux`` returns (a ``UsbmuxLockdownClient``, lockdown.py l.1040): ``all_values``,
    ``paired``, ``product_version``, ``get_value``, ``get_developer_mode_status``, ``close``."""

    def __init__(self, phone: LoopbackPhone, paired: bool):
        self._phone, self.paired = phone, paired
        values = phone.values
        if not paired:  # before a session lockdownd answers only a few values
            values = {k: values[k] for k in ("UniqueDeviceID", "ProductType", "ProductVersion", "BuildVersion",
                                             "DeviceClass", "DeviceName")}
        self.all_values = values
        self.udid = self.identifier = phone.udid
        self.product_type = values["ProductType"]

    @property
    def product_version(self) -> str:
        return self.all_values.get("ProductVersion") or "1.0"

    async def get_value(self, domain: Optional[str] = None, key: Optional[str] = None) -> Any:
        self._phone.require_attached()
        if domain == "com.apple.security.mac.amfi" and key == "DeveloperModeStatus":
            return self._phone.knobs.developer_mode
        if domain is None and key is None:
            return dict(self.all_values)
        if domain is None and key in self.all_values:
            return self.all_values[key]
        raise pmd3.MissingValueError("No such value.", self.udid, self.product_version, error="MissingValue")

    async def get_developer_mode_status(self) -> bool:
        """lockdown_service_provider.py l.169: the amfi domain's DeveloperModeStatus."""
        return bool(await self.get_value(domain="com.apple.security.mac.amfi", key="DeveloperModeStatus"))

    async def start_lockdown_service(self, name: str, include_escrow_bag: bool = False) -> LoopbackServiceConnection:
        """lockdown.py l.747 (and remote_service_discovery.py l.327): start a service and connect to it. Only
        the crash mover is offered here: it moves pending reports and says ``ping\\0`` (crash_reports.py
        l.225-236)."""
        self._phone.require_attached()
        if name not in (LoopbackCrashReports.CRASH_MOVER_NAME, LoopbackCrashReports.RSD_CRASH_MOVER_NAME):
            raise pmd3.StartServiceError(name, "InvalidService")
        return LoopbackServiceConnection(self._phone, name, b"ping\x00")

    async def close(self) -> None:
        pass

    async def __aenter__(self):
        return self

    async def __aexit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        await self.close()


class LoopbackRsd(LoopbackLockdown):
    """A ``RemoteServiceDiscoveryService`` over a tunnel (remote/remote_service_discovery.py l.86): the
    lockdown methods, its values in ``all_values`` (l.251); it has no ``paired`` of its own."""

    def __init__(self, phone: LoopbackPhone):
        self._phone = phone
        self.all_values = phone.values
        self.udid = phone.udid
        self.product_type = self.all_values["ProductType"]


class LoopbackServiceConnection:
    """A ``ServiceConnection`` to a started service (service_connection.py): ``recvall``, ``close``,
    ``aclose``; counted in the phone's ``opened`` and ``closed`` by service name."""

    def __init__(self, phone: LoopbackPhone, name: str, answer: bytes):
        self._phone, self._name, self._answer, self._closed = phone, name, answer, False
        phone.opened[name] += 1

    async def recvall(self, size: int) -> bytes:
        self._phone.require_attached()
        data, self._answer = self._answer[:size], self._answer[size:]
        if len(data) < size:
            raise pmd3.ConnectionTerminatedError()
        return data

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._phone.closed[self._name] += 1

    async def aclose(self) -> None:
        await self.close()


class LoopbackRsdTunnel:
    """``PreferredRsdTunnel(serial, autopair, prefer_native)`` (remote/rsd_tunnel.py l.28-104): an async
    context manager yielding the RSD; ``UserspaceTunnelUnavailableError`` when it cannot serve the phone,
    and, like the userspace tunnel, one per process (remote/userspace_tunnel.py l.755-761)."""

    _active: Optional["LoopbackRsdTunnel"] = None  # the process's one userspace tunnel

    def __init__(self, phones: dict[str, LoopbackPhone], serial: Optional[str] = None, autopair: bool = True,
                 prefer_native: bool = False):
        self._phones, self._serial = phones, serial

    async def aopen(self) -> LoopbackRsd:
        phone = self._phones[self._serial] if self._serial in self._phones else next(iter(self._phones.values()))
        phone.require_attached()
        if not phone.knobs.tunnel:
            raise pmd3.UserspaceTunnelUnavailableError()
        if LoopbackRsdTunnel._active is not None:
            raise pmd3.PyMobileDevice3Exception("A userspace tunnel is already active in this process; only one "
                                                "userspace tunnel per process is supported.")
        LoopbackRsdTunnel._active = self
        return LoopbackRsd(phone)

    async def aclose(self) -> None:
        if LoopbackRsdTunnel._active is self:
            LoopbackRsdTunnel._active = None

    async def __aenter__(self) -> LoopbackRsd:
        return await self.aopen()

    async def __aexit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        await self.aclose()


# --------------------------------------------------------------------------------------------------
# AFC: house arrest and the crash reports


class LoopbackAfc:
    """An AFC client over a directory (services/afc.py): the methods the agent calls, with AFC's path
    semantics (push of a directory lands in ``remote/<basename>``, l.586-611) and its exceptions."""

    def __init__(self, phone: LoopbackPhone, root: Path, count_space: bool = True,
                 service_name: str = "com.apple.mobile.house_arrest"):
        self._phone, self._root, self._count_space = phone, Path(root), count_space
        self._service_name, self._open, self._closed = service_name, False, False

    def _p(self, path: str) -> Path:
        rel = posixpath.normpath("/" + str(path)).lstrip("/")
        return self._root / rel if rel not in ("", ".") else self._root

    def _check(self) -> None:
        self._phone.require_attached()
        if not self._open:  # like AfcService (a LockdownService), the connection opens on first use
            self._open = True
            self._phone.opened[self._service_name] += 1

    def _missing(self, path: str) -> pmd3.AfcFileNotFoundError:
        return pmd3.AfcFileNotFoundError(f"No such file on the device: {path}", AfcError.READ_ERROR, path)

    def _account(self, n: int, path: str) -> None:
        if not self._count_space:
            return
        if self._phone.used_bytes + n > self._phone.knobs.free_bytes:
            raise pmd3.AfcException(f"Opcode: WRITE failed with status: {AfcError.NO_SPACE_LEFT!r} for file: {path}",
                                    AfcError.NO_SPACE_LEFT, path)
        self._phone.used_bytes += n

    async def exists(self, filename: str) -> bool:
        self._check()
        return self._p(filename).exists()

    async def listdir(self, filename: str) -> list[str]:
        self._check()
        p = self._p(filename)
        if not p.is_dir():
            raise self._missing(filename)
        return sorted(x.name for x in p.iterdir())

    async def makedirs(self, filename: str) -> bytes:
        self._check()
        self._p(filename).mkdir(parents=True, exist_ok=True)
        return b""

    async def rm(self, filename: str, match: Any = None, force: bool = False) -> list[str]:
        self._check()
        p = self._p(filename)
        if not p.exists():
            if force:
                return [filename]
            raise self._missing(filename)
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink()
        return []

    async def get_file_contents(self, filename: str) -> bytes:
        self._check()
        p = self._p(filename)
        if not p.is_file():
            raise self._missing(filename)
        return p.read_bytes()

    async def set_file_contents(self, filename: str, data: bytes, progress: Any = None) -> None:
        self._check()
        self._account(len(data), filename)
        self._p(filename).write_bytes(data)

    async def push(self, local_path: str, remote_path: str, callback: Any = None, progress_bar: bool = True) -> None:
        self._check()
        self._phone.pushes += 1
        src = Path(local_path)
        if src.is_dir():
            dst = self._p(posixpath.join(remote_path, src.name))
            for f in sorted(src.rglob("*")):
                target = dst / f.relative_to(src)
                if f.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                else:
                    self._check()
                    self._account(f.stat().st_size, str(target))
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(f, target)
        else:
            dst = self._p(remote_path)
            if dst.is_dir():
                dst = dst / src.name
            self._account(src.stat().st_size, remote_path)
            shutil.copyfile(src, dst)

    async def get_device_info(self) -> dict[str, str]:
        """GET_DEVINFO (afc.py l.695): string values, as the device sends them."""
        self._check()
        free = max(0, self._phone.knobs.free_bytes - self._phone.used_bytes)
        return {"Model": "Loopback1,1", "FSTotalBytes": str(64 * 10**9), "FSFreeBytes": str(free), "FSBlockSize": "4096"}

    async def aclose(self) -> None:
        if self._open and not self._closed:
            self._closed = True
            self._phone.closed[self._service_name] += 1

    async def __aenter__(self):
        return self

    async def __aexit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        await self.aclose()


class LoopbackHouseArrest:
    """``HouseArrestService.create(lockdown, bundle_id, documents_only=False)`` (services/house_arrest.py l.40-83):
    ``AppNotInstalledError`` for an unknown bundle, a plain ``PyMobileDevice3Exception`` for any other vend
    error (VendContainer refused to an app not signed for development)."""

    @classmethod
    async def create(cls, lockdown: LoopbackLockdown, bundle_id: str, documents_only: bool = False) -> LoopbackAfc:
        phone = lockdown._phone
        phone.require_attached()
        if bundle_id not in phone.apps:
            raise pmd3.AppNotInstalledError(f"No app with bundle ID {bundle_id} is installed.")
        if not documents_only and not phone.knobs.app_development_signed:
            raise pmd3.PyMobileDevice3Exception(
                f"The device refused to open the container of {bundle_id}: InstallationLookupFailed")
        return LoopbackAfc(phone, phone.container(bundle_id))


class LoopbackCrashReports:
    """``CrashReportsManager(lockdown)`` (services/crash_reports.py l.37-236): an AFC client of the
    crash-report copier (``afc``, opened on first use, closed by ``aclose``), ``ls``, and ``flush``, which
    starts the crash mover through ``lockdown.start_lockdown_service(crash_mover_service_name)``, reads its
    ping and, like the real one, never closes that connection."""

    COPY_MOBILE_NAME = "com.apple.crashreportcopymobile"
    RSD_COPY_MOBILE_NAME = "com.apple.crashreportcopymobile.shim.remote"
    CRASH_MOVER_NAME = "com.apple.crashreportmover"
    RSD_CRASH_MOVER_NAME = "com.apple.crashreportmover.shim.remote"

    def __init__(self, lockdown: LoopbackLockdown) -> None:
        self.lockdown = lockdown
        over_rsd = isinstance(lockdown, LoopbackRsd)
        self.copy_mobile_service_name = self.RSD_COPY_MOBILE_NAME if over_rsd else self.COPY_MOBILE_NAME
        self.crash_mover_service_name = self.RSD_CRASH_MOVER_NAME if over_rsd else self.CRASH_MOVER_NAME
        phone = lockdown._phone
        self.afc = LoopbackAfc(phone, phone.crash_dir, count_space=False, service_name=self.copy_mobile_service_name)

    async def __aenter__(self):
        return self

    async def __aexit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.afc.aclose()

    async def flush(self) -> None:
        ack = b"ping\x00"
        service = await self.lockdown.start_lockdown_service(self.crash_mover_service_name)
        response = await service.recvall(len(ack))
        if response != ack:
            raise pmd3.ProtocolError(f"The crash report mover sent an unexpected acknowledgement: {response!r}")

    async def ls(self, path: str = "/", depth: int = 1) -> list[str]:
        return [posixpath.join(path, n) for n in await self.afc.listdir(path)]


# --------------------------------------------------------------------------------------------------
# installation_proxy and the image mounter


class LoopbackInstallationProxy(_Service):
    """``InstallationProxyService(lockdown)`` (services/installation_proxy.py): ``get_apps`` (l.501) returns
    {bundle id: Info.plist-like dict}; ``install_from_local`` (l.261) takes an .ipa or an .app directory and,
    like installd, refuses a package with no provisioning profile (ApplicationVerificationFailed)."""

    def __init__(self, lockdown: LoopbackLockdown, service_name: Optional[str] = None,
                 is_developer_service: bool = False, service: Any = None, include_escrow_bag: bool = False) -> None:
        self._phone = lockdown._phone

    async def get_apps(self, application_type: str = "Any", calculate_sizes: bool = False,
                       bundle_identifiers: Optional[list[str]] = None,
                       show_placeholders: bool = False) -> dict[str, dict[str, Any]]:
        self._phone.require_attached()
        return {b: dict(i) for b, i in self._phone.apps.items() if bundle_identifiers is None or b in bundle_identifiers}

    async def install_from_local(self, package_path: Path, cmd: str = "Install", options: Any = None,
                                 handler: Any = None, developer: bool = False, *args: Any) -> None:
        self._phone.require_attached()
        package_path = Path(package_path)
        if package_path.is_dir():
            names = {p.name for p in package_path.iterdir()}
            info = plistlib.loads((package_path / "Info.plist").read_bytes())
        else:
            with zipfile.ZipFile(package_path) as z:
                app = next(n.split("/")[1] for n in z.namelist() if n.startswith("Payload/") and n.count("/") >= 2)
                names = {n.split("/")[2] for n in z.namelist() if n.startswith(f"Payload/{app}/") and n.count("/") >= 2}
                info = plistlib.loads(z.read(f"Payload/{app}/Info.plist"))
        if "embedded.mobileprovision" not in names:
            raise pmd3.AppInstallError("ApplicationVerificationFailed: Failed to verify code signature of "
                                       f"{package_path.name} : 0xe8008015 (A valid provisioning profile for this "
                                       "executable was not found.)")
        self._phone.install_info(info)


class LoopbackImageMounter(_Service):
    """``MobileImageMounterService(lockdown).is_image_mounted(image_type)`` (services/mobile_image_mounter.py l.133)."""

    def __init__(self, lockdown: LoopbackLockdown):
        self._phone = lockdown._phone

    async def is_image_mounted(self, image_type: str) -> bool:
        self._phone.require_attached()
        return self._phone.knobs.ddi_mounted


def image_type_for_device(lockdown: LoopbackLockdown) -> str:
    """services/mobile_image_mounter.py l.724: Personalized from iOS 17, Developer before."""
    return "Personalized" if int(lockdown.product_version.split(".")[0]) >= 17 else "Developer"


# --------------------------------------------------------------------------------------------------
# DVT


class LoopbackDvtProvider(_Service):
    """``DvtProvider(lockdown_or_rsd, strip_ssl=None, dtx=None)`` (services/dvt/instruments/dvt_provider.py
    l.37): lockdownd refuses the instruments service (``InvalidServiceError``, lockdown.py l.928-949) without
    Developer Mode and the developer disk image, and on iOS 17+ when asked over plain lockdown."""

    def __init__(self, lockdown: LoopbackLockdown, strip_ssl: Optional[bool] = None, dtx: Any = None):
        self._lockdown, self._phone = lockdown, lockdown._phone

    async def __aenter__(self):
        phone = self._phone
        phone.require_attached()
        over_lockdown = not isinstance(self._lockdown, LoopbackRsd)
        if (over_lockdown and int(phone.ios.split(".")[0]) >= 17) or not (phone.knobs.ddi_mounted
                                                                           and phone.knobs.developer_mode):
            raise pmd3.InvalidServiceError("The device does not offer the requested service.", phone.udid, phone.ios,
                                           error="InvalidService")
        return self

    async def __aexit__(self, *_: Any) -> None:  # DvtProvider.__aexit__(self, *_)
        pass


class LoopbackProcessControl(_Service):
    """``ProcessControl(dvt)`` (services/dvt/instruments/process_control.py l.102-231): ``launch`` (l.188),
    ``kill`` (l.138, SIGKILL through sendSignal:toPid:), ``signal``."""

    def __init__(self, provider: LoopbackDvtProvider, service: Any = None):
        self._phone = provider._phone

    async def launch(self, bundle_id: str, arguments: Optional[list[str]] = None, kill_existing: bool = True,
                     start_suspended: bool = False, environment: Optional[dict[str, Any]] = None,
                     extra_options: Optional[dict[str, Any]] = None) -> int:
        self._phone.require_attached()
        result = self._phone.launch(bundle_id, list(arguments or []), kill_existing)
        assert result  # as ProcessControl.launch does (process_control.py l.225)
        return result

    async def signal(self, pid: int, sig: int) -> None:
        self._phone.require_attached()
        p = self._phone.processes.get(pid)
        if p is not None and p.poll() is None:
            p.send_signal(sig)

    async def kill(self, pid: int) -> None:
        await self.signal(pid, signal.SIGKILL)
        p = self._phone.processes.get(pid)
        if p is not None:
            p.wait()


class LoopbackDeviceInfo(_Service):
    """``DeviceInfo(dvt)`` (services/dvt/instruments/device_info.py l.65-130): ``is_running_pid``."""

    def __init__(self, provider: LoopbackDvtProvider, service: Any = None):
        self._phone = provider._phone

    async def is_running_pid(self, pid: int) -> bool:
        self._phone.require_attached()
        p = self._phone.processes.get(pid)
        return p is not None and p.poll() is None


class LoopbackSysmontap(_Service):
    """``Sysmontap.create(dvt, interval)`` and ``iter_processes()`` (services/dvt/instruments/sysmontap.py
    l.56-93): per sample, one dict per process with ``pid``, ``name`` and ``physFootprint``. Here the value is
    the stand-in's resident set size from /proc (this host has no phys_footprint)."""

    def __init__(self, phone: LoopbackPhone, interval_ms: int):
        self._phone, self._interval_ms = phone, interval_ms

    @classmethod
    async def create(cls, dvt: LoopbackDvtProvider, interval: int = 500) -> "LoopbackSysmontap":
        return cls(dvt._phone, interval)

    async def iter_processes(self):
        while True:
            self._phone.require_attached()
            rows = []
            for pid, p in list(self._phone.processes.items()):
                if p.poll() is None:
                    try:
                        status = Path(f"/proc/{pid}/status").read_text()
                    except OSError:
                        continue
                    rss = next((int(line.split()[1]) * 1024 for line in status.splitlines()
                                if line.startswith("VmRSS:")), None)
                    rows.append({"pid": pid, "name": EXECUTABLE, "physFootprint": rss})
            yield rows
            await asyncio.sleep(self._interval_ms / 1000)
