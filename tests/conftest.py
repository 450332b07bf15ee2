"""The suite's one rule about its environment: CI has every system package the tests use, so no test of the
Android userland, Google's adb or headless Chromium is skipped there (outside CI they skip, saying why)."""

from __future__ import annotations

import os
import shutil

import pytest

SYSTEM_COMMANDS = ("chromium", "mksh", "toybox", "adb")  # `make test` installs them (make system-packages)


def pytest_sessionstart(session: pytest.Session) -> None:
    if os.environ.get("CI", "").lower() not in ("true", "1", "yes"):
        return
    missing = [cmd for cmd in SYSTEM_COMMANDS if shutil.which(cmd) is None]
    if missing:
        raise pytest.UsageError(f"CI is missing {', '.join(missing)}: `make test` installs them (make system-packages); "
                                "their tests must run in CI, not skip")
