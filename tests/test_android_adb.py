"""Google's ``adb`` against the loopback phone, so that the loopback cannot drift from what a real adbd
speaks: the adb server (on a private port and HOME) connects to it, ``adb shell`` gets the exit code
and stderr apart (``shell_v2``) and feeds stdin, ``adb exec-out`` runs, ``adb push``/``pull`` move the
bytes, a directory pull walks ``LIST``; the phone's shell is mksh with toybox only. Then the agent's
choice of path (``[android] via``) with that server running."""

from __future__ import annotations

import subprocess

import pytest

from device_agents.android import agent as A
from device_agents.android.links import DIRECT, SERVER, choose
from device_agents.android.transport import parse_target
from device_agents.base import AgentError
from tests.android_fixtures import FAST, _adb_key, needs_adb, needs_userland, phone  # noqa: F401

pytestmark = [needs_userland, needs_adb]


def test_googles_adb_speaks_with_the_loopback_phone(phone, adb_server, tmp_path):
    serial = phone.address
    assert "connected to" in adb_server.connect(serial)
    assert adb_server.devices()[serial] == "device"
    adb = lambda *a, **kw: adb_server.adb("-s", serial, *a, **kw)  # noqa: E731
    assert "shell_v2" in adb("features").stdout.split()
    r = adb("shell", "echo out; echo err >&2; exit 3", stdin=subprocess.DEVNULL)
    assert (r.stdout, r.stderr, r.returncode) == ("out\n", "err\n", 3)  # shell_v2: the code, stderr apart
    r = adb("shell", "read line; echo got:$line", input="hello\n")
    assert r.stdout == "got:hello\n" and r.returncode == 0  # stdin reaches the command, then closes
    r = adb("exec-out", "echo raw; ls /no-such-dir")  # exec: raw, stdout and stderr merged, no code
    assert r.stdout.startswith("raw\n") and "No such file or directory" in r.stdout and r.returncode == 0
    # the phone's userland: mksh as sh, toybox's commands, nothing of this host's /bin or /usr/bin
    r = adb("shell", "echo $KSH_VERSION; readlink -f $(command -v ls); command -v bash || echo no-bash",
            stdin=subprocess.DEVNULL)
    ksh, ls, bash = r.stdout.split("\n")[:3]
    assert "MIRBSD KSH" in ksh and ls.endswith("toybox") and bash == "no-bash"

    data = bytes(range(256)) * 1000
    (tmp_path / "in.bin").write_bytes(data)
    r = adb("push", str(tmp_path / "in.bin"), "/data/local/tmp/dir/in.bin")
    assert r.returncode == 0, r.stderr
    assert phone.device_path("/data/local/tmp/dir/in.bin").read_bytes() == data
    assert adb("pull", "/data/local/tmp/dir/in.bin", str(tmp_path / "out.bin")).returncode == 0
    assert (tmp_path / "out.bin").read_bytes() == data
    r = adb("pull", "/data/local/tmp/dir", str(tmp_path / "pulled"))  # LIST, with "." and ".." skipped
    assert r.returncode == 0 and [p.name for p in (tmp_path / "pulled").iterdir()] == ["in.bin"]
    r = adb("pull", "/data/local/tmp/missing", str(tmp_path / "x"))
    assert r.returncode != 0 and "does not exist" in r.stdout + r.stderr  # adb STATs it first (all zeros)
    phone.set_full()
    r = adb("push", str(tmp_path / "in.bin"), "/data/local/tmp/other.bin")
    assert r.returncode != 0 and "No space left on device" in r.stdout + r.stderr  # the phone's FAIL message


def test_auto_goes_through_the_server_when_it_lists_the_phone(phone, adb_server, tools, monkeypatch):
    address = parse_target(f"android:{phone.address}")
    monkeypatch.setenv("SPLITBENCH_ANDROID_TCP", phone.address)
    (found,) = A.discover(**FAST)
    assert found.fingerprint["now"]["via"] == "direct (adb-shell over TCP)"  # no server here
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(adb_server.port))
    assert choose(address, "auto").path == DIRECT  # the server runs, but does not list the phone
    adb_server.connect(phone.address)
    try:
        assert choose(address, "auto").path == SERVER
        (found,) = A.discover(**FAST)  # once, on the server's path (SPLITBENCH_ANDROID_TCP names it too)
        assert found.fingerprint["now"]["via"] == f"adb server 127.0.0.1:{adb_server.port}"
        checks = {c.name: c for c in A.doctor(f"android:{phone.address}", probe_artifacts={}, **FAST)}
        assert checks["adb server"].ok and f"{phone.address} (device)" in checks["adb server"].detail
        assert checks["path"].detail.startswith(f"adb server 127.0.0.1:{adb_server.port}")
        assert "adb key" not in checks  # the server's key, not splitbench's
        # ADB_SERVER_SOCKET wins over ANDROID_ADB_SERVER_PORT, as for Google's client
        monkeypatch.setenv("ADB_SERVER_SOCKET", f"tcp:localhost:{adb_server.port}")
        monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", "1")
        with A.agent_for(f"android:{phone.address}", **FAST) as a:
            assert a.link.via == f"adb server 127.0.0.1:{adb_server.port}"
            assert a.describe().device_id == phone.serial
    finally:
        adb_server.adb("disconnect")


def test_via_server_with_no_server_is_one_line(phone):
    with pytest.raises(AgentError, match=r'via = "server", but no adb server answers on 127\.0\.0\.1:\d+'):
        A.agent_for(f"android:{phone.address}", via="server", **FAST).open()
    with pytest.raises(AgentError, match="via must be one of"):
        A.agent_for(f"android:{phone.address}", via="usb")
    checks = {c.name: c for c in A.doctor(f"android:{phone.address}", via="server", **FAST)}
    assert checks["adb server"].ok is False and "none answers" in checks["adb server"].detail
