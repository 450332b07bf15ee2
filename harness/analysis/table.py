"""The merged table: a run's ``summary.csv`` with one estimator's privacy scores and the cloud part.

`recommend`, the trade-off figures and the report all read this table (:func:`load_table`, or
:func:`merge_table` on tables already read): the summary's rows joined to ``privacy.csv``
(:func:`merge_privacy`), or shaped like a merged table when nothing was scored (:func:`without_privacy`),
plus ``cloud_ms`` from ``cloud.csv`` when the run has one (:func:`attach_cloud`).

The join key is (model, cut, embedding, precision), and the noise ratio when the privacy table has one:
a measured configuration then appears once per ratio. Its phone measurement is the same on every such
row, because the noise of DPFE's Procedure 2 is added to the feature after the phone part has run
(the summary times that phone part, not the noise); only privacy and accuracy change with the ratio.

Precision: an int8 phone part uploads another feature than the float32 part of the same cut, so its
privacy and accuracy are its own (the privacy sweep scores the int8 part's feature). A privacy table
without a ``precision`` column (a user's table, or one written before int8 existed) holds float32
scores, and so does a summary without one; float32 scores never stand for an int8 measurement: an
int8 row with no int8 privacy row is named like any unscored configuration (the report then shows the
run without privacy; ``recommend`` stops with that line), never filled with the float32 numbers.

Nothing is dropped silently: a privacy row with no measurement, or a measured cut with no privacy
score, is named in one :class:`UserError`.

One estimator at a time: every privacy row names the estimator that scored it (column
``estimator``; a user's table without that column is ``unspecified``), and numbers of different
estimators are never joined, compared or plotted as one series. When a table holds several, the
caller picks one (:func:`select_estimator`): the one asked for, else the table's only one, else the
spec's, else the default ``splitbench``; anything else is one :class:`UserError` line.

On-premise rows (``cut == "full"``) need no privacy row: nothing leaves the phone but the model's
output, so there is no feature to score. They are kept once per precision (``noise_ratio`` NaN), with
every privacy column NaN and ``on_premise`` True, as the cost baseline of the plots, the report and
``recommend``. Their ``primary_accuracy`` comes from a ``full`` privacy row of the same precision when
the table has one; for float32, else from a noise-free float32 ``simple`` cut of the same model (the
split network with no noise and no PCA computes the same function as the whole one); else it stays
NaN. An int8 whole model is not an int8 cut with a float32 cloud part, so int8 has no such fallback
(the privacy sweep writes the int8 whole model's accuracy in a ``full`` row).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.core.errors import UserError
from harness.config.spec import FULL, PRECISIONS
from harness.core.text import cell, visible
from harness.results.layout import CLOUD_CSV, PRIVACY_CSV, SUMMARY_CSV
from harness.results.readers import read_cloud, read_csv, read_manifest, read_summary

KEY = ("model", "cut", "embedding")
PRECISION = "precision"
FLOAT32 = "float32"  # the precision of a table without a precision column
JOIN = (*KEY, PRECISION)  # what a privacy row and a measurement are matched on (plus the noise ratio)
# Required in a privacy table: the key and the measure `recommend` ranks by (DPFE's log-rank privacy).
REQUIRED_PRIVACY_COLUMNS = (*KEY, "log_rank_privacy")
# Filled with NaN when a user's table leaves them out.
OPTIONAL_PRIVACY_COLUMNS = ("noise_ratio", "primary_accuracy", "rank_privacy", "bayes_error", "rank_mean",
                            "rank_std", "nn1_error", "attacker_accuracy", "n_classes")
PRIVACY_VALUE_COLUMNS = tuple(c for c in (*REQUIRED_PRIVACY_COLUMNS, *OPTIONAL_PRIVACY_COLUMNS) if c not in KEY)
# The valid range of each score (harness.analysis.privacy.scores defines them): (low, high, integer). An
# empty cell is a configuration the estimator did not score; anything else outside the range is refused.
UNIT = (0.0, 1.0, False)
PRIVACY_RANGES = {"log_rank_privacy": UNIT, "rank_privacy": UNIT, "bayes_error": UNIT, "rank_mean": UNIT,
                  "rank_std": UNIT, "nn1_error": UNIT, "attacker_accuracy": UNIT, "primary_accuracy": UNIT,
                  "noise_ratio": (0.0, None, False), "n_classes": (2.0, None, True)}
ESTIMATOR = "estimator"
UNSPECIFIED = "unspecified"  # the estimator of a user's table that does not say
DEFAULT_ESTIMATOR = "splitbench"  # harness.analysis.privacy's default (not imported: this module stays light)
_MAX_NAMED = 12  # keys listed in one error message before "... and N more"


def _check_columns(df: pd.DataFrame, required: tuple[str, ...], what: str) -> None:
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise UserError(f"{what} lacks column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                        f"(it has: {', '.join(map(str, df.columns))})")


def normalize_privacy(privacy: pd.DataFrame, origin: str = "the privacy table") -> pd.DataFrame:
    """Check a privacy table's columns and types; add the optional columns as NaN; one row per key."""
    _check_columns(privacy, REQUIRED_PRIVACY_COLUMNS, origin)
    df = privacy.copy()
    for col in KEY:
        df[col] = df[col].astype(str).str.strip()
    if ESTIMATOR not in df.columns:
        df[ESTIMATOR] = UNSPECIFIED
    df[ESTIMATOR] = df[ESTIMATOR].fillna(UNSPECIFIED).astype(str).str.strip().replace("", UNSPECIFIED)
    # A table without a precision column keeps it absent (its scores are float32's, and the merge says
    # so when an int8 measurement finds none); one that has it gets float32 in its empty cells.
    if PRECISION in df.columns:
        df[PRECISION] = with_precision(df)[PRECISION]
        unknown = ~df[PRECISION].isin(PRECISIONS)
        if unknown.any():
            row = int(np.flatnonzero(unknown.to_numpy())[0])
            raise UserError(f"{visible(origin)}: column precision must be {' or '.join(PRECISIONS)} (empty: float32), "
                            f"row {row + 2} holds {cell(df[PRECISION].iloc[row])}")
    for col in OPTIONAL_PRIVACY_COLUMNS:
        if col not in df.columns:
            df[col] = np.nan
    for col in PRIVACY_VALUE_COLUMNS:
        df[col] = _checked_scores(df[col], col, origin)
    has_ratio = df["noise_ratio"].notna().any()
    if has_ratio and df["noise_ratio"].isna().any():
        raise UserError(f"{origin}: noise_ratio is empty on some rows but not others; give every row a ratio "
                        f"(0 for no noise)")
    key = [*JOIN, "noise_ratio", ESTIMATOR] if has_ratio else [*JOIN, ESTIMATOR]
    keyed = with_precision(df)
    dup = keyed.duplicated(key, keep=False)
    if dup.any():
        names = sorted({f"{_key_name(r, has_ratio)} ({r[ESTIMATOR]})" for r in keyed[dup].to_dict("records")})
        raise UserError(f"{origin}: duplicated privacy rows for {_list(names)}; keep one row per key")
    return df


def _range_text(low: float, high: float | None, integer: bool) -> str:
    kind = "an integer" if integer else "a number"
    return f"{kind} in [{low:g}, {high:g}]" if high is not None else f"{kind} >= {low:g}"


def _checked_scores(cells: pd.Series, col: str, origin: str) -> pd.Series:
    """One column of scores as floats: each cell empty (not scored) or a finite number in the column's range;
    else one UserError naming the file, the column and the row."""
    low, high, integer = PRIVACY_RANGES[col]
    values = pd.to_numeric(cells, errors="coerce")
    number = values.to_numpy(dtype=float, na_value=np.nan)
    with np.errstate(invalid="ignore"):
        # a float's last bit (a mean of log K / log K) is not out of range
        wrong = ~np.isfinite(number) | (number < low - 1e-9) | ((number > high + 1e-9) if high is not None else False)
        if integer:
            wrong |= np.isfinite(number) & (number != np.round(number))
    bad = cells.notna().to_numpy() & wrong
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        kind = "numeric, " if np.isnan(number[row]) else ""
        raise UserError(f"{visible(origin)}: column {col} must be {kind}{_range_text(low, high, integer)}; row "
                        f"{row + 2} holds {cell(cells.iloc[row])} (leave the cell empty where nothing was scored)")
    return values.astype(float)


def with_precision(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with a clean ``precision`` column: float32 where the table has none or leaves it empty."""
    df = table.copy()
    if PRECISION not in df.columns:
        df[PRECISION] = FLOAT32
    df[PRECISION] = df[PRECISION].fillna(FLOAT32).astype(str).str.strip().replace("", FLOAT32)
    return df


def estimators_of(privacy: pd.DataFrame) -> list[str]:
    """The estimators of a normalised privacy table, in table order."""
    return list(dict.fromkeys(privacy[ESTIMATOR].astype(str)))


def select_estimator(privacy: pd.DataFrame, estimator: str | None = None, *, preferred: str | None = None,
                     origin: str = "the privacy table") -> tuple[pd.DataFrame, str]:
    """The rows of one estimator and its name: ``estimator`` if given, else the only one, else
    ``preferred`` (the spec's), else ``splitbench``; otherwise one UserError line saying how to choose."""
    names = estimators_of(privacy)
    if estimator is not None:
        if estimator not in names:
            raise UserError(f"{origin} holds no scores of the {estimator} estimator (it has: {', '.join(names)}); "
                            "score with it or choose one of those")
        chosen = estimator
    elif len(names) == 1:
        chosen = names[0]
    elif preferred in names:
        chosen = preferred
    elif DEFAULT_ESTIMATOR in names:
        chosen = DEFAULT_ESTIMATOR
    else:
        raise UserError(f"{origin} holds scores of {len(names)} estimators ({', '.join(names)}), which are never "
                        "compared as one: choose one (e.g. `splitbench recommend DIR --estimator "
                        f"{names[0]}`)")
    return privacy[privacy[ESTIMATOR] == chosen], chosen


def load_privacy(path: str | Path) -> pd.DataFrame:
    """Read and validate a privacy CSV (``DIR/privacy.csv`` for a results directory)."""
    path = Path(path)
    if path.is_dir():
        path = path / PRIVACY_CSV
    if not path.is_file():
        raise UserError(f"no privacy scores at {visible(path)}: run `splitbench demo`, or write a CSV with columns "
                        f"{', '.join(REQUIRED_PRIVACY_COLUMNS)} there")
    # Only an empty cell is a missing score: "nan", "inf" or "NA" written in a cell are refused by name.
    df = read_csv(path, fix="write one row per configuration with the columns " + ", ".join(REQUIRED_PRIVACY_COLUMNS),
                  keep_default_na=False, na_values=[""])
    return normalize_privacy(df, visible(path))


def _key_name(row: dict, with_ratio: bool) -> str:
    name = "/".join(str(row[k]) for k in KEY)
    if row.get(PRECISION, FLOAT32) != FLOAT32:
        name += f" {row[PRECISION]}"
    if with_ratio and pd.notna(row.get("noise_ratio")):
        name += f" r={row['noise_ratio']:g}"
    return name


def _list(names: list[str]) -> str:
    shown = ", ".join(names[:_MAX_NAMED])
    return shown + (f" ... and {len(names) - _MAX_NAMED} more" if len(names) > _MAX_NAMED else "")


def merge_privacy(summary: pd.DataFrame, privacy: pd.DataFrame, estimator: str | None = None, *,
                  preferred: str | None = None) -> pd.DataFrame:
    """Join one estimator's privacy scores to summary rows on (model, cut, embedding, precision[, noise_ratio]).

    ``estimator`` and ``preferred``: see :func:`select_estimator`. A table without a ``precision``
    column is float32 (see the module docstring). Returns the summary's columns plus the privacy
    columns (``estimator`` among them; NaN on-premise, which has no score; another column both tables
    have, such as ``warnings``, is the summary's, the privacy table's copy ``privacy_<name>``) and
    ``on_premise``; a summary row appears once per noise ratio of its key. Raises :class:`UserError`
    naming every unmatched key, both ways.
    """
    _check_columns(summary, KEY, SUMMARY_CSV)
    stated = PRECISION in privacy.columns
    priv, _ = select_estimator(normalize_privacy(privacy), estimator, preferred=preferred)
    priv = with_precision(priv)
    meas = with_precision(summary)
    for col in KEY:
        meas[col] = meas[col].astype(str).str.strip()
    clash = [c for c in (*PRIVACY_VALUE_COLUMNS, ESTIMATOR) if c in meas.columns]
    meas = meas.drop(columns=clash)
    meas["on_premise"] = meas["cut"] == FULL
    meas["_row"] = np.arange(len(meas))  # keep the summary's order (model order), ratios ascending within

    priv_full = priv[priv["cut"] == FULL]
    priv_cut = priv[priv["cut"] != FULL]
    meas_keys = _keys(meas.loc[~meas["on_premise"]])
    priv_keys = _keys(priv_cut)
    full_keys = set(map(tuple, meas.loc[meas["on_premise"], ["model", PRECISION]].drop_duplicates().to_numpy()))
    problems = []
    no_measure = sorted(priv_keys - meas_keys) + sorted(
        (m, FULL, FULL, p) for m, p in set(map(tuple, priv_full[["model", PRECISION]].to_numpy())) - full_keys)
    if no_measure:
        problems.append(f"privacy rows with no measurement: {_list([_name(k) for k in no_measure])}")
    no_privacy = sorted(meas_keys - priv_keys)
    if no_privacy:
        problems.append(f"measured configurations with no privacy score: {_list([_name(k) for k in no_privacy])}")
        if not stated and any(k[3] != FLOAT32 for k in no_privacy):
            problems.append("the privacy table has no precision column, so its scores are float32's and never stand "
                            "for another precision: score those parts (the [privacy] data sweep scores every "
                            "precision of [export] precisions) or add their rows with a precision column")
    if problems:
        raise UserError("privacy scores do not match the measurements (keyed by model/cut/embedding and precision): "
                        + "; ".join(problems))

    # a column of both tables besides the scores (warnings, reduced_dim): the measurement keeps its name,
    # the privacy table's copy is prefixed, never a pandas "_x"/"_y" pair
    both = [c for c in priv_cut.columns if c in meas.columns and c not in JOIN]
    priv_cut = priv_cut.rename(columns={c: f"privacy_{c}" for c in both})
    cuts = meas[~meas["on_premise"]].merge(priv_cut, on=list(JOIN), how="inner", validate="many_to_many")
    full = meas[meas["on_premise"]].copy()
    for col in (*PRIVACY_VALUE_COLUMNS, ESTIMATOR):
        full[col] = np.nan
    for (model, precision), rows in full.groupby(["model", PRECISION]).groups.items():
        full.loc[rows, "primary_accuracy"] = _baseline_accuracy(priv, model, precision)
    merged = pd.concat([cuts, full], ignore_index=True, sort=False)
    merged = merged.sort_values(["_row", "noise_ratio"], kind="stable", na_position="first")
    return merged.drop(columns="_row").reset_index(drop=True)


def _keys(df: pd.DataFrame) -> set[tuple[str, ...]]:
    return set(map(tuple, df[list(JOIN)].drop_duplicates().to_numpy()))


def _name(key: tuple[str, ...]) -> str:
    """``model/cut/embedding``, then the precision when it is not float32."""
    *parts, precision = key
    return "/".join(parts) + ("" if precision == FLOAT32 else f" {precision}")


def _baseline_accuracy(priv: pd.DataFrame, model: str, precision: str) -> float:
    """Accuracy of the whole model in ``precision``: its ``full`` privacy row; for float32, else a noise-free
    float32 simple cut (the same function). An int8 cut runs a float32 cloud part: never the int8 model's."""
    mine = priv[(priv["model"] == model) & (priv[PRECISION] == precision)]
    rows = mine[mine["cut"] == FULL]["primary_accuracy"].dropna()
    if len(rows):
        return float(rows.iloc[0])
    if precision != FLOAT32:
        return float("nan")
    ratio0 = mine["noise_ratio"].isna() | (mine["noise_ratio"] == 0)
    rows = mine[(mine["embedding"] == "simple") & ratio0]["primary_accuracy"].dropna()
    return float(rows.median()) if len(rows) else float("nan")


def config_label(row: dict | pd.Series, *, with_ratio: bool = True) -> str:
    """Readable name of a merged row: ``conv5_1-reduced``, ``full``, `` int8`` after it for an int8 part, plus
    `` r=0.5`` for a noisy one."""
    cut, emb = row["cut"], row["embedding"]
    name = row.get("config") if isinstance(row.get("config"), str) and row.get("config") else (
        FULL if cut == FULL else f"{cut}-{emb}")
    precision = row.get("precision")
    if isinstance(precision, str) and precision and precision != "float32":
        name += f" {precision}"
    ratio = row.get("noise_ratio")
    if with_ratio and ratio is not None and pd.notna(ratio) and ratio > 0:
        name += f" r={ratio:g}"
    return name


# ------------------------------------------------------------------------------------ the run's table


def spec_table(results_dir: str | Path, name: str) -> dict[str, Any]:
    """The run's spec's ``[name]`` table from DIR/manifest.json ({} when the run recorded none). A manifest that
    cannot be read is one UserError line: its spec's [budget] would otherwise be replaced by the default
    silently."""
    manifest = read_manifest(results_dir) or {}
    spec = manifest.get("spec")
    table = spec.get(name) if isinstance(spec, dict) else None
    return table if isinstance(table, dict) else {}


def spec_estimator(results_dir: str | Path) -> str | None:
    """The run's spec's ``[privacy] estimator`` from DIR/manifest.json (None when it names none)."""
    value = spec_table(results_dir, "privacy").get("estimator")
    return value if isinstance(value, str) else None


def load_table(results_dir: str | Path, estimator: str | None = None) -> pd.DataFrame:
    """summary.csv of DIR merged with one estimator's rows of DIR/privacy.csv, plus ``cloud_ms`` from
    DIR/cloud.csv if present (``estimator``: see :func:`select_estimator`)."""
    d = Path(results_dir)
    summary = read_summary(d)
    if not (d / PRIVACY_CSV).is_file():
        if estimator is not None:
            raise UserError(f"--estimator {estimator}: {visible(d)} has no {PRIVACY_CSV}, so nothing was scored")
        return attach_cloud(without_privacy(summary), d / CLOUD_CSV)
    return merge_table(d, summary, load_privacy(d), estimator)


def merge_table(results_dir: str | Path, summary: pd.DataFrame, privacy: pd.DataFrame,
                estimator: str | None = None) -> pd.DataFrame:
    """:func:`load_table` on tables already read: ``summary`` merged with ``privacy`` (one estimator's rows,
    the spec's preferred), plus ``cloud_ms`` from DIR/cloud.csv."""
    merged = merge_privacy(summary, privacy, estimator, preferred=spec_estimator(results_dir))
    return attach_cloud(merged, Path(results_dir) / CLOUD_CSV)


def without_privacy(summary: pd.DataFrame) -> pd.DataFrame:
    """A summary shaped like a merged table when nothing was scored: privacy columns empty, on_premise set.
    `choose` then picks by cost alone and says privacy was not scored."""
    table = summary.copy()
    for col in KEY:
        table[col] = table[col].astype(str).str.strip()
    for col in PRIVACY_VALUE_COLUMNS:
        table[col] = float("nan")
    table["estimator"] = None
    table["on_premise"] = table["cut"] == FULL
    return table


def attach_cloud(table: pd.DataFrame, cloud_csv: Path | None) -> pd.DataFrame:
    """Add ``cloud_ms`` (0 on-premise) from a cloud CSV; without the file (or with None) the column is NaN
    everywhere."""
    table = table.drop(columns=[c for c in ("cloud_ms",) if c in table.columns])
    if cloud_csv is None or not cloud_csv.is_file():
        table["cloud_ms"] = float("nan")
        return table
    cloud = read_cloud(cloud_csv)
    cloud = cloud[[*KEY, "cloud_ms"]].drop_duplicates(list(KEY), keep="last")
    for col in KEY:
        cloud[col] = cloud[col].astype(str)
    out = table.merge(cloud, on=list(KEY), how="left")
    out.loc[out["on_premise"], "cloud_ms"] = 0.0
    lacking = out[out["cloud_ms"].isna()][list(KEY)].drop_duplicates()
    if len(lacking):
        names = ", ".join("/".join(map(str, k)) for k in lacking.to_numpy())
        raise UserError(f"{visible(cloud_csv)} has no cloud_ms for {visible(names)}; time them or remove the file")
    return out
