"""Scripted devices for the Ray tests, opened inside a Ray worker through a registration's ``opener``.

``open_fake("fake:c1", slow_s=0.2)`` is a :class:`tests.fakes.FakeAgent` whose device id is its target;
the options (``slow_s``, ``vanish_after``, ``script``) come from the host's registration.
"""

from __future__ import annotations

from typing import Any

from tests.fakes import FakeAgent

OPENER = "tests.ray_fakes:open_fake"


def open_fake(target: str, **options: Any) -> FakeAgent:
    return FakeAgent(target="fake", device_id=target, **options)
