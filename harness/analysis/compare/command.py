"""`splitbench compare BASE NEW`: the command (see :mod:`harness.analysis.compare`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Sequence, TextIO

from harness.analysis.compare.model import ALPHA, Options, parse_thresholds
from harness.analysis.compare.pairing import compare_dirs
from harness.analysis.compare.render import render_markdown, render_table, to_json
from harness.core.errors import UserError

FORMATS = ("table", "md", "json")


def compare(base: Path, new: Path, *, fmt: str = "table", thresholds: Sequence[str] = (),
            allow_device_change: bool = False, alpha: float = ALPHA, out: TextIO | None = None) -> int:
    """`splitbench compare`: write the comparison of BASE and NEW in ``fmt`` to ``out``; return the exit code."""
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt}: unknown format; formats: {', '.join(FORMATS)}")
    if not 0 < alpha < 1:
        raise UserError(f"--alpha {alpha}: give a false-alarm rate between 0 and 1, e.g. 0.01")
    options = Options(thresholds=parse_thresholds(thresholds), alpha=alpha, allow_device_change=allow_device_change)
    comparison = compare_dirs(base, new, options)
    stream = out or sys.stdout
    if fmt == "json":
        stream.write(json.dumps(to_json(comparison), indent=2) + "\n")
    elif fmt == "md":
        stream.write(render_markdown(comparison))
    else:
        render_table(comparison, stream)
    return comparison.exit_code
