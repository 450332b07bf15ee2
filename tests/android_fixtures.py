"""Shared pieces of the Android tests: a loopback phone per test, the tool stand-ins as host
"binaries", the tiny model's artifacts (exported once per test process) and a job builder."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import pytest

from device_agents.base import ArtifactRef, MeasureJob
from tests.adb_server import AdbServer
from tests.agent_fixtures import INPUT_SHAPE, export_tiny
from tests.android_userland import ADB, ADB_SKIP_REASON, MISSING, SKIP_REASON
from tests.loopback_adb import LoopbackPhone, free_port, write_tool_wrappers

RUNS, WARMUP, WARM_LOADS = 6, 2, 1
# Fast settings for the loopback: short cool-down polls, a short link timeout (the heartbeat comes
# every poll interval, so 5 s of silence is a lost link).
FAST = {"cool_poll_s": 0.05, "cool_timeout_s": 1.0, "link_timeout_s": 5.0}


@functools.lru_cache(maxsize=None)
def tiny_artifact(backend: str) -> Path:
    """The tiny CNN exported for one backend, once per test process (ExecuTorch takes ~10 s)."""
    return export_tiny(backend, Path(tempfile.mkdtemp(prefix=f"splitbench-android-{backend}-")))


def artifact_ref(backend: str, path: Path | None = None, key: str | None = None) -> ArtifactRef:
    return ArtifactRef.from_path(path or tiny_artifact(backend), key=key or f"tiny-{backend}", backend=backend)


def job(device_path: str, backend: str, **kw) -> MeasureJob:
    kw = {"runs": RUNS, "warmup": WARMUP, "warm_loads": WARM_LOADS, "timeout_s": 120.0, **kw}
    return MeasureJob(artifact_path=device_path, backend=backend, input_shape=INPUT_SHAPE, **kw)


def alive(pid: int) -> bool:
    """Whether a process runs (a zombie does not)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return "zombie" not in f.read()
    except OSError:
        return False


needs_userland = pytest.mark.skipif(bool(MISSING), reason=SKIP_REASON)
needs_adb = pytest.mark.skipif(ADB is None, reason=ADB_SKIP_REASON)


@pytest.fixture(autouse=True)
def _adb_key(tmp_path_factory, monkeypatch):
    """Never touch the user's ~/.android: every test signs with a key of its own session. No adb server
    answers (a port nothing listens on) unless a test starts one: a developer's own server on 5037 is
    never asked."""
    key = tmp_path_factory.getbasetemp() / "adbkey" / "adbkey"
    monkeypatch.setenv("SPLITBENCH_ADB_KEY", str(key))
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(free_port()))
    for name in ("SPLITBENCH_ANDROID_TCP", "SPLITBENCH_ANDROID_TOOLS", "ADB_SERVER_SOCKET", "ANDROID_ADB_SERVER_ADDRESS"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def phone(tmp_path):
    if MISSING:
        pytest.skip(SKIP_REASON)
    with LoopbackPhone(tmp_path / "device") as p:
        yield p


@pytest.fixture(scope="session")
def adb_server(tmp_path_factory):
    """Google's adb server on a private port and HOME for the whole session, killed at its end."""
    if ADB is None:
        pytest.skip(ADB_SKIP_REASON)
    server = AdbServer(tmp_path_factory.mktemp("adb_home")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["direct", "server"])
def via(request, monkeypatch) -> str:
    """Each path to the phone in turn: adb-shell directly, and Google's adb server (``[android] via``)."""
    server = request.getfixturevalue("adb_server") if request.param == "server" else None
    if server is not None:
        monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(server.port))
    yield request.param
    if server is not None:
        server.adb("disconnect")  # the test's phones leave the shared server


@pytest.fixture(scope="session")
def tools(tmp_path_factory) -> dict[str, str]:
    """[android.tools]: the three stand-ins as host paths."""
    return {k: str(v) for k, v in write_tool_wrappers(tmp_path_factory.mktemp("host_tools")).items()}
