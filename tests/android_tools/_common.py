"""What the three tool stand-ins share: the loopback's misbehaviour knobs, line output, runtimes.

A stand-in runs the real artifact with this host's runtime (loaded and held to one thread as in
``device_agents/local/worker.py``) and prints exactly what the real tool prints, line by line and
flushed, so a crash leaves the lines before it in the output file, as a C++ ``std::endl`` does.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

STATE = Path(os.environ.get("LOOPBACK_STATE", "."))


class Output:
    """Lines to a stream; after ``after_lines`` lines the loopback's knob may hang or crash the tool."""

    def __init__(self, tool: str, argv: list[str] | None = None):
        try:
            knob = json.loads((STATE / f"behaviour_{tool}").read_text())
        except (OSError, ValueError):
            knob = {}
        if argv is not None and any(a.lstrip("-") in ("help", "h") for a in argv):
            knob = {}  # asking a tool for its flags never hangs or crashes it
        self.behaviour = knob.get("behaviour", "ok")
        self.after_lines = int(knob.get("after_lines", 3))
        self.count = 0

    def line(self, text: str, stream=None) -> None:
        stream = stream or sys.stdout
        stream.write(text + "\n")
        stream.flush()
        self.tick()

    def tick(self) -> None:
        """One more line written (here or elsewhere, e.g. to the loopback's logcat); maybe misbehave."""
        self.count += 1
        if self.count == self.after_lines:
            if self.behaviour == "hang":
                while True:
                    time.sleep(3600)
            if self.behaviour == "crash":
                os.kill(os.getpid(), signal.SIGSEGV)


def knob(tool: str) -> dict:
    """The loopback's ``accelerators_<tool>`` knob: what this build of the tool has and what its delegates do."""
    try:
        return json.loads((STATE / f"accelerators_{tool}").read_text())
    except (OSError, ValueError):
        return {}


def logcat_line(out: Output, level: str, tag: str, message: str) -> None:
    """One ``__android_log_print`` line, as ``logcat -v threadtime`` shows it, in the loopback's logcat."""
    stamp = time.strftime("%m-%d %H:%M:%S", time.localtime()) + f".{int(time.time() * 1000) % 1000:03d}"
    with open(STATE / "logcat" / f"{os.getpid()}.log", "a") as f:
        f.write(f"{stamp} {os.getpid():5d} {os.getpid():5d} {level} {tag}: {message}\n")
    out.tick()


def cpp_double(v: float) -> str:
    """A double through a default C++ ostream: ``%g`` with 6 significant digits (``nan``, ``1e+06``)."""
    return "%g" % v


def max_rss_kb() -> int:
    """getrusage(RUSAGE_SELF).ru_maxrss: KB on Linux, what the tools read for their memory figures."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def single_thread_torch():
    import torch

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    return torch
