"""Every table of a results directory read in one place, each with its check.

`report`, `recommend`, the figures and `compare` read ``summary.csv``, ``samples.parquet``, ``cloud.csv``
and ``manifest.json`` through these readers (``privacy.csv`` is read and checked by
:func:`harness.analysis.table.load_privacy`, through :func:`read_csv`). A file that is missing, empty,
not the format its name says, or not the table splitbench writes is one :class:`UserError` line naming the
file and the fix, never a parser's traceback: the tables are derived from ``records/``, so
``splitbench run SPEC --out DIR --resume`` rebuilds them. Paths are opened by Python, not handed to
pyarrow as text, so a directory whose name is not UTF-8 reads like any other.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.core.errors import UserError
from harness.core.text import cell, visible
from harness.results.layout import MANIFEST_JSON, SAMPLES_PARQUET, SUMMARY_CSV

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

# What every consumer of summary.csv reads: the row's identity and its status.
SUMMARY_REQUIRED = ("model", "cut", "embedding", "backend", "target", "status")
# The numbers of summary.csv (results.tables writes them): a cell is empty or a finite number.
SUMMARY_NUMBERS = ("n_runs", "infer_ms_median", "infer_ms_p90", "infer_ms_iqr", "infer_ms_min", "load_ms_cold",
                   "load_ms_warm", "mem_model_mb", "mem_peak_mb", "cpu_ms", "params", "macs", "upload_bytes",
                   "artifact_bytes", "max_rel_err", "infer_ms_mean", "infer_ms_std", "infer_ms_p5", "infer_ms_p95",
                   "infer_ms_max", "first_infer_ms", "compile_ms", "order", "reduced_dim", "max_abs_err", "flops",
                   "mac_share", "uss_mb", "load_warm_n")
SAMPLES_REQUIRED = ("config", "backend", "target", "infer_ms")
CLOUD_REQUIRED = ("model", "cut", "embedding", "cloud_ms")


def rebuild(results_dir: str | Path) -> str:
    """The fix of a table that cannot be read: the tables are derived from the records."""
    return f"`splitbench run SPEC --out {visible(results_dir)} --resume` rebuilds it from the records"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return visible(line.split("'<Buffer>': ", 1)[-1])  # pyarrow names the buffer it was given, not the file


def read_csv(path: Path, *, fix: str, **options: Any) -> "pd.DataFrame":
    """A CSV file as a frame; a missing, empty, binary or malformed file is one UserError naming it and ``fix``."""
    import pandas as pd

    try:
        with open(path, "rb") as f:
            return pd.read_csv(f, **options)
    except pd.errors.EmptyDataError:
        raise UserError(f"{visible(path)} is empty: {fix}") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise UserError(f"{visible(path)} is not a readable CSV table ({_first_line(exc)}): {fix}") from None
    except OSError as exc:
        raise UserError(f"cannot read {visible(path)} ({exc.strerror or _first_line(exc)}): {fix}") from None


def check_columns(frame: "pd.DataFrame", required: tuple[str, ...], path: Path, fix: str) -> None:
    missing = [c for c in required if c not in frame.columns]
    if missing:
        have = ", ".join(visible(c) for c in list(frame.columns)[:12]) or "none"
        raise UserError(f"{visible(path)} lacks column{'s' if len(missing) > 1 else ''} {', '.join(missing)} (it has "
                        f"{have}): {fix}")


def check_numbers(frame: "pd.DataFrame", columns: tuple[str, ...], path: Path, fix: str) -> None:
    """Each present column holds finite numbers or empty cells: else one line naming the column and row."""
    import pandas as pd

    for col in columns:
        if col not in frame.columns:
            continue
        values = pd.to_numeric(frame[col], errors="coerce")
        bad = (frame[col].notna() & values.isna()) | values.isin([math.inf, -math.inf])
        if bad.any():
            row = int(bad.to_numpy().nonzero()[0][0])
            raise UserError(f"{visible(path)}: column {col}, row {row + 2} holds {cell(frame[col].iloc[row])}, "
                            f"not a finite number: {fix}")
        frame[col] = values


def read_summary(results_dir: str | Path) -> "pd.DataFrame":
    """``DIR/summary.csv``, checked: it exists, parses, has the identity columns and a row, and its numbers
    are numbers."""
    d = Path(results_dir)
    path = d / SUMMARY_CSV
    if not path.is_file():
        raise UserError(f"{visible(d)} holds no {SUMMARY_CSV}: give a results directory written by `splitbench run` "
                        f"(`splitbench run SPEC --out {visible(d)}` writes one)")
    fix = rebuild(d)
    summary = read_csv(path, fix=fix)
    check_columns(summary, SUMMARY_REQUIRED, path, f"not a {SUMMARY_CSV} of splitbench; {fix}")
    if summary.empty:
        raise UserError(f"{visible(path)} has no rows: nothing was measured")
    check_numbers(summary, SUMMARY_NUMBERS, path, fix)
    return summary


def read_samples(results_dir: str | Path) -> "pd.DataFrame":
    """``DIR/samples.parquet`` (one row per timed run), checked; an empty frame when the run wrote none."""
    import pandas as pd

    path = Path(results_dir) / SAMPLES_PARQUET
    fix = rebuild(results_dir)
    if not path.is_file():
        return pd.DataFrame(columns=["config", "backend", "target", "phase", "infer_ms"])
    try:
        with open(path, "rb") as f:
            samples = pd.read_parquet(f)
    except OSError as exc:
        raise UserError(f"cannot read {visible(path)} ({exc.strerror or _first_line(exc)}): {fix}") from None
    except Exception as exc:  # noqa: BLE001 - pyarrow's errors (ArrowInvalid, ...) share no base worth naming
        raise UserError(f"{visible(path)} is not a readable Parquet file ({_first_line(exc)}): {fix}") from None
    check_columns(samples, SAMPLES_REQUIRED, path, f"not a {SAMPLES_PARQUET} of splitbench; {fix}")
    check_numbers(samples, ("infer_ms",), path, fix)
    return samples


def read_cloud(cloud_csv: Path) -> "pd.DataFrame":
    """``cloud.csv`` (the cloud part of each cut, timed on the run's host), checked."""
    fix = (f"`splitbench run SPEC --out {visible(cloud_csv.parent)} --resume` times the cloud parts again (or remove "
           "the file: the latency then leaves the cloud part out)")
    cloud = read_csv(cloud_csv, fix=fix)
    check_columns(cloud, CLOUD_REQUIRED, cloud_csv, fix)
    check_numbers(cloud, ("cloud_ms",), cloud_csv, fix)
    return cloud


def read_manifest(results_dir: str | Path) -> dict[str, Any] | None:
    """``DIR/manifest.json`` as a dict (None when there is none); a file that is not a JSON object is one
    UserError line."""
    path = Path(results_dir) / MANIFEST_JSON
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_bytes())
    except OSError as exc:
        raise UserError(f"cannot read {visible(path)} ({exc.strerror or _first_line(exc)})") from None
    except ValueError as exc:  # JSONDecodeError, or bytes that are not UTF-8
        raise UserError(f"{visible(path)} is not valid JSON ({_first_line(exc)}); the run rewrites it: "
                        f"`splitbench run SPEC --out {visible(results_dir)} --resume`") from None
    if not isinstance(data, dict):
        raise UserError(f"{visible(path)} is not a manifest of splitbench (a JSON {type(data).__name__}, not an object)")
    return data
