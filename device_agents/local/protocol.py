"""The messages between the host and a device-side worker: JSON lines, one object per line.

Every message carries the protocol version ``v`` and a ``type``. The same framing is meant for
every transport (a local pipe now, an ``adb shell`` stream later), so nothing here knows how
the bytes travel.

The worker is started with its CPU and backend on the command line, and serves jobs until the
host closes its stdin.

Host -> worker (stdin, one message per line):
    job       {"job": MeasureJob.to_dict(), "memory_cap_b": int | null}
Worker -> host (the channel fd):
    hello     {"pid", "pinned_cpus", "python", "runtime": {name: version}, "import_ns"}  once, after
              the pin and the runtime's import
    started   {"phase": "cold" | "warm", "index", "pid"}   a measuring child was forked
    loaded    {"phase", "pid"}   sent by the cold child itself once the model is loaded,
              before the first inference (lets the host watch or kill it while it runs)
    result    {"result": MeasureResult.to_dict()}   the last message of a job
    error     {"reason", "fatal"}   the job could not be run (bad job); fatal: the worker could not
              start (the runtime does not import) and exits

History of PROTOCOL_VERSION:
    1  first version (hello, started, loaded, result, error; one job on the worker's stdin).
    2  one worker per backend serves many jobs (one per stdin line); CPU and backend on its command
       line; hello carries import_ns; error carries fatal; results in contract v2's shape.
"""

from __future__ import annotations

import json
from typing import Any

PROTOCOL_VERSION = 2

JOB = "job"
HELLO = "hello"
STARTED = "started"
LOADED = "loaded"
RESULT = "result"
ERROR = "error"
MESSAGE_TYPES = (JOB, HELLO, STARTED, LOADED, RESULT, ERROR)

# A message is written with a single write(); below PIPE_BUF (4096 on Linux) a pipe write is
# atomic, which is what lets the cold child and the worker share the host channel safely.
# Result messages can be longer; only the worker writes them, after its children have exited.


class ProtocolError(Exception):
    """A line that is not a message of this protocol version."""


def encode(msg_type: str, **fields: Any) -> bytes:
    """One message as a JSON line."""
    if msg_type not in MESSAGE_TYPES:
        raise ProtocolError(f"unknown message type {msg_type!r}")
    body = {"v": PROTOCOL_VERSION, "type": msg_type, **fields}
    return (json.dumps(body, separators=(",", ":")) + "\n").encode()


def decode(line: bytes | str) -> dict[str, Any]:
    """Parse one line; check the version and the type."""
    try:
        msg = json.loads(line)
    except ValueError as exc:
        raise ProtocolError(f"not a JSON line: {line[:200]!r}") from exc
    if not isinstance(msg, dict):
        raise ProtocolError(f"not a JSON object: {line[:200]!r}")
    if msg.get("v") != PROTOCOL_VERSION:
        raise ProtocolError(f"protocol version {msg.get('v')!r}, expected {PROTOCOL_VERSION} "
                            "(host and worker come from different splitbench versions)")
    if msg.get("type") not in MESSAGE_TYPES:
        raise ProtocolError(f"unknown message type {msg.get('type')!r}")
    return msg
