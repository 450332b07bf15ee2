"""The direct path: splitbench speaks ADB to the phone itself, over USB or TCP, through the pure-Python
``adb-shell`` (no ``adb`` binary, no server).

What this layer adds to the library (``../shared/research/adb_ci_scaleout.md`` part A, android.md §6):

- exit codes: ``adb-shell`` speaks the legacy ``shell:`` service, which returns merged output and no
  status, so :meth:`DirectLink.shell` appends a line that echoes ``$?`` and splits it off
  (:func:`~device_agents.android.transport.with_exit_marker`);
- timeouts: a command that prints nothing trips the read timeout (``TcpTimeoutException`` from
  ``select``) just as a dead link does; after a timeout the link is probed on a fresh connection: if
  the phone answers, the command itself was silent (:class:`ShellTimeout`), else the phone is gone;
- a dropped link: a peer that closed the socket makes ``adb-shell`` spin on ``recv() == b''`` until
  its read timeout (A.8); the TCP transport here raises at once instead (and sets TCP_NODELAY, as each
  message is written in two parts). Every exception that means the link is gone (socket, USB, adb
  protocol errors) becomes :class:`DeviceUnavailable`, and the connection is closed and opened again
  before the next command (``AdbDevice.available`` stays True after such errors);
- keys: ``~/.android/adbkey`` when it exists (the phone already trusts it when ``adb`` was used),
  else one generated once and kept in splitbench's config directory;
- USB held by the ``adb`` server: one line that says to use the server path (``[android] via``).
"""

from __future__ import annotations

import base64
import functools
import io
import os
import socket
import stat as stat_mod
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Iterator

from device_agents.android.transport import (PROBE_TIMEOUT_S, Address, DeviceFull, Link, RemoteError, ShellResult,
                                             split_exit_marker, tell_user, with_exit_marker)
from device_agents.base import AgentError, DeviceUnavailable

INSTALL_HINT = "pip install 'splitbench[android]'"
KEY_ENV = "SPLITBENCH_ADB_KEY"  # a private key file to use instead of ~/.android/adbkey
AUTH_TIMEOUT_S = 60.0  # time for a person to tap "Allow" on the phone


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


class DirectLink(Link):
    """One adb connection to one phone through ``adb-shell``, reopened after any error."""

    def __init__(self, address: Address, *, link_timeout_s: float = 15.0,
                 notify: Callable[[str], None] = tell_user):
        super().__init__(address, link_timeout_s=link_timeout_s, notify=notify)
        self.via = f"direct (adb-shell over {'TCP' if address.kind == 'tcp' else 'USB'})"
        self._device: Any = None
        self._m = adb_shell_modules()

    # -- connection --------------------------------------------------------------------------------
    def connect(self, timeout_s: float | None = None) -> None:
        """Open the connection (closing an old one). :class:`AgentError` for what the user must fix
        (USB held by the adb server, no permission, key refused), :class:`DeviceUnavailable` when the
        phone cannot be reached."""
        timeout_s = self.link_timeout_s if timeout_s is None else timeout_s
        with self.lock:
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
                raise self.gone(exc, "cannot connect") from None
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
            raise self.gone(exc, "cannot open the USB device") from None

    def _raise_usb_hint(self, exc: BaseException) -> None:
        name = type(exc).__name__
        if name == "USBErrorBusy" or "LIBUSB_ERROR_BUSY" in str(exc):
            raise AgentError("the adb server holds the phone's USB interface: reach the phone through it with "
                             "[android] via = \"server\" (or \"auto\", the default), or stop it with "
                             "`adb kill-server`") from None
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
        with self.lock:
            self._close_device()

    def _ensure(self) -> Any:
        if self._device is None:
            self.connect()
        return self._device

    def _is_link_error(self, exc: BaseException) -> bool:
        e = self._m.exceptions
        link = (OSError, e.TcpTimeoutException, e.AdbTimeoutError, e.AdbConnectionError, e.InvalidChecksumError,
                e.InvalidCommandError, e.InvalidResponseError, e.UsbReadFailedError, e.UsbWriteFailedError,
                e.UsbDeviceNotFoundError)
        return isinstance(exc, link) or type(exc).__name__.startswith("USBError")

    def _is_timeout(self, exc: BaseException) -> bool:
        e = self._m.exceptions
        return isinstance(exc, (e.TcpTimeoutException, e.AdbTimeoutError, TimeoutError))

    def probe(self) -> bool:
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
            return self.timed_out(what, exc)
        if self._is_link_error(exc):
            return self.gone(exc, what)
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
        """The legacy ``shell:`` service, with the exit status through an appended marker line."""
        with self.lock:
            try:
                out = self._ensure().shell(with_exit_marker(command), transport_timeout_s=timeout_s,
                                           read_timeout_s=timeout_s, timeout_s=timeout_s, decode=True)
            except Exception as exc:  # noqa: BLE001 - mapped
                raise self._failed(exc, f"shell `{command[:60]}`") from None
        return split_exit_marker(out, command)

    def stream(self, command: str, idle_timeout_s: float | None = None) -> Iterator[str]:
        idle = self.link_timeout_s if idle_timeout_s is None else idle_timeout_s
        with self.lock:
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
        timeout_s = timeout_s or max(self.link_timeout_s, 60.0)
        with self.lock:
            try:
                self._ensure().push(str(local), remote, st_mode=stat_mod.S_IFREG | mode,
                                    transport_timeout_s=timeout_s, read_timeout_s=timeout_s)
            except Exception as exc:  # noqa: BLE001 - mapped
                raise self._failed(exc, f"push to {remote}") from None

    def pull_bytes(self, remote: str, timeout_s: float | None = None) -> bytes:
        timeout_s = timeout_s or max(self.link_timeout_s, 60.0)
        buf = io.BytesIO()
        with self.lock:
            try:
                self._ensure().pull(remote, buf, transport_timeout_s=timeout_s, read_timeout_s=timeout_s)
            except Exception as exc:  # noqa: BLE001 - mapped
                raise self._failed(exc, f"pull of {remote}") from None
        return buf.getvalue()

    def stat(self, remote: str) -> tuple[int, int, int]:
        with self.lock:
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
