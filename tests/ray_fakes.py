"""Scripted devices for the Ray tests, opened inside a Ray worker through a registration's ``opener``.

``open_fake("fake:c1", slow_s=0.2)`` is a :class:`tests.fakes.FakeAgent` whose device id is its target;
the options (``slow_s``, ``vanish_after``, ``script``) come from the host's registration.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from tests.fakes import FakeAgent

OPENER = "tests.ray_fakes:open_fake"
ROOT = Path(__file__).resolve().parent.parent


def lab_env(folder: Path, prefix: str) -> dict[str, str]:
    """The environment of a test's Ray lab, which its node processes inherit: token authentication with a
    token of its own, a short RAY_TMPDIR (socket paths) that is not /tmp/ray, its own lease and device-cache
    folders, and this checkout on PYTHONPATH (its workers import splitbench from here)."""
    token = folder / "auth_token"
    token.write_text("splitbench-test-token-" + prefix * 12)
    return {
        "RAY_TMPDIR": tempfile.mkdtemp(prefix=prefix, dir="/tmp"),
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
        "SPLITBENCH_LEASE_DIR": str(folder / "leases"),
        "SPLITBENCH_DEVICE_CACHE": str(folder / "device-cache"),
        "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token), "RAY_USAGE_STATS_ENABLED": "0",
    }


def reload_ray_auth() -> None:
    """Make this process's Ray see the authentication variables as they are now (what ``ray`` does itself
    when ``ray.init`` turns token authentication on)."""
    from ray._raylet import AuthenticationTokenLoader, Config

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


def open_fake(target: str, **options: Any) -> FakeAgent:
    return FakeAgent(target="fake", device_id=target, **options)
