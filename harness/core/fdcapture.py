"""Capture what a converter prints: file descriptors 1 and 2 (Python, C++ and tqdm alike) into a log file."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def capture_fds(log_path: Path) -> Iterator[None]:
    """Send everything written to file descriptors 1 and 2 (Python, C++ and tqdm alike) to a log.

    Converters print progress trees, warnings and bars; the CLI's own output stays clean, and
    the log keeps them for when a conversion fails.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    saved = (os.dup(1), os.dup(2))
    try:
        with open(log_path, "ab") as log:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            try:
                yield
            finally:
                for stream in (sys.stdout, sys.stderr):
                    with contextlib.suppress(Exception):
                        stream.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    finally:
        os.close(saved[0])
        os.close(saved[1])
