"""``cluster start-head --node-ip`` and ``cluster join --node-ip``: the address a host's Ray node gives the
others (Ray's ``--node-ip-address``), e.g. a loopback address for a lab on one host, or the interface that
faces the other hosts on a machine with several.

Ray 2.60 replaces 127.0.0.1, ``localhost`` and ``::1`` with the host's primary interface address
(``ray/_private/services.py:resolve_ip_for_localhost``, called by ``ray start`` for ``--node-ip-address``;
https://github.com/ray-project/ray/issues/26293 was closed as intended): those are refused with one line
naming another loopback address. The plumbing is tested without a cluster; one slow test starts a real
head and a real joining node on 127.0.0.2 on this host (as the Ray lab tests do, each on free ports and
its own temporary directory) and reads the cluster's view of them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from harness.measure.lab import cluster
from harness.cli import main
from harness.measure.lab.cluster import ServeOptions, check_node_ip, ray_start_command

ROOT = Path(__file__).resolve().parents[1]
LOOPBACK = "127.0.0.2"  # a loopback address Ray keeps as it is (all of 127.0.0.0/8 is this host's)


def test_ray_start_gets_the_node_ip_for_the_head_and_a_joining_host():
    head = ray_start_command(ServeOptions(head=True, port=6380, node_ip=LOOPBACK), {})
    assert head[-1] == f"--node-ip-address={LOOPBACK}" and "--head" in head
    host = ray_start_command(ServeOptions(head=False, address=f"{LOOPBACK}:6380", node_ip=LOOPBACK), {})
    assert host[-2:] == [f"--address={LOOPBACK}:6380", f"--node-ip-address={LOOPBACK}"]
    assert not any(a.startswith("--node-ip-address") for a in ray_start_command(ServeOptions(head=True), {}))


@pytest.mark.parametrize("argv", [["cluster", "start-head", "--no-devices", "--no-auth"],
                                  ["cluster", "join", f"{LOOPBACK}:6380", "--no-auth"]],
                         ids=["start-head", "join"])
def test_the_cli_passes_node_ip_to_the_server(argv, monkeypatch):
    seen = []
    monkeypatch.setattr(cluster, "serve", lambda opts, say: seen.append(opts) or 0)
    assert main([*argv, "--node-ip", LOOPBACK]) == 0
    assert main(argv) == 0
    assert [o.node_ip for o in seen] == [LOOPBACK, None]


@pytest.mark.parametrize("ip,says", [
    ("127.0.0.1", "Ray replaces 127.0.0.1 (and localhost) with this host's interface address"),
    ("::1", "Ray replaces ::1"),
    ("localhost", "is not an IP address"),
    ("10.0.0", "is not an IP address"),
    ("203.0.113.9", "is not an address of this host"),  # TEST-NET-3: never a local address
])
@pytest.mark.parametrize("command", ["start-head", "join"])
def test_a_node_ip_ray_would_replace_or_cannot_use_is_one_line(ip, says, command, capfd):
    argv = ["cluster", command] + ([f"{LOOPBACK}:6380"] if command == "join" else []) + ["--node-ip", ip, "--no-auth"]
    assert main(argv) == 1
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: --node-ip ") and says in err, err
    assert "Traceback" not in err
    if ip == "127.0.0.1":
        assert "--node-ip 127.0.0.2" in err  # the fix


def test_loopback_and_this_hosts_addresses_are_accepted():
    assert check_node_ip(LOOPBACK) == LOOPBACK
    assert check_node_ip(" 127.0.0.5 ") == "127.0.0.5"
    for ip in cluster.host_addresses():  # this host's interfaces (IPv6 too)
        assert check_node_ip(ip) == ip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server:
    """A device server (`serve`) in its own process, as `splitbench cluster ...` runs it, on free ports."""

    def __init__(self, opts: dict, env: dict) -> None:
        code = ("import sys, json; from harness.measure.lab.cluster import ServeOptions, serve; "
                "o = json.loads(sys.argv[1]); o.update(targets=tuple(o['targets']), ray_args=tuple(o['ray_args'])); "
                "sys.exit(serve(ServeOptions(**o), say=lambda s: print(s, flush=True)))")
        self.proc = subprocess.Popen([sys.executable, "-c", code, json.dumps(opts)], env=env, cwd=ROOT, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.lines: list[str] = []
        self.serving = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())
            if "is serving" in line:
                self.serving.set()

    def wait_serving(self, timeout_s: float = 180) -> str:
        deadline = time.monotonic() + timeout_s
        while not self.serving.is_set():
            assert self.proc.poll() is None and time.monotonic() < deadline, "\n".join(self.lines[-20:])
            time.sleep(0.2)
        return next(ln for ln in self.lines if "is serving" in ln)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # what Ctrl-C or a service manager does: the node leaves
        try:
            return self.proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


@pytest.mark.slow
def test_a_one_host_lab_on_a_loopback_address(tmp_path):
    pytest.importorskip("ray")
    ray_tmp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short (socket paths)
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "RAY_USAGE_STATS_ENABLED": "0",
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
           "SPLITBENCH_LEASE_DIR": str(tmp_path / "leases"), "SPLITBENCH_DEVICE_CACHE": str(tmp_path / "cache")}
    port = _free_port()

    def ports() -> list[str]:
        return [f"--ray-client-server-port={_free_port()}", f"--dashboard-agent-listen-port={_free_port()}",
                f"--metrics-export-port={_free_port()}"]

    head = _Server(dict(head=True, port=port, targets=[], auth=False, node_ip=LOOPBACK, ray_args=ports()), env)
    host = None
    try:
        said = head.wait_serving()
        address = f"{LOOPBACK}:{port}"
        assert f"in the cluster at {address}" in said
        assert any(f"splitbench cluster join {address} --node-ip {LOOPBACK}" in ln for ln in head.lines)
        host = _Server(dict(head=False, address=address, targets=["cpu-1core:0"], auth=False, node_ip=LOOPBACK,
                            ray_args=ports()[1:]), env)
        assert "cpu-1core:0" in host.wait_serving()
        status = subprocess.run([sys.executable, "-m", "harness.cli", "cluster", "status", "--address", address,
                                 "--json"], env={**env, "RAY_AUTH_MODE": "disabled"}, cwd=ROOT, capture_output=True,
                                text=True, timeout=120)
        assert status.returncode == 0, status.stderr[-2000:]
        state = json.loads(status.stdout)
        alive = [h for h in state["hosts"] if h["alive"]]
        assert len(alive) == 2 and {h["address"] for h in alive} == {LOOPBACK}  # both nodes give the loopback
        assert [d["target"] for h in alive for d in h["devices"]] == ["cpu-1core:0"]
    finally:
        codes = [s.stop() for s in (host, head) if s is not None]
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert codes == [0] * len(codes)
