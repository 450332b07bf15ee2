"""SIGTERM and SIGHUP end a command as Ctrl-C does: the records written so far are kept, the results directory's
lock is released, one closing line is printed and the exit code is ``INTERRUPTED`` (130), so a cancelled CI
job or a closed terminal leaves a directory that ``--resume`` completes (without this, Python dies at once with
143 or 129 and no closing line)."""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


class Terminated(KeyboardInterrupt):
    """The process was asked to stop by a signal other than SIGINT; handled exactly as Ctrl-C."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signal_name = signal.Signals(signum).name


def _raise(signum: int, _frame) -> None:
    raise Terminated(signum)


@contextlib.contextmanager
def signals_as_interrupt() -> Iterator[None]:
    """Within this block, SIGTERM and SIGHUP raise :class:`Terminated` (a KeyboardInterrupt) in the main thread.
    The previous handlers come back afterwards. Outside the main thread (where Python allows no handler), nothing
    changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _raise) for s in SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
