"""The two adb transports against the loopback device, each with its real client: ``adb-shell`` directly,
and ``adbutils`` through Google's adb server: exit codes, files with hostile names, a silent command
told apart from a lost link, unplug and replug, a full phone; then the direct path's handshake (with
and without the phone asking to allow this computer's key)."""

from __future__ import annotations

import shlex

import pytest

from device_agents.android import adb_direct as D
from device_agents.android import transport as T
from device_agents.android.adb_server import ServerAddress, ServerLink
from device_agents.base import AgentError, DeviceUnavailable
from tests.android_fixtures import _adb_key, needs_userland, phone, via  # noqa: F401 - fixtures
from tests.loopback_adb import LoopbackPhone, free_port

HOSTILE = "/data/local/tmp/it's \"a\" name with $(touch PWNED); `id` & spaces/file 1.bin"
pytestmark = needs_userland


def link_to(p: LoopbackPhone, via: str = "direct", **kw) -> T.Link:
    kw.setdefault("link_timeout_s", 3.0)
    address = T.Address("tcp", host="127.0.0.1", port=p.port)
    if via == "server":
        link = ServerLink(address, server=ServerAddress.from_env(), **kw)
    else:
        link = D.DirectLink(address, **kw)
    link.connect()
    return link


def test_shell_returns_output_and_exit_code(phone, via):
    link = link_to(phone, via)
    assert link.shell("echo hi; false") == ("hi\n", 1)
    assert link.shell("printf 'no newline'") == ("no newline", 0)
    assert link.shell("getprop ro.serialno").output.strip() == phone.serial
    assert link.shell("echo out; echo err >&2").output.splitlines() in (["out", "err"], ["err", "out"])
    if via == "server":  # shell_v2 carries the status in its own packet: even an `exit` reports it
        assert link.shell("exit 3").exit_code == 3
    else:
        with pytest.raises(T.RemoteError, match="exit status"):  # an `exit` skips the marker
            link.shell("exit 3")
    with pytest.raises(T.RemoteError, match="exited with 5"):
        link.check("echo no; (exit 5)")
    link.close()


def test_push_pull_stat_with_hostile_names(phone, via, tmp_path):
    link = link_to(phone, via)
    data = bytes(range(256)) * 1200  # 300 kB: several sync DATA chunks
    src = tmp_path / "a b'c"
    src.write_bytes(data)
    link.check("mkdir -p " + shlex.quote(HOSTILE.rsplit("/", 1)[0]))
    link.push(src, HOSTILE, 0o640)
    mode, size, _ = link.stat(HOSTILE)
    assert size == len(data) and mode & 0o777 == 0o640
    assert link.pull_bytes(HOSTILE) == data
    assert phone.device_path(HOSTILE).read_bytes() == data  # it landed inside the device root
    assert link.stat("/data/local/tmp/missing") == (0, 0, 0)
    with pytest.raises(T.RemoteError):
        link.pull_bytes("/data/local/tmp/missing")
    assert not list(phone.root.rglob("PWNED*"))
    phone.set_full()
    with pytest.raises(T.DeviceFull, match="No space left"):
        link.push(src, "/data/local/tmp/other.bin")
    link.close()


def test_a_silent_command_is_told_apart_from_a_lost_link(phone, via):
    link = link_to(phone, via)
    with pytest.raises(T.ShellTimeout):
        link.shell("sleep 3", timeout_s=0.5)  # prints nothing: trips the read timeout, but the phone answers
    assert link.shell("echo still here").output == "still here\n"
    phone.unplug_when(r"sleep 20", after_s=0.3)
    with pytest.raises(DeviceUnavailable) as err:
        list(link.stream("echo start; sleep 20"))
    assert err.value.device_id == link.device_id
    # the closed socket itself is seen (not a read timeout after adb_shell spun on recv() == b"")
    assert "closed" in err.value.reason and "read timeout" not in err.value.reason
    with pytest.raises(DeviceUnavailable):
        link.shell("echo x")  # refused while unplugged
    phone.replug()
    assert link.shell("echo back").output == "back\n"  # the link reconnects by itself
    link.close()


def test_the_phone_asks_to_allow_a_new_key(tmp_path):
    lines: list[str] = []
    with LoopbackPhone(tmp_path / "device", require_auth=True) as p:
        link = link_to(p, notify=lines.append)
        assert link.shell("echo ok").output == "ok\n"
        assert any("accept the prompt on the phone" in ln for ln in lines)
        assert p.read_state("adb_keys").strip()  # the "Allow" stored our key
        lines.clear()
        link.connect()  # a second connection signs the token with the now-trusted key: no prompt
        assert not any("accept the prompt" in ln for ln in lines)
        link.close()


def test_a_key_never_allowed_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(D, "AUTH_TIMEOUT_S", 0.5)
    with LoopbackPhone(tmp_path / "device", require_auth=True, accept_new_keys=False) as p:
        with pytest.raises(AgentError, match="did not allow this computer"):
            link_to(p, notify=lambda s: None)


def test_a_phone_that_is_not_there_is_unavailable():
    port = free_port()
    with pytest.raises(DeviceUnavailable, match="cannot connect"):
        D.DirectLink(T.Address("tcp", host="127.0.0.1", port=port), link_timeout_s=2).connect()


def test_a_phone_older_than_shell_v2_through_the_server(tmp_path, adb_server, monkeypatch):
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(adb_server.port))
    with LoopbackPhone(tmp_path / "device", features=()) as p:  # Android 6 and older: no shell_v2
        try:
            link = link_to(p, "server")
            assert link.shell("echo hi; false") == ("hi\n", 1)  # the marker line, as on the direct path
            assert list(link.stream("echo a; echo b")) == ["a", "b"]
            link.close()
        finally:
            adb_server.adb("disconnect")
