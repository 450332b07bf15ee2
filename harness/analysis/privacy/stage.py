"""The privacy stage of a run: ``privacy.csv`` beside the measurements, from the spec's ``[privacy]`` table.

``[privacy] csv`` is a table of scores the user computed (checked and copied); ``[privacy] data`` is an
.npz of inputs whose uploaded features are scored here by DPFE's noise sweep, for every precision of
``[export] precisions`` (an int8 part's feature computed by the int8 part itself, calibrated with the
export's ``calibration_samples`` and ``calibration_seed``). The demo writes its own sweep's table
through :func:`write_privacy_table` too.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.results.layout import PRIVACY_CSV
from harness.results.store import atomic_write_bytes

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from harness.config.spec import Spec


def privacy_table(spec: "Spec") -> "pd.DataFrame | None":
    """The privacy table the spec asks for (None when it has no ``[privacy]`` table)."""
    privacy = spec.privacy
    if not privacy:
        return None
    if "csv" in privacy:
        from harness.analysis.table import load_privacy

        return load_privacy(privacy["csv"])
    from harness.analysis.privacy.noise import PAPER_RATIOS
    from harness.analysis.privacy.sweep import sweep_from_spec

    calibration = None
    if any(p != "float32" for p in spec.export.precisions):  # int8 parts calibrated as the export calibrates them
        from harness.export.calibration import calibration_for

        calibration = calibration_for(spec)
    return sweep_from_spec(spec, privacy["data"], ratios=privacy.get("ratios", PAPER_RATIOS),
                           seed=privacy.get("seed", 0), calibration=calibration)


def write_privacy_table(out: str | Path, table: "pd.DataFrame") -> Path:
    """Write ``table`` as ``OUT/privacy.csv``, atomically; returns the path."""
    path = Path(out) / PRIVACY_CSV
    atomic_write_bytes(path, table.to_csv(index=False).encode())
    return path


def privacy_stage(spec: "Spec", out: str | Path) -> Any:
    """The post-run stage: write the spec's privacy table into OUT (nothing when the spec has none)."""
    table = privacy_table(spec)
    return None if table is None else write_privacy_table(out, table)
