"""The adb-server path: the phone reached through the ``adb`` server already running on this computer
(the one Android Studio, scrcpy or an emulator started), with ``adbutils``, the client of the server's
host protocol. The server keeps the phone: nothing is taken away from the other tools on the desk.

Where the server listens, as Google's ``adb`` client finds it (AOSP packages/modules/adb,
client/commandline.cpp): ``ADB_SERVER_SOCKET`` (``tcp:<port>`` or ``tcp:<host>:<port>``) first, else
``ANDROID_ADB_SERVER_ADDRESS`` and ``ANDROID_ADB_SERVER_PORT``, default ``localhost:5037``.

What this layer adds to ``adbutils`` 2.12:

- a server that does not answer is never started: adbutils runs ``adb start-server`` when its
  connection fails, which would take USB phones away from the direct path (``_adb.py``,
  ``AdbConnection._safe_connect``); here such a server is :class:`DeviceUnavailable` (mid-run) or
  one line (at the start);
- exit codes: ``shell,v2`` (exit status and stderr in their own packets, AOSP shell_protocol.h) when
  the phone lists ``shell_v2`` in its features (Android 7+), else the legacy ``shell:`` with the
  marker line of the direct path;
- streaming: the runner's lines as they arrive, read from the v2 packets on the stream's socket;
- a push that says why the phone refused: adbutils' ``Sync.push`` raises ``AdbError("FAIL")`` and
  drops the phone's message (``sync.py``, ``_push_file``), so the sync ``SEND`` exchange
  (AOSP docs/dev/sync.md) is spoken here on adbutils' connection, and "No space left on device"
  becomes :class:`DeviceFull` as on the direct path;
- a phone the server lists as ``offline`` after a reconnect over TCP is connected again
  (``adb disconnect`` + ``adb connect``), and one it lists as ``unauthorized`` is one line.
"""

from __future__ import annotations

import functools
import os
import socket
import stat as stat_mod
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from device_agents.android.transport import (PROBE_TIMEOUT_S, Address, DeviceFull, Link, RemoteError, ShellResult,
                                             split_exit_marker, tell_user, with_exit_marker)
from device_agents.base import AgentError, DeviceUnavailable

INSTALL_HINT = "pip install 'splitbench[android]'"
DEFAULT_SERVER_PORT = 5037
SYNC_DATA_MAX = 64 * 1024  # the largest DATA chunk adbd takes (file_sync_protocol.h)
# shell protocol packet ids (AOSP shell_protocol.h)
ID_STDOUT, ID_STDERR, ID_EXIT = 1, 2, 3


def adbutils_module() -> Any:
    """``adbutils``, or :class:`AgentError` with the install hint."""
    try:
        import adbutils
    except ImportError as exc:
        raise AgentError(f"the adb-server path needs the adbutils library ({exc}): {INSTALL_HINT}") from None
    return adbutils


@dataclass(frozen=True)
class ServerAddress:
    """Where the adb server listens."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    @classmethod
    def from_env(cls) -> "ServerAddress":
        """As Google's ``adb`` finds its server: ``ADB_SERVER_SOCKET``, else ``ANDROID_ADB_SERVER_ADDRESS`` /
        ``ANDROID_ADB_SERVER_PORT``, else localhost:5037. :class:`AgentError` for a value it cannot use."""
        spec = os.environ.get("ADB_SERVER_SOCKET", "").strip()
        if spec:
            parts = spec.split(":")
            if parts[0] != "tcp" or len(parts) not in (2, 3) or not parts[-1].isdigit():
                raise AgentError(f"ADB_SERVER_SOCKET={spec!r}: splitbench reaches the adb server over TCP only "
                                 "(tcp:<port> or tcp:<host>:<port>)")
            host = parts[1] if len(parts) == 3 else "localhost"
            return cls(_loopback(host), _port(parts[-1], "ADB_SERVER_SOCKET"))
        host = os.environ.get("ANDROID_ADB_SERVER_ADDRESS", "").strip() or "localhost"
        port = os.environ.get("ANDROID_ADB_SERVER_PORT", "").strip()
        return cls(_loopback(host), _port(port, "ANDROID_ADB_SERVER_PORT") if port else DEFAULT_SERVER_PORT)

    def answers(self, timeout_s: float = 1.0) -> bool:
        """Whether an adb server answers here (its ``host:version``)."""
        try:
            with socket.create_connection((self.host, self.port), timeout=timeout_s) as s:
                s.sendall(b"000chost:version")
                return s.recv(4) == b"OKAY"
        except OSError:
            return False

    def client(self) -> Any:
        """An ``adbutils`` client of this server that never starts one (see the module's docstring)."""
        return _client_class(adbutils_module())(host=self.host, port=self.port)

    def devices(self) -> dict[str, str] | None:
        """The phones the server lists, serial -> state (``device``, ``offline``, ``unauthorized``...); None
        when no server answers."""
        if not self.answers():
            return None
        try:
            return {d.serial: d.state for d in self.client().list()}
        except Exception:  # noqa: BLE001 - a server that stopped between the two calls
            return None


def _loopback(host: str) -> str:
    return "127.0.0.1" if host == "localhost" else host


def _port(text: str, name: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = 0
    if not 0 < port < 65536:
        raise AgentError(f"{name}={text!r}: a port is a number from 1 to 65535")
    return port


@functools.cache
def _client_class(adbutils: Any) -> type:
    """adbutils' client, with a connection that raises when the server does not answer (adbutils would
    start one)."""

    class Client(adbutils.AdbClient):
        def make_connection(self, timeout: float | None = None) -> Any:
            if not ServerAddress(self.host, self.port).answers():
                raise adbutils.errors.AdbConnectionError(f"no adb server answers on {self.host}:{self.port}")
            return super().make_connection(timeout)

    return Client


class ServerLink(Link):
    """One phone through the adb server; a connection of the server per call, so nothing to reopen."""

    def __init__(self, address: Address, *, server: ServerAddress, link_timeout_s: float = 15.0,
                 notify: Callable[[str], None] = tell_user):
        super().__init__(address, link_timeout_s=link_timeout_s, notify=notify)
        self.server = server
        self.via = f"adb server {server}"
        self.serial = address.server_serial
        self._adbutils = adbutils_module()
        self._client = server.client()
        self._device: Any = None
        self._v2 = False

    # -- connection --------------------------------------------------------------------------------
    def _state(self) -> str | None:
        return {d.serial: d.state for d in self._client.list()}.get(self.serial)

    def connect(self, timeout_s: float | None = None) -> None:
        """Find the phone on the server (connecting a TCP phone the server does not hold, or holds
        offline); :class:`AgentError` for a phone that has not allowed this computer."""
        timeout_s = self.link_timeout_s if timeout_s is None else timeout_s
        with self.lock:
            self._device = None
            try:
                state = self._state()
                if state != "device" and self.address.kind == "tcp":
                    if state is not None:
                        self._client.disconnect(self.serial)
                    said = self._client.connect(self.serial, timeout=timeout_s)
                    if "connected to" not in said or said.startswith(("failed", "unable")):
                        raise DeviceUnavailable(self.device_id, f"the adb server at {self.server} cannot connect "
                                                                f"to it: {said.strip()}")
                    self._client.wait_for(self.serial, state="device", timeout=timeout_s)
                    state = self._state()
                if state == "unauthorized":
                    raise AgentError(f"the phone {self.serial} has not allowed the adb server's key: unlock it and "
                                     "accept the USB debugging prompt (tick 'Always allow'), then run again")
                if state != "device":
                    raise DeviceUnavailable(self.device_id, f"the adb server at {self.server} "
                                            + ("does not list it" if state is None else f"lists it as {state}"))
                device = self._client.device(self.serial)
                self._v2 = "shell_v2" in device.get_features().split(",")
            except (DeviceUnavailable, AgentError):
                raise
            except Exception as exc:  # noqa: BLE001 - mapped
                raise self.gone(exc, "cannot reach it through the adb server") from None
            self._device = device

    def close(self) -> None:
        with self.lock:
            self._device = None

    def _ensure(self) -> Any:
        if self._device is None:
            self.connect()
        return self._device

    def probe(self) -> bool:
        try:
            if self._state() != "device":
                return False
            out = self._client.device(self.serial).shell("echo alive", timeout=PROBE_TIMEOUT_S)
            return "alive" in out
        except Exception:  # noqa: BLE001 - any failure of the probe means the phone is not there
            return False

    def _failed(self, exc: BaseException, what: str) -> Exception:
        """The exception to raise for ``exc`` raised during ``what``."""
        errors = self._adbutils.errors
        if isinstance(exc, (DeviceUnavailable, AgentError, RemoteError)):
            return exc
        if isinstance(exc, (errors.AdbTimeout, socket.timeout)):
            return self.timed_out(what, exc)
        if isinstance(exc, errors.AdbConnectionError):
            self.close()
            return DeviceUnavailable(self.device_id, f"{what}: the adb server at {self.server} stopped answering")
        try:
            state = self._state()
        except Exception:  # noqa: BLE001 - the server itself is gone
            state = "gone with the adb server"
        where = ("the adb server no longer lists the phone" if state is None else f"the adb server lists it as {state}")
        if state == "device" and isinstance(exc, errors.AdbError):
            return RemoteError(f"{what}: {exc}")  # the phone answered, and refused
        return self.gone(exc, f"{what} ({where})")

    # -- commands ----------------------------------------------------------------------------------
    def shell(self, command: str, timeout_s: float = 30.0) -> ShellResult:
        """``shell,v2`` (its exit packet) when the phone speaks it, else the legacy service with a marker."""
        with self.lock:
            try:
                device = self._ensure()
                if self._v2:
                    r = device.shell2(command, timeout=timeout_s, encoding=None, v2=True)
                    return ShellResult(r.output.decode(errors="replace"), r.returncode)
                out = device.shell(with_exit_marker(command), timeout=timeout_s, encoding=None, rstrip=False)
            except Exception as exc:  # noqa: BLE001 - mapped
                raise self._failed(exc, f"shell `{command[:60]}`") from None
        return split_exit_marker(out.decode(errors="replace"), command)

    def stream(self, command: str, idle_timeout_s: float | None = None) -> Iterator[str]:
        idle = self.link_timeout_s if idle_timeout_s is None else idle_timeout_s
        with self.lock:
            conn = None
            buffer, pending = b"", b""
            try:
                device = self._ensure()
                conn = device.open_transport(timeout=idle)
                conn.send_command(("shell,v2,raw:" if self._v2 else "shell:") + command)
                conn.check_okay()
                while True:
                    chunk = conn.conn.recv(65536)
                    if not chunk:
                        if self._v2:  # the exit packet never came: the stream was cut
                            raise EOFError("the adb server closed the stream before the command's exit status")
                        break
                    if not self._v2:
                        buffer += chunk
                    else:
                        pending += chunk
                        exited = False
                        while len(pending) >= 5:
                            kind, length = pending[0], struct.unpack("<I", pending[1:5])[0]
                            if len(pending) < 5 + length:
                                break
                            data, pending = pending[5:5 + length], pending[5 + length:]
                            if kind in (ID_STDOUT, ID_STDERR):
                                buffer += data
                            elif kind == ID_EXIT:
                                exited = True
                        if exited:
                            break
                    while b"\n" in buffer:
                        line, buffer = buffer.split(b"\n", 1)
                        yield line.decode(errors="replace")
            except GeneratorExit:
                raise
            except Exception as exc:  # noqa: BLE001 - mapped
                raise self._failed(exc, f"stream `{command[:60]}`") from None
            finally:
                if conn is not None:
                    conn.close()  # the server closes the phone's side of the stream
            if buffer:
                yield buffer.decode(errors="replace")

    def push(self, local: str | Path, remote: str, mode: int = 0o644, timeout_s: float | None = None) -> None:
        timeout_s = timeout_s or max(self.link_timeout_s, 60.0)
        spec = f"{remote},{stat_mod.S_IFREG | mode}".encode()
        with self.lock:
            try:
                with self._ensure().open_transport(timeout=timeout_s) as c:
                    c.send_command("sync:")
                    c.check_okay()
                    try:
                        c.conn.sendall(b"SEND" + struct.pack("<I", len(spec)) + spec)
                        with open(local, "rb") as f:
                            while chunk := f.read(SYNC_DATA_MAX):
                                c.conn.sendall(b"DATA" + struct.pack("<I", len(chunk)) + chunk)
                        c.conn.sendall(b"DONE" + struct.pack("<I", int(time.time())))
                    except OSError:
                        pass  # the phone may have refused mid-way: its FAIL is read below
                    ident, length = struct.unpack("<4sI", c.read_exact(8))
                    if ident == b"FAIL":
                        msg = c.read_exact(length).decode(errors="replace")
                        raise (DeviceFull if "No space left" in msg else RemoteError)(msg)
                    if ident != b"OKAY":
                        raise RemoteError(f"push to {remote}: the phone answered {ident!r}")
                    c.conn.sendall(b"QUIT" + struct.pack("<I", 0))
            except Exception as exc:  # noqa: BLE001 - mapped
                raise self._failed(exc, f"push to {remote}") from None

    def pull_bytes(self, remote: str, timeout_s: float | None = None) -> bytes:
        with self.lock:
            try:
                return self._adbutils.Sync(self._ensure()).read_bytes(remote)
            except Exception as exc:  # noqa: BLE001 - mapped
                raise self._failed(exc, f"pull of {remote}") from None

    def stat(self, remote: str) -> tuple[int, int, int]:
        with self.lock:
            try:
                info = self._adbutils.Sync(self._ensure()).stat(remote)
            except Exception as exc:  # noqa: BLE001 - mapped
                raise self._failed(exc, f"stat of {remote}") from None
        return info.mode, info.size, int(info.mtime.timestamp()) if info.mtime else 0
