"""The adb transport: one connection to a phone over USB or TCP, through the pure-Python ``adb-shell``.

What this layer adds to the library (``../shared/research/adb_ci_scaleout.md`` part A, android.md §6):

- exit codes: ``adb-shell`` speaks the legacy ``shell:`` service, which returns merged output and no
  status, so :meth:`AdbLink.shell` appends ``printf '\\n<marker>%d\\n' "$?"`` and splits it off;
- timeouts: a command that prints nothing trips the read timeout (``TcpTimeoutException`` from
  ``select``) just as a dead link does; after a timeout the link is probed on a fresh connection: if
  the phone answers, the command itself was silent (:class:`ShellTimeout`), else the phone is gone;
- a dropped link: a peer that closed the socket makes ``adb-shell`` spin on ``recv() == b''`` until
  its read timeout (A.8); the TCP transport here raises at once instead (and sets TCP_NODELAY, as each
  message is written in two parts). Every exception that means
  the link is gone (socket, USB, adb protocol errors) becomes :class:`DeviceUnavailable`, and the
  connection is closed and opened again before the next command (``AdbDevice.available`` stays True
  after such errors);
- keys: ``~/.android/adbkey`` when it exists (the phone already trusts it when ``adb`` was used),
  else one generated once and kept in splitbench's config directory;
- USB held by the ``adb`` server: one line that says what to do.

The agent above never knows whether the phone is on USB or TCP.
"""

from __future__ import annotations

import functools
import io
import os
import re
import socket
import stat as stat_mod
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Iterator, NamedTuple

from device_agents.base import AgentError, DeviceUnavailable

INSTALL_HINT = "pip install 'splitbench[android]'"
DEFAULT_TCP_PORT = 5555
TCP_DEVICES_ENV = "SPLITBENCH_ANDROID_TCP"  # "host:port,host:port": phones reachable over TCP, for discovery
KEY_ENV = "SPLITBENCH_ADB_KEY"  # a private key file to use instead of ~/.android/adbkey
_RC_MARK = "__SPLITBENCH_RC__="
AUTH_TIMEOUT_S = 60.0  # time for a person to tap "Allow" on the phone
PROBE_TIMEOUT_S = 5.0


class ShellTimeout(Exception):
    """A command printed nothing for ``timeout_s`` while the phone itself still answers."""


class RemoteError(Exception):
    """The phone refused a file operation (a missing file, a failed push); the message is the phone's."""


class DeviceFull(RemoteError):
    """The phone's storage is full."""


class ShellResult(NamedTuple):
    output: str
    exit_code: int


def tell_user(line: str) -> None:
    """One line for the person at the computer while a call waits on them (a prompt on the phone)."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


# --------------------------------------------------------------------------------------------------
# Addresses


@dataclass(frozen=True)
class Address:
    """Where a phone is: ``usb`` (``serial`` None: the only one attached) or ``tcp`` (``host``, ``port``)."""

    kind: str
    serial: str | None = None
    host: str | None = None
    port: int | None = None

    def __str__(self) -> str:
        if self.kind == "tcp":
            return f"{self.host}:{self.port}"
        return f"usb:{self.serial}" if self.serial else "usb"

    @property
    def target(self) -> str:
        """The target name that reaches this phone."""
        return f"android:{self.host}:{self.port}" if self.kind == "tcp" else f"android:{self.serial}"


_HOST_PORT = re.compile(r"^(?P<host>[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:]+\]):(?P<port>\d{1,5})$")


def parse_target(target: str) -> Address | None:
    """``android`` -> None (the only phone attached); ``android:<serial>`` -> USB;
    ``android:<host>:<port>`` -> TCP. Raises :class:`AgentError` for anything else."""
    head, _, rest = target.partition(":")
    if head != "android":
        raise AgentError(f"not an Android target: {target!r}")
    if not rest:
        return None
    m = _HOST_PORT.match(rest)
    if m:
        port = int(m["port"])
        if not 0 < port < 65536:
            raise AgentError(f"{target!r}: port {port} is out of range")
        return Address("tcp", host=m["host"].strip("[]"), port=port)
    if not re.fullmatch(r"[A-Za-z0-9._\-]+", rest):
        raise AgentError(f"{target!r}: a serial is letters, digits, '.', '_' and '-'; for a phone over TCP "
                         "use android:<host>:<port> (after `adb tcpip 5555`)")
    return Address("usb", serial=rest)


def tcp_addresses_from_env() -> list[Address]:
    """The phones listed in ``SPLITBENCH_ANDROID_TCP`` (``host:port,host:port``)."""
    out = []
    for item in filter(None, (x.strip() for x in os.environ.get(TCP_DEVICES_ENV, "").split(","))):
        m = _HOST_PORT.match(item if ":" in item else f"{item}:{DEFAULT_TCP_PORT}")
        if not m:
            raise AgentError(f"{TCP_DEVICES_ENV}: {item!r} is not host:port")
        out.append(Address("tcp", host=m["host"].strip("[]"), port=int(m["port"])))
    return out


# --------------------------------------------------------------------------------------------------
# The optional library


def adb_shell_modules() -> Any:
    """``adb_shell`` and its pieces, or :class:`AgentError` with the install hint."""
    try:
        import adb_shell.adb_device as adb_device
        import adb_shell.exceptions as exceptions
        from adb_shell.auth import keygen
        from adb_shell.transport.tcp_transport import TcpTransport
    except ImportError as exc:
        raise AgentError(f"Android needs the adb-shell library ({exc}): {INSTALL_HINT}") from None
    return SimpleNamespace(adb_device=adb_device, exceptions=exceptions, keygen=keygen, TcpTransport=TcpTransport)


def usb_module() -> Any:
    """``usb1`` (libusb1), or :class:`AgentError` with the install hint."""
    try:
        import usb1
    except (ImportError, OSError) as exc:
        raise AgentError(f"USB needs libusb1 ({exc}): {INSTALL_HINT}, and the libusb-1.0 system library") from None
    return usb1


@functools.cache
def _eof_aware_tcp(base: type) -> type:
    """A TcpTransport whose read raises when the phone closed the socket (the library would spin on
    ``recv() == b''`` until its read timeout, A.8)."""

    class EofAwareTcpTransport(base):
        def connect(self, transport_timeout_s):
            super().connect(transport_timeout_s)
            # adb_shell writes a message's header and payload separately: without TCP_NODELAY, Nagle's
            # algorithm holds the payload until the header is acknowledged (a delayed ACK: ~40 ms a message).
            self._connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def bulk_read(self, numbytes, transport_timeout_s):
            if self._connection is None:
                raise ConnectionAbortedError("the connection to the phone is closed")
            data = super().bulk_read(numbytes, transport_timeout_s)
            if not data:
                raise ConnectionAbortedError("the phone closed the connection")
            return data

        def bulk_write(self, data, transport_timeout_s):
            if self._connection is None:
                raise ConnectionAbortedError("the connection to the phone is closed")
            return super().bulk_write(data, transport_timeout_s)

    return EofAwareTcpTransport


# --------------------------------------------------------------------------------------------------
# Keys


def key_path() -> tuple[Path, bool]:
    """The private key to sign with, and whether it is adb's own (``~/.android/adbkey``)."""
    if os.environ.get(KEY_ENV):
        return Path(os.environ[KEY_ENV]).expanduser(), False
    adb_key = Path.home() / ".android" / "adbkey"
    if adb_key.is_file():
        return adb_key, True
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "splitbench" / "adbkey", False


class _Signer:
    """Signs the phone's auth token (PKCS#1 v1.5 over the 20-byte token as a SHA-1 digest, as adb
    does) and gives the public key in Android's format, from a PEM private key."""

    def __init__(self, path: Path, keygen: Any):
        from cryptography.hazmat.primitives import serialization

        self._key = serialization.load_pem_private_key(path.read_bytes(), None)
        import base64

        self._public = base64.b64encode(keygen.encode_pubkey(str(path))) + keygen.get_user_info().encode()

    def Sign(self, data: bytes) -> bytes:  # noqa: N802 - adb_shell's signer interface
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding, utils

        return self._key.sign(data, padding.PKCS1v15(), utils.Prehashed(hashes.SHA1()))

    def GetPublicKey(self) -> bytes:  # noqa: N802
        return self._public


def load_signer(notify: Callable[[str], None] = tell_user) -> Any:
    """The signer for this computer's adb key, generating (and keeping) one on first use."""
    m = adb_shell_modules()
    path, _ = key_path()
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        m.keygen.keygen(str(path))
        os.chmod(path, 0o600)
        notify(f"splitbench: created an adb key in {path}; the phone will ask to allow USB debugging from this "
               "computer: accept the prompt on the phone")
    return _Signer(path, m.keygen)


# --------------------------------------------------------------------------------------------------
# The link


class AdbLink:
    """One adb connection to one phone, reopened after any error; every method maps a lost link to
    :class:`DeviceUnavailable` naming ``device_id``."""

    def __init__(self, address: Address, *, link_timeout_s: float = 15.0,
                 notify: Callable[[str], None] = tell_user):
        self.address = address
        self.device_id = address.serial or str(address)
        self.link_timeout_s = float(link_timeout_s)
        self.notify = notify
        self._device: Any = None
        self._lock = threading.RLock()
        self._m = adb_shell_modules()

    # -- connection --------------------------------------------------------------------------------
    def connect(self, timeout_s: float | None = None) -> None:
        """Open the connection (closing an old one). :class:`AgentError` for what the user must fix
        (USB held by the adb server, no permission, key refused), :class:`DeviceUnavailable` when the
        phone cannot be reached."""
        timeout_s = self.link_timeout_s if timeout_s is None else timeout_s
        with self._lock:
            self._close_device()
            signer = load_signer(self.notify)
            device = self._new_device(timeout_s)

            prompted = []

            def prompt(_io_manager: Any) -> None:
                prompted.append(True)
                self.notify(f"splitbench: the phone {self.address} asks to allow USB debugging from this computer: "
                            f"accept the prompt on the phone (waiting {auth_timeout_s:.0f} s)")

            auth_timeout_s = AUTH_TIMEOUT_S
            try:
                device.connect(rsa_keys=[signer], transport_timeout_s=timeout_s, read_timeout_s=timeout_s,
                               auth_timeout_s=auth_timeout_s, auth_callback=prompt)
            except self._m.exceptions.DeviceAuthError as exc:
                raise AgentError(f"the phone {self.address} refused this computer's adb key ({exc}): unlock it and "
                                 "accept the USB debugging prompt, or revoke and re-allow the authorisations") from None
            except Exception as exc:  # noqa: BLE001 - classified below
                device.close()
                self._raise_usb_hint(exc)
                if prompted and self._is_timeout(exc):
                    raise AgentError(f"the phone {self.address} did not allow this computer within {auth_timeout_s:.0f} s: "
                                     "unlock it, accept the USB debugging prompt (tick 'Always allow'), and run again"
                                     ) from None
                raise self._gone(exc, "cannot connect") from None
            self._device = device

    def _new_device(self, timeout_s: float) -> Any:
        m = self._m
        if self.address.kind == "tcp":
            transport = _eof_aware_tcp(m.TcpTransport)(self.address.host, self.address.port)
            return m.adb_device.AdbDevice(transport, default_transport_timeout_s=timeout_s)
        usb_module()
        try:
            return m.adb_device.AdbDeviceUsb(serial=self.address.serial, default_transport_timeout_s=timeout_s)
        except m.exceptions.UsbDeviceNotFoundError:
            raise DeviceUnavailable(self.device_id, "no such phone on USB (unplugged, or USB debugging off)") from None
        except Exception as exc:  # noqa: BLE001
            self._raise_usb_hint(exc)
            raise self._gone(exc, "cannot open the USB device") from None

    def _raise_usb_hint(self, exc: BaseException) -> None:
        name = type(exc).__name__
        if name == "USBErrorBusy" or "LIBUSB_ERROR_BUSY" in str(exc):
            raise AgentError("the adb server holds the phone's USB interface: stop it with `adb kill-server`, or "
                             "use TCP (`adb tcpip 5555`, then --target android:<phone-ip>:5555)") from None
        if name == "USBErrorAccess" or "LIBUSB_ERROR_ACCESS" in str(exc):
            raise AgentError("no permission to open the phone's USB device: add a udev rule for it (or run "
                             "`adb kill-server` if the adb server has it open)") from None

    def _close_device(self) -> None:
        if self._device is not None:
            try:
                self._device.close()
            except Exception:  # noqa: BLE001 - closing a broken link must not raise
                pass
            self._device = None

    def close(self) -> None:
        with self._lock:
            self._close_device()

    def _ensure(self) -> Any:
        if self._device is None:
            self.connect()
        return self._device

    def _gone(self, exc: BaseException, what: str) -> DeviceUnavailable:
        self._close_device()
        return DeviceUnavailable(self.device_id, f"{what}: {type(exc).__name__}: {exc}".strip())

    def _is_link_error(self, exc: BaseException) -> bool:
        e = self._m.exceptions
        link = (OSError, e.TcpTimeoutException, e.AdbTimeoutError, e.AdbConnectionError, e.InvalidChecksumError,
                e.InvalidCommandError, e.InvalidResponseError, e.UsbReadFailedError, e.UsbWriteFailedError,
                e.UsbDeviceNotFoundError)
        return isinstance(exc, link) or type(exc).__name__.startswith("USBError")

    def _is_timeout(self, exc: BaseException) -> bool:
        e = self._m.exceptions
        return isinstance(exc, (e.TcpTimeoutException, e.AdbTimeoutError, TimeoutError))

    def alive(self) -> bool:
        """Whether the phone answers on a fresh connection (used to tell a silent command from a lost link)."""
        with self._lock:
            try:
                self.connect(timeout_s=PROBE_TIMEOUT_S)
                out = self._device.shell("echo alive", transport_timeout_s=PROBE_TIMEOUT_S,
                                         read_timeout_s=PROBE_TIMEOUT_S, timeout_s=PROBE_TIMEOUT_S)
                return "alive" in out
            except (DeviceUnavailable, AgentError):
                return False
            except Exception:  # noqa: BLE001 - any failure of the probe means the phone is not there
                self._close_device()
                return False

    def _failed(self, exc: BaseException, what: str) -> Exception:
        """The exception to raise for ``exc`` raised by the library during ``what``."""
        if isinstance(exc, (DeviceUnavailable, AgentError)):
            return exc
        if self._is_timeout(exc):
            self._close_device()
            if self.alive():
                return ShellTimeout(f"{what}: no output for the read timeout")
            return DeviceUnavailable(self.device_id, f"{what}: the phone stopped answering ({type(exc).__name__})")
        if self._is_link_error(exc):
            return self._gone(exc, what)
        e = self._m.exceptions
        if isinstance(exc, e.PushFailedError):
            self._close_device()
            msg = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
            return DeviceFull(msg) if "No space left" in msg else RemoteError(msg)
        if isinstance(exc, e.AdbCommandFailureException):
            self._close_device()
            return RemoteError(str(exc))
        return exc

    # -- commands ----------------------------------------------------------------------------------
    def shell(self, command: str, timeout_s: float = 30.0) -> ShellResult:
        """Run ``command`` with ``sh`` on the phone; its merged output and exit code.

        :class:`ShellTimeout` when it printed nothing for ``timeout_s`` (the phone still answering)."""
        wrapped = f"{command}\nprintf '\\n{_RC_MARK}%d\\n' \"$?\""
        with self._lock:
            try:
                out = self._ensure().shell(wrapped, transport_timeout_s=timeout_s, read_timeout_s=timeout_s,
                                           timeout_s=timeout_s, decode=True)
            except Exception as exc:  # noqa: BLE001 - mapped
                raise self._failed(exc, f"shell `{command[:60]}`") from None
        at = out.rfind("\n" + _RC_MARK)
        if at < 0:
            raise RemoteError(f"`{command[:60]}` ended its shell before reporting an exit status: {out[-300:]!r}")
        try:
            code = int(out[at + len(_RC_MARK) + 1:].strip())
        except ValueError:
            raise RemoteError(f"unreadable exit status after `{command[:60]}`: {out[at:]!r}") from None
        return ShellResult(out[:at], code)

    def check(self, command: str, timeout_s: float = 30.0) -> str:
        """Run ``command``; its output, or :class:`RemoteError` with the output when it exits non-zero."""
        result = self.shell(command, timeout_s)
        if result.exit_code != 0:
            raise RemoteError(f"`{command[:80]}` exited with {result.exit_code}: {result.output.strip()[-500:]}")
        return result.output

    def stream(self, command: str, idle_timeout_s: float | None = None) -> Iterator[str]:
        """The lines ``command`` prints, as they arrive. A gap longer than ``idle_timeout_s`` is
        :class:`ShellTimeout` (phone alive) or :class:`DeviceUnavailable`. Leaving the loop early closes
        the connection (the next command reconnects)."""
        idle = self.link_timeout_s if idle_timeout_s is None else idle_timeout_s
        with self._lock:
            buffer = b""
            finished = False
            try:
                device = self._ensure()
                for chunk in device.streaming_shell(command, transport_timeout_s=idle, read_timeout_s=idle,
                                                    decode=False):
                    buffer += chunk
                    while b"\n" in buffer:
                        line, buffer = buffer.split(b"\n", 1)
                        yield line.decode(errors="replace")
                finished = True
            except GeneratorExit:
                raise
            except Exception as exc:  # noqa: BLE001 - mapped
                raise self._failed(exc, f"stream `{command[:60]}`") from None
            finally:
                if not finished:  # the stream is still open on the phone's side: start afresh next time
                    self._close_device()
            if buffer:
                yield buffer.decode(errors="replace")

    def push(self, local: str | Path, remote: str, mode: int = 0o644, timeout_s: float | None = None) -> None:
        """Copy a host file to the phone (``mode``: permission bits)."""
        timeout_s = timeout_s or max(self.link_timeout_s, 60.0)
        with self._lock:
            try:
                self._ensure().push(str(local), remote, st_mode=stat_mod.S_IFREG | mode,
                                    transport_timeout_s=timeout_s, read_timeout_s=timeout_s)
            except Exception as exc:  # noqa: BLE001 - mapped
                raise self._failed(exc, f"push to {remote}") from None

    def pull_bytes(self, remote: str, timeout_s: float | None = None) -> bytes:
        timeout_s = timeout_s or max(self.link_timeout_s, 60.0)
        buf = io.BytesIO()
        with self._lock:
            try:
                self._ensure().pull(remote, buf, transport_timeout_s=timeout_s, read_timeout_s=timeout_s)
            except Exception as exc:  # noqa: BLE001 - mapped
                raise self._failed(exc, f"pull of {remote}") from None
        return buf.getvalue()

    def stat(self, remote: str) -> tuple[int, int, int]:
        """(mode, size, mtime) of a phone path; all zeros when it does not exist."""
        with self._lock:
            try:
                return tuple(self._ensure().stat(remote, transport_timeout_s=self.link_timeout_s,
                                                 read_timeout_s=self.link_timeout_s))
            except Exception as exc:  # noqa: BLE001 - mapped
                raise self._failed(exc, f"stat of {remote}") from None


def usb_serials() -> list[str]:
    """Serials of the phones with USB debugging on (needs libusb1; the adb server must not hold them)."""
    adb_shell_modules()
    usb_module()
    from adb_shell.transport.usb_transport import UsbTransport

    out = []
    for transport in UsbTransport.find_all_adb_devices():
        try:
            out.append(transport.serial_number)
        except Exception as exc:  # noqa: BLE001 - a device we may not open: say why, once
            raise AgentError(f"a phone on USB cannot be opened ({type(exc).__name__}: {exc}): stop the adb server "
                             "(`adb kill-server`) or add a udev rule for it") from None
    return out


def reachable_addresses() -> tuple[list[Address], list[str]]:
    """Phones on USB and those listed in ``SPLITBENCH_ANDROID_TCP``; notes for what could not be asked."""
    addresses, notes = [], []
    try:
        for serial in usb_serials():
            addresses.append(Address("usb", serial=serial))
    except AgentError as exc:
        notes.append(str(exc))
    except Exception as exc:  # noqa: BLE001 - libusb errors vary by platform
        notes.append(f"USB: {type(exc).__name__}: {exc}")
    addresses.extend(tcp_addresses_from_env())
    return addresses, notes


def only_phone() -> Address:
    """The one phone attached, for the bare ``android`` target."""
    adb_shell_modules()
    addresses, notes = reachable_addresses()
    if not addresses:
        why = f" ({'; '.join(notes)})" if notes else ""
        raise AgentError(f"no Android phone attached{why}: plug one in with USB debugging on, or connect over TCP "
                         "with --target android:<host>:<port> after `adb tcpip 5555`")
    if len(addresses) > 1:
        raise AgentError(f"{len(addresses)} phones attached ({', '.join(str(a) for a in addresses)}): choose one with "
                         "--target " + " or --target ".join(a.target for a in addresses))
    return addresses[0]
