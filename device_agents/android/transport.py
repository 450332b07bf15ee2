"""The transport layer's face: where a phone is (:class:`Address`), what a link to it does (:class:`Link`),
and the errors every link raises, whichever path carries the bytes.

Two paths reach a phone (docs/android.md, "Two ways to reach a phone"):

- ``adb_direct.py``: splitbench speaks ADB to the phone itself through the pure-Python ``adb-shell``
  (USB through libusb, or TCP after ``adb tcpip 5555``), with its own key;
- ``adb_server.py``: through the ``adb`` server already running on the desk (Android Studio, scrcpy,
  an emulator) with ``adbutils``, the client of the server's host protocol.

``links.py`` chooses between them (``[android] via``). The agent above holds a :class:`Link` and never
knows which path, USB or TCP it runs on.
"""

from __future__ import annotations

import os
import re
import sys
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, NamedTuple

from device_agents.base import AgentError, DeviceUnavailable

DEFAULT_TCP_PORT = 5555
TCP_DEVICES_ENV = "SPLITBENCH_ANDROID_TCP"  # "host:port,host:port": phones reachable over TCP, for discovery
PROBE_TIMEOUT_S = 5.0
RC_MARK = "__SPLITBENCH_RC__="


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
    """Where a phone is: ``serial`` (a serial: a phone on USB, or what the adb server calls a phone, such
    as ``emulator-5554``) or ``tcp`` (``host``, ``port``: adbd listening after ``adb tcpip 5555``)."""

    kind: str
    serial: str | None = None
    host: str | None = None
    port: int | None = None

    def __str__(self) -> str:
        if self.kind == "tcp":
            return f"{self.host}:{self.port}"
        return self.serial or "usb"

    @property
    def target(self) -> str:
        """The target name that reaches this phone."""
        return f"android:{self}"

    @property
    def server_serial(self) -> str:
        """What the adb server calls this phone (a phone it reaches over TCP is ``host:port``)."""
        return str(self)


_HOST_PORT = re.compile(r"^(?P<host>[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:]+\]):(?P<port>\d{1,5})$")


def parse_target(target: str) -> Address | None:
    """``android`` -> None (the only phone attached); ``android:<serial>`` -> a serial;
    ``android:<host>:<port>`` -> TCP. Raises :class:`AgentError` for anything else."""
    head, _, rest = target.partition(":")
    if head != "android":
        raise AgentError(f"not an Android target: {target!r}")
    if not rest:
        return None
    return parse_address(rest, where=repr(target))


def parse_address(text: str, where: str = "") -> Address:
    """A serial or ``host:port`` (as ``adb devices`` lists them) as an :class:`Address`."""
    m = _HOST_PORT.match(text)
    if m:
        port = int(m["port"])
        if not 0 < port < 65536:
            raise AgentError(f"{where or text}: port {port} is out of range")
        return Address("tcp", host=m["host"].strip("[]"), port=port)
    if not re.fullmatch(r"[A-Za-z0-9._\-]+", text):
        raise AgentError(f"{where or repr(text)}: a serial is letters, digits, '.', '_' and '-'; for a phone over "
                         "TCP use android:<host>:<port> (after `adb tcpip 5555`)")
    return Address("serial", serial=text)


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
# Exit codes over a shell that returns none (adb's legacy ``shell:`` service)


def with_exit_marker(command: str) -> str:
    """``command`` followed by a line that prints its exit status. Only the shell's own ``echo`` is used:
    a phone whose userland lacks ``printf`` still reports its status."""
    return f"{command}\n__sb_rc=$?; echo; echo \"{RC_MARK}$__sb_rc\""


def split_exit_marker(out: str, command: str) -> ShellResult:
    """The output and exit status of a command run through :func:`with_exit_marker`."""
    at = out.rfind("\n" + RC_MARK)
    if at < 0:
        raise RemoteError(f"`{command[:60]}` ended its shell before reporting an exit status: {out[-300:]!r}")
    try:
        code = int(out[at + len(RC_MARK) + 1:].strip())
    except ValueError:
        raise RemoteError(f"unreadable exit status after `{command[:60]}`: {out[at:]!r}") from None
    return ShellResult(out[:at], code)


# --------------------------------------------------------------------------------------------------
# The link


class Link(ABC):
    """One connection to one phone, opened again after any error. Every method raises
    :class:`DeviceUnavailable` naming ``device_id`` when the phone is gone, :class:`ShellTimeout` when a
    command printed nothing for its timeout while the phone still answers, :class:`RemoteError` (or
    :class:`DeviceFull`) when the phone refused a file operation, :class:`AgentError` for what the user
    must fix (a key to allow, USB held by another program)."""

    #: how this link reaches the phone, for ``splitbench devices`` and ``doctor`` ("adb server 127.0.0.1:5037")
    via: str = ""

    def __init__(self, address: Address, *, link_timeout_s: float = 15.0,
                 notify: Callable[[str], None] = tell_user):
        self.address = address
        self.device_id = address.serial or str(address)
        self.link_timeout_s = float(link_timeout_s)
        self.notify = notify
        self.lock = threading.RLock()

    @abstractmethod
    def connect(self, timeout_s: float | None = None) -> None:
        """Open the connection (closing an old one)."""

    @abstractmethod
    def close(self) -> None:
        """Close the connection; never raises."""

    @abstractmethod
    def probe(self) -> bool:
        """Whether the phone answers ``echo alive`` on a fresh connection (within :data:`PROBE_TIMEOUT_S`)."""

    @abstractmethod
    def shell(self, command: str, timeout_s: float = 30.0) -> ShellResult:
        """Run ``command`` with the phone's ``sh``; its output (stdout and stderr, merged) and exit code."""

    @abstractmethod
    def stream(self, command: str, idle_timeout_s: float | None = None) -> Iterator[str]:
        """The lines ``command`` prints, as they arrive. A gap longer than ``idle_timeout_s`` is
        :class:`ShellTimeout` (phone alive) or :class:`DeviceUnavailable`. Leaving the loop early closes
        the connection (the next command reconnects)."""

    @abstractmethod
    def push(self, local: str | Path, remote: str, mode: int = 0o644, timeout_s: float | None = None) -> None:
        """Copy a host file to the phone (``mode``: permission bits)."""

    @abstractmethod
    def pull_bytes(self, remote: str, timeout_s: float | None = None) -> bytes:
        """The bytes of a phone file."""

    @abstractmethod
    def stat(self, remote: str) -> tuple[int, int, int]:
        """(mode, size, mtime) of a phone path; all zeros when it does not exist."""

    def check(self, command: str, timeout_s: float = 30.0) -> str:
        """Run ``command``; its output, or :class:`RemoteError` with the output when it exits non-zero."""
        result = self.shell(command, timeout_s)
        if result.exit_code != 0:
            raise RemoteError(f"`{command[:80]}` exited with {result.exit_code}: {result.output.strip()[-500:]}")
        return result.output

    def alive(self) -> bool:
        """:meth:`probe`, serialised with the link's other calls."""
        with self.lock:
            return self.probe()

    def timed_out(self, what: str, exc: BaseException) -> Exception:
        """After a read timeout: :class:`ShellTimeout` when the phone still answers (the command itself was
        silent), else :class:`DeviceUnavailable`."""
        self.close()
        if self.alive():
            return ShellTimeout(f"{what}: no output for the read timeout")
        return DeviceUnavailable(self.device_id, f"{what}: the phone stopped answering ({type(exc).__name__})")

    def gone(self, exc: BaseException, what: str) -> DeviceUnavailable:
        """The link is lost: closed, and :class:`DeviceUnavailable` with what was being done."""
        self.close()
        return DeviceUnavailable(self.device_id, f"{what}: {type(exc).__name__}: {exc}".strip())
