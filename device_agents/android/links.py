"""Which path reaches each phone (``[android] via``) and which phones this host reaches at all.

- ``"auto"`` (the default): through the adb server when one answers on its port (``ANDROID_ADB_SERVER_PORT``,
  ``ADB_SERVER_SOCKET``) and lists the phone, else directly with ``adb-shell``;
- ``"server"``: through the adb server only (one line when none answers);
- ``"direct"``: ``adb-shell`` only (USB needs the server stopped: it holds the phones' USB interfaces).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from device_agents.android.adb_direct import DirectLink, adb_shell_modules, usb_serials
from device_agents.android.adb_server import ServerAddress, ServerLink, adbutils_module
from device_agents.android.transport import Address, Link, parse_address, tcp_addresses_from_env, tell_user
from device_agents.base import AgentError

VIAS = ("auto", "server", "direct")
SERVER, DIRECT = "server", "direct"


@dataclass(frozen=True)
class Reach:
    """A phone and the path that reaches it."""

    address: Address
    path: str  # SERVER or DIRECT

    def __str__(self) -> str:
        return f"{self.address} ({'through the adb server' if self.path == SERVER else 'direct'})"


def no_server(server: ServerAddress) -> AgentError:
    return AgentError(f"[android] via = \"server\", but no adb server answers on {server}: start it "
                      "(`adb start-server`), or point ANDROID_ADB_SERVER_PORT / ADB_SERVER_SOCKET at it")


def choose(address: Address, via: str) -> Reach:
    """The path to ``address``: ``via``, or for ``auto`` the server when it lists the phone."""
    if via == "auto":
        listed = ServerAddress.from_env().devices()
        return Reach(address, SERVER if listed is not None and address.server_serial in listed else DIRECT)
    return Reach(address, via)


def open_link(reach: Reach, *, link_timeout_s: float = 15.0, notify: Callable[[str], None] = tell_user) -> Link:
    """The (not yet connected) link of a :class:`Reach`."""
    if reach.path == SERVER:
        server = ServerAddress.from_env()
        if not server.answers():
            raise no_server(server)
        return ServerLink(reach.address, server=server, link_timeout_s=link_timeout_s, notify=notify)
    return DirectLink(reach.address, link_timeout_s=link_timeout_s, notify=notify)


def reachable(via: str = "auto") -> tuple[list[Reach], list[str]]:
    """Every phone this host reaches: the adb server's (for ``auto`` and ``server``), then USB (when no
    server holds it) and ``SPLITBENCH_ANDROID_TCP`` directly; notes for what could not be asked."""
    found: list[Reach] = []
    notes: list[str] = []
    listed: dict[str, str] | None = None
    if via != "direct":
        server = ServerAddress.from_env()
        adbutils_module()
        listed = server.devices()
        if listed is None and via == SERVER:
            raise no_server(server)
        for serial, state in (listed or {}).items():
            if state == "device":
                found.append(Reach(parse_address(serial), SERVER))
            else:
                hint = {"unauthorized": "accept the USB debugging prompt on the phone",
                        "offline": "reconnect it, or restart adb"}.get(state, "")
                notes.append(f"{serial}: the adb server lists it as {state}" + (f": {hint}" if hint else ""))
    if via != SERVER:
        adb_shell_modules()
        if listed is None:  # a running server holds every USB phone: asking libusb would only find them busy
            try:
                found.extend(Reach(Address("serial", serial=s), DIRECT) for s in usb_serials())
            except AgentError as exc:
                notes.append(str(exc))
            except Exception as exc:  # noqa: BLE001 - libusb errors vary by platform
                notes.append(f"USB: {type(exc).__name__}: {exc}")
    on_server = {r.address.server_serial for r in found if r.path == SERVER} | set(listed or {})
    for address in tcp_addresses_from_env():
        if address.server_serial in on_server:
            continue
        if via == SERVER:
            notes.append(f"{address}: not connected to the adb server (`adb connect {address}`)")
        else:
            found.append(Reach(address, DIRECT))
    return found, notes


def only_phone(via: str = "auto") -> Reach:
    """The one phone attached, for the bare ``android`` target."""
    found, notes = reachable(via)
    if not found:
        why = f" ({'; '.join(notes)})" if notes else ""
        raise AgentError(f"no Android phone attached{why}: plug one in with USB debugging on, or connect over TCP "
                         "with --target android:<host>:<port> after `adb tcpip 5555`")
    if len(found) > 1:
        raise AgentError(f"{len(found)} phones attached ({', '.join(str(r) for r in found)}): choose one with "
                         "--target " + " or --target ".join(r.address.target for r in found))
    return found[0]
