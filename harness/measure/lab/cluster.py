"""`splitbench cluster start-head | join | status`: a lab of phones on many hosts as one Ray cluster.

Each host runs one *device server*: ``splitbench cluster join ADDR`` (``start-head`` on the first host)
finds the host's devices, starts the host's Ray node in the foreground (``ray start --block``) with a
resource ``phone:<device_id>`` of 1 per device, and registers each device (the target string that opens it
here, what it is) in the cluster's key-value store. The command stays up while the host serves; Ctrl-C
or SIGTERM stops the node and the host leaves the lab. Ray cannot add resources to a running node: a phone
plugged in later needs the host to join again.

The node's address (``--node-ip``, Ray's ``--node-ip-address``) is what the node tells the others to
reach it at; Ray listens on every interface either way. By default Ray takes the host's primary
interface. On a machine with several, give the one that faces the other hosts; for a lab on one host,
a loopback address. Ray turns 127.0.0.1, ``localhost`` and ``::1`` into the primary interface's address
(``resolve_ip_for_localhost``), so those are refused with the fix: another loopback address such as
127.0.0.2 (all of 127.0.0.0/8 is this host's).

Token authentication (on by default in Ray 2.60): ``start-head`` generates the cluster's token when the
head has none (``~/.ray/auth_token``); every other host and every driver needs the same token, in
``~/.ray/auth_token`` or ``RAY_AUTH_TOKEN``. ``--no-auth`` turns it off on a trusted lab network (Ray
then warns that anyone who can reach the ports can run code on the hosts).
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from harness.core import exitcodes
from harness.core.errors import UserError
from harness.core.text import visible

READY_LINE = "block forever"  # what `ray start --block` prints once its node is up
START_TIMEOUT_S = 120.0


def _require_ray() -> None:
    try:
        import ray  # noqa: F401
    except ImportError as exc:
        from harness.measure.factory import RAY_INSTALL_HINT

        raise UserError(f"splitbench cluster needs Ray ({exc}): {RAY_INSTALL_HINT}") from None


def _ray_command() -> list[str]:
    """The ``ray`` command of this Python's environment (the same Ray as the cluster's)."""
    beside = Path(sys.executable).parent / "ray"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("ray")
    if found:
        return [found]
    from harness.measure.factory import RAY_INSTALL_HINT

    raise UserError(f"the `ray` command is not installed with this Python: {RAY_INSTALL_HINT}")


def token_available() -> bool:
    """Whether this host has a Ray token (``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``)."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return True
    if os.environ.get("RAY_AUTH_TOKEN_PATH"):
        return Path(os.environ["RAY_AUTH_TOKEN_PATH"]).is_file()
    return (Path.home() / ".ray" / "auth_token").is_file()


def _auth_env(auth: bool, *, head: bool) -> dict[str, str]:
    """The environment of the Ray node: token authentication on (with a token) or explicitly off."""
    env = dict(os.environ)
    if not auth:
        env["RAY_AUTH_MODE"] = "disabled"
        return env
    env["RAY_AUTH_MODE"] = "token"
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    if path and not os.environ.get("RAY_AUTH_TOKEN") and not Path(path).is_file():
        raise UserError(f"RAY_AUTH_TOKEN_PATH={path} does not exist: put the cluster's token there (on the head, "
                        "`ray get-auth-token` prints it), or unset it")
    if not token_available():
        if not head:
            raise UserError("no Ray token on this host: on the head, `ray get-auth-token` prints it; put it in "
                            "~/.ray/auth_token here (or RAY_AUTH_TOKEN), or join with --no-auth if the head was "
                            "started with --no-auth")
        subprocess.run([*_ray_command(), "get-auth-token", "--generate"], env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return env


@dataclass(frozen=True)
class ServeOptions:
    """What a device server starts with."""

    head: bool
    address: str | None = None  # the head's address (join)
    port: int = 6379  # the head's GCS port (start-head)
    targets: tuple[str, ...] | None = None  # register exactly these; None: every device discovered here
    auth: bool = True
    dashboard: bool = False
    node_ip: str | None = None  # the address this node gives the others (Ray's --node-ip-address); None: Ray's choice
    ray_args: tuple[str, ...] = ()  # passed to `ray start` as they are


def ray_start_command(opts: ServeOptions, resources: dict[str, float]) -> list[str]:
    """The ``ray start`` command line of a device server."""
    cmd = [*_ray_command(), "start", "--block", "--disable-usage-stats", f"--resources={json.dumps(resources)}"]
    if opts.head:
        cmd += ["--head", f"--port={opts.port}", f"--include-dashboard={'true' if opts.dashboard else 'false'}"]
    else:
        cmd += [f"--address={opts.address}"]
    if opts.node_ip:
        cmd += [f"--node-ip-address={opts.node_ip}"]
    return cmd + list(opts.ray_args)


def check_node_ip(ip: str) -> str:
    """``--node-ip`` as Ray will use it: an IP address of this host, not one Ray would silently replace;
    else one :class:`UserError` line with the fix."""
    try:
        addr = ipaddress.ip_address(ip.strip().strip("[]"))
    except ValueError:
        raise UserError(f"--node-ip {ip!r} is not an IP address; this host's: {', '.join(host_addresses())}") from None
    if str(addr) in ("127.0.0.1", "::1"):
        raise UserError(f"--node-ip {addr}: Ray replaces {addr} (and localhost) with this host's interface address; "
                        "for a lab on this host's loopback give another loopback address, e.g. --node-ip 127.0.0.2")
    family = socket.AF_INET6 if addr.version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((str(addr), 0))  # only an address of this host can be bound
        except OSError:
            raise UserError(f"--node-ip {addr} is not an address of this host; its addresses: "
                            f"{', '.join(host_addresses())} (or any of 127.0.0.0/8 but 127.0.0.1)") from None
    return str(addr)


def host_addresses() -> list[str]:
    """This host's addresses that --node-ip can take (link-local and the two Ray replaces left out)."""
    import psutil

    found = set()
    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            if a.family in (socket.AF_INET, socket.AF_INET6):
                ip = ipaddress.ip_address(a.address.split("%")[0])
                if not (ip.is_link_local or str(ip) in ("127.0.0.1", "::1")):  # not what --node-ip can take
                    found.add(str(ip))
    return sorted(found, key=lambda a: (":" in a, a))


def _with_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def serve(opts: ServeOptions, *, say: Callable[[str], None]) -> int:
    """Start this host's Ray node with its devices, register them, and serve until interrupted."""
    if opts.node_ip is not None:
        opts = dataclasses.replace(opts, node_ip=check_node_ip(opts.node_ip))
    env = _auth_env(opts.auth, head=opts.head)
    # Ray reads the mode when it is imported: this process registers the devices through Ray too.
    os.environ["RAY_AUTH_MODE"] = env["RAY_AUTH_MODE"]
    _require_ray()
    from harness.measure.lab import device_host

    regs, notes = device_host.host_registrations(list(opts.targets) if opts.targets is not None else None)
    for note in notes:
        say(f"note: {note}")
    resources = device_host.node_resources(regs)
    cmd = ray_start_command(opts, resources)
    tail: deque[str] = deque(maxlen=40)
    ready = threading.Event()
    child = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             start_new_session=True)

    def pump() -> None:  # keep the node's output for a failure, and see when it is up
        assert child.stdout is not None
        for line in child.stdout:
            tail.append(line.rstrip())
            if READY_LINE in line:
                ready.set()

    threading.Thread(target=pump, daemon=True).start()
    stop = threading.Event()
    joined = False
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ready.is_set():
            if child.poll() is not None or time.monotonic() > deadline:
                _end(child)
                raise UserError(f"`ray start` failed (exit {child.returncode}): " + " | ".join(list(tail)[-6:]))
            time.sleep(0.2)
        address = opts.address or _with_port(opts.node_ip or _node_ip(), opts.port)
        node_id = _register(address, regs)
        joined = True
        stop = _on_sigterm()  # after Ray's own driver has come and gone (it sets a handler of its own)
        what = ", ".join(f"{r.target} ({r.name})" for r in regs) or "no device"
        say(f"{'head' if opts.head else 'host'} {regs[0].host if regs else ''} is serving {what} in the cluster "
            f"at {address} (node {node_id[:12]}); Ctrl-C leaves the cluster")
        if opts.head:
            loopback = bool(opts.node_ip) and ipaddress.ip_address(opts.node_ip).is_loopback
            where = (f"on this host only (a loopback address): splitbench cluster join {address} --node-ip "
                     f"{opts.node_ip}" if loopback else f"on each device host: splitbench cluster join {address}")
            say(f"{where}; run specs here with --executor ray --ray-address {address}")
            if opts.auth:
                say("token authentication is on: `ray get-auth-token` prints the token; every host and driver "
                    "needs it in ~/.ray/auth_token (or RAY_AUTH_TOKEN)")
        while child.poll() is None and not stop.is_set():
            time.sleep(0.5)
        if child.poll() is not None and not stop.is_set():
            say(f"the Ray node stopped (exit {child.returncode}): " + " | ".join(list(tail)[-4:]))
            return exitcodes.DEVICE_LOST
        return exitcodes.OK
    except KeyboardInterrupt:
        return exitcodes.OK
    finally:
        _end(child)
        if joined:
            say("this host has left the cluster")


def _on_sigterm() -> threading.Event:
    stop = threading.Event()
    with contextlib.suppress(ValueError):  # not the main thread (tests): Ctrl-C still works
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    return stop


def _end(child: subprocess.Popen) -> None:
    """Stop this server's Ray node (``ray start --block`` kills what it started on SIGTERM)."""
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(timeout=60)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _node_ip() -> str:
    import ray.util

    return ray.util.get_node_ip_address()


def _register(address: str, regs: list) -> str:
    """Connect to the cluster, find this server's node (the one carrying its resources), write the
    registrations; returns the node id."""
    import ray

    from harness.measure.lab import device_host

    ray.init(address=address, namespace=device_host.NAMESPACE, logging_level="WARNING", log_to_driver=False)
    try:
        wanted = set(device_host.node_resources(regs))
        node_id = ""
        deadline = time.monotonic() + 60
        while not node_id and time.monotonic() < deadline:
            for n in ray.nodes():
                if n.get("Alive") and wanted and wanted <= set(n.get("Resources", {})):
                    node_id = n["NodeID"]
            if not wanted:
                node_id = ray.get_runtime_context().get_node_id()
            if not node_id:
                time.sleep(0.5)
        device_host.register([dataclasses.replace(r, node_id=node_id) for r in regs])
        return node_id
    finally:
        ray.shutdown()


# --------------------------------------------------------------------------------------------------
# Status


@dataclass(frozen=True)
class DeviceState:
    device_id: str
    target: str
    name: str
    state: str  # "free" | "busy" | "lost" (its host left) | "unregistered" (a phone resource, no registration)
    holder: str = ""


@dataclass(frozen=True)
class HostState:
    host: str
    address: str
    node_id: str
    alive: bool
    head: bool
    devices: tuple[DeviceState, ...] = ()


@dataclass(frozen=True)
class ClusterState:
    address: str
    ray_version: str
    hosts: tuple[HostState, ...] = ()
    lost: tuple[DeviceState, ...] = field(default=())  # registered devices whose host is not in the cluster


def cluster_status(address: str | None = None) -> ClusterState:
    """Hosts of the cluster, each with its devices, free or busy (held by a run), and the devices lost."""
    _require_ray()
    import ray

    from harness.measure.lab import device_host, driver

    driver.connect(address)
    try:
        regs = device_host.registrations()
        holders = device_host.holders()
        free = ray.available_resources()
        hosts = []
        placed: set[str] = set()
        for n in sorted(ray.nodes(), key=lambda n: (not n.get("Alive"), n.get("NodeManagerHostname", ""))):
            resources = n.get("Resources", {}) if n.get("Alive") else {}
            phones = sorted(r[len(device_host.RESOURCE_PREFIX):] for r in resources
                            if r.startswith(device_host.RESOURCE_PREFIX) and "_group_" not in r)
            devices = []
            for d in phones:
                placed.add(d)
                reg = regs.get(d)
                busy = free.get(device_host.resource_name(d), 0) < 1
                holder = holders.get(d, {}).get("driver", "") if busy else ""
                state = "unregistered" if reg is None else ("busy" if busy else "free")
                devices.append(DeviceState(d, reg.target if reg else "", reg.name if reg else "", state, holder))
            if not n.get("Alive") and not any(r.node_id == n["NodeID"] for r in regs.values()):
                continue  # a node gone long ago with nothing registered: not worth a line
            hosts.append(HostState(n.get("NodeManagerHostname", "?"), n.get("NodeManagerAddress", "?"), n["NodeID"],
                                   bool(n.get("Alive")), "node:__internal_head__" in resources, tuple(devices)))
        lost = tuple(DeviceState(r.device_id, r.target, r.name, "lost") for d, r in sorted(regs.items())
                     if d not in placed)
        return ClusterState(address or os.environ.get("RAY_ADDRESS") or "auto", ray.__version__, tuple(hosts), lost)
    finally:
        driver.disconnect()


def print_status(state: ClusterState, *, json_out: bool = False, write: Callable[[str], None] = print) -> int:
    if json_out:
        write(json.dumps(dataclasses.asdict(state), indent=2))
        return exitcodes.OK

    def say(line: str) -> None:  # hosts and devices name themselves: shown, never obeyed (a bidi override)
        write(visible(line))

    alive = [h for h in state.hosts if h.alive]
    devices = [d for h in alive for d in h.devices]
    busy = sum(1 for d in devices if d.state == "busy")
    say(f"cluster {state.address} (Ray {state.ray_version}): {len(alive)} host(s), {len(devices)} device(s), "
        f"{busy} busy, {len(state.lost)} lost")
    for h in state.hosts:
        role = "head" if h.head else "host"
        say(f"{role} {h.host} {h.address} node {h.node_id[:12]} {'alive' if h.alive else 'gone'}")
        for d in h.devices:
            extra = f"  held by {d.holder}" if d.holder else ""
            if d.state == "unregistered":
                extra = "  (a phone resource with no registration: run `splitbench cluster join` on that host)"
            say(f"  {d.target or d.device_id:<28s} {d.state:<5s} {d.device_id}  {d.name}{extra}")
    for d in state.lost:
        say(f"lost {d.target:<28s} {d.device_id}  {d.name}  (its host left: join it again to measure on it)")
    return exitcodes.OK


__all__ = ["ServeOptions", "serve", "ray_start_command", "check_node_ip", "host_addresses", "cluster_status",
           "print_status", "ClusterState", "HostState", "DeviceState", "token_available"]
