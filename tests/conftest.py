"""The suite's one rule about its environment: CI has every system package the tests use, so no test of the
Android userland, Google's adb or headless Chromium is skipped there (outside CI they skip, saying why)."""

from __future__ import annotations

import os
import shutil
import signal

import pytest

# The session's one Google adb server and one set of tool stand-ins. Imported here, not in each test
# module: a session fixture imported into four modules becomes four fixtures, and four adb servers ran.
from tests.android_fixtures import adb_server, tools  # noqa: F401 - fixtures

SYSTEM_COMMANDS = ("chromium", "mksh", "toybox", "adb")  # `make test` installs them (make system-packages)


def pytest_sessionstart(session: pytest.Session) -> None:
    if os.environ.get("CI", "").lower() not in ("true", "1", "yes"):
        return
    missing = [cmd for cmd in SYSTEM_COMMANDS if shutil.which(cmd) is None]
    if missing:
        raise pytest.UsageError(f"CI is missing {', '.join(missing)}: `make test` installs them (make system-packages); "
                                "their tests must run in CI, not skip")


@pytest.fixture
def ctrl_c_raises():
    """Ctrl-C (SIGINT, or ``_thread.interrupt_main``) raises KeyboardInterrupt in this test however pytest
    was started: a shell's background job, ``nohup`` or some CI runners start it with SIGINT ignored,
    where neither would reach the code under test."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
