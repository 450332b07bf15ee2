"""The wall clock of records and manifests: one UTC timestamp format for every stage.

(Durations are never taken from this clock: the device side times with ``perf_counter_ns`` and the host
with ``time.monotonic``.)
"""

from __future__ import annotations

import datetime as _dt


def utc_now() -> str:
    """Now, in UTC, as ISO 8601 with microseconds (``2026-12-06T12:27:27.123456+00:00``)."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds")
