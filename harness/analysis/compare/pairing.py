"""Reading the two sides and pairing their rows: which records are compared, which are listed alone, and
what makes two measurements different kinds of numbers (see :mod:`harness.analysis.compare`)."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any, Iterable, Sequence

from harness.analysis.compare.model import (COMPARED, DEFAULT_THRESHOLDS, DISTURBED, FAILED_NEW, METRIC, METRICS,
                                            NOT_COMPARABLE, ONLY_BASE, ONLY_NEW, PAIR_KEY, PROTOCOL_KEYS, Comparison,
                                            Options, PairComparison)
from harness.analysis.compare.significance import adjust, compare_metric
from harness.core.errors import UserError
from harness.results.layout import RECORDS_DIR
from harness.results.readers import read_manifest
from harness.results.records import SKIPPED, ResultRecord
from harness.results.stats import compute_stats
from harness.results.store import load_records, model_order


# --------------------------------------------------------------------------------------------------
# Reading and pairing


def _read_side(path: Path, which: str) -> tuple[list[ResultRecord], dict[str, Any]]:
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{which} {path}: no such results directory (give a directory written by `splitbench run`)")
    if not (path / RECORDS_DIR).is_dir():
        raise UserError(f"{which} {path}: not a results directory (no {RECORDS_DIR}/ inside); give the --out "
                        "directory of a `splitbench run`")
    try:
        manifest = read_manifest(path) or {}
    except UserError:  # only its commit is read here; the records are what is compared
        manifest = {}
    return load_records(path, latest_only=True), manifest


def _pair_key(r: ResultRecord) -> tuple[str, ...]:
    return tuple(getattr(r, k) for k in PAIR_KEY)


def _by_device(records: Iterable[ResultRecord]) -> dict[tuple, dict[str, tuple[ResultRecord, int]]]:
    """key -> device id -> (the newest record, how many older records of that row and device were set aside).

    One results directory can hold several identities of one row on one device (a run resumed after the
    model changed); the newest is the one a run of that directory stands for."""
    out: dict[tuple, dict[str, list[ResultRecord]]] = {}
    for r in records:
        out.setdefault(_pair_key(r), {}).setdefault(r.device_id, []).append(r)
    return {k: {d: (max(rs, key=lambda r: r.finished_at), len(rs) - 1) for d, rs in devs.items()}
            for k, devs in out.items()}


def _commit(manifest: dict[str, Any]) -> str | None:
    git = manifest.get("git") or {}
    commit = git.get("commit")
    if not commit:
        return None
    return commit[:12] + ("+dirty" if git.get("dirty") else "")


def compare_dirs(base: Path, new: Path, options: Options | None = None) -> Comparison:
    """Compare two results directories (see :mod:`harness.analysis.compare` for how each verdict is reached)."""
    base_records, base_manifest = _read_side(base, "BASE")
    new_records, new_manifest = _read_side(new, "NEW")
    return compare_records(base_records, new_records, options, base_dir=str(base), new_dir=str(new),
                           base_commit=_commit(base_manifest), new_commit=_commit(new_manifest))


def compare_records(base: Sequence[ResultRecord], new: Sequence[ResultRecord], options: Options | None = None, *,
                    base_dir: str = "BASE", new_dir: str = "NEW", base_commit: str | None = None,
                    new_commit: str | None = None) -> Comparison:
    """Compare two sets of records (the newest per identity of each results directory)."""
    options = options or Options()
    unknown = sorted(set(options.thresholds) - set(METRIC))
    if unknown:
        raise UserError(f"unknown metric {', '.join(unknown)} in the thresholds; metrics: {', '.join(METRIC)}")
    thresholds = {**DEFAULT_THRESHOLDS, **options.thresholds}
    options = dataclasses.replace(options, thresholds=thresholds)
    b_rows, n_rows = _by_device(base), _by_device(new)
    first: dict[tuple, ResultRecord] = {}
    for rows in (b_rows, n_rows):
        for key, devs in rows.items():
            for rec, _ in devs.values():
                first.setdefault(key, rec)
    pairs: list[PairComparison] = []
    for key in sorted(first, key=lambda k: model_order(first[k])):
        pairs.extend(_pair_row(key, b_rows.get(key, {}), n_rows.get(key, {}), options))
    pairs = adjust(pairs, options)
    tests = sum(m.p_value is not None for p in pairs for m in p.metrics)
    return Comparison(base_dir=base_dir, new_dir=new_dir, base_commit=base_commit, new_commit=new_commit,
                      options=options, pairs=tuple(pairs), tests=tests)


def _alone(rec: ResultRecord, status: str, note: str, dropped: int, by_device: bool = False) -> PairComparison:
    notes = [note] if note else []
    if dropped:
        notes.append(f"{dropped} older record(s) of this row on {rec.device_id} set aside (the newest is compared)")
    side = {"base_device": rec.device_id, "base_record": rec.record_key} if status == ONLY_BASE else \
        {"new_device": rec.device_id, "new_record": rec.record_key}
    return PairComparison(*_pair_key(rec), config=rec.config, status=status, notes=tuple(notes), by_device=by_device,
                          **side)


def _pair_row(key: tuple, base: dict[str, tuple[ResultRecord, int]], new: dict[str, tuple[ResultRecord, int]],
              options: Options) -> list[PairComparison]:
    """Pair the records of one row: one device on each side pairs whatever its id (CI hosts change); several
    devices pair by device id, and a device without its counterpart is listed on its side, saying why."""
    if not new:
        return [_alone(r, ONLY_BASE, "", d) for r, d in base.values()]
    if not base:
        return [_alone(r, ONLY_NEW, "", d) for r, d in new.values()]
    if len(base) == 1 and len(new) == 1:
        ((b, bd),), ((n, nd),) = base.values(), new.values()
        return [_compare_pair(b, n, options, bd, nd)]
    out = [dataclasses.replace(_compare_pair(base[d][0], new[d][0], options, base[d][1], new[d][1]), by_device=True)
           for d in base if d in new]
    why = (f"this row was measured on several devices ({len(base)} in BASE, {len(new)} in NEW); devices are paired "
           "by id, and this one has no counterpart")
    out += [_alone(r, ONLY_BASE, why, dd, True) for d, (r, dd) in base.items() if d not in new]
    out += [_alone(r, ONLY_NEW, why, dd, True) for d, (r, dd) in new.items() if d not in base]
    return out


def _differences(b: ResultRecord, n: ResultRecord) -> list[str]:
    """What makes the two records different kinds of numbers: device essentials, runtime, threads, protocol."""
    out = []
    bd = {k: v for k, v in (b.device or {}).items() if k != "runtime_versions"}
    nd = {k: v for k, v in (n.device or {}).items() if k != "runtime_versions"}
    if not bd or not nd:  # a job that never reached a device (its export failed) has no fingerprint
        bd = nd = {}
    # runtime_versions lists every runtime and converter of the host; the row's own runtime is compared
    # below, and a converter upgrade is a change to measure, not a different device.
    for k in sorted(set(bd) | set(nd)):
        if bd.get(k) != nd.get(k):
            out.append(f"device {k}: {bd.get(k)!r} -> {nd.get(k)!r}")
    bi, ni = b.identity, n.identity
    if bi.runtime_version != ni.runtime_version:
        out.append(f"runtime {bi.runtime_version!r} -> {ni.runtime_version!r}")
    if bi.threads != ni.threads:
        out.append(f"threads {bi.threads} -> {ni.threads}")
    bj, nj = b.job or {}, n.job or {}
    if bj and nj:
        for k in PROTOCOL_KEYS:
            if bj.get(k) != nj.get(k):
                out.append(f"protocol {k}: {bj.get(k)} -> {nj.get(k)}")
    return out


def _changes(b: ResultRecord, n: ResultRecord) -> list[str]:
    """What changed in what was measured: the point of the comparison, shown, never a reason to refuse."""
    bi, ni = b.identity, n.identity
    out = []
    for attr, what in (("model_definition", "model definition"), ("weights", "weights"),
                       ("reduced_dim", "reduced dims"), ("artifact_key", "artifact")):
        if getattr(bi, attr) != getattr(ni, attr):
            out.append(what)
    if bi.device_id != ni.device_id:
        out.append(f"device id {bi.device_id} -> {ni.device_id}")
    return out


def _compare_pair(b: ResultRecord, n: ResultRecord, options: Options, b_dropped: int = 0,
                  n_dropped: int = 0) -> PairComparison:
    notes = [f"{c} older record(s) of this row on {r.device_id} in {side} set aside (the newest is compared)"
             for c, r, side in ((b_dropped, b, "BASE"), (n_dropped, n, "NEW")) if c]
    common = dict(model=b.model, cut=b.cut, embedding=b.embedding, precision=b.precision, backend=b.backend,
                  target=b.target, accelerator=b.accelerator,
                  config=b.config, base_device=b.device_id, new_device=n.device_id, base_record=b.record_key,
                  new_record=n.record_key, changes=tuple(_changes(b, n)))
    differences = _differences(b, n)
    if differences and not options.allow_device_change:
        return PairComparison(**common, status=NOT_COMPARABLE, differences=tuple(differences),
                              notes=tuple(notes + ["compare anyway with --allow-device-change"]))
    if b.status == SKIPPED or n.status == SKIPPED:
        side, rec = ("BASE", b) if b.status == SKIPPED else ("NEW", n)
        return PairComparison(**common, status=NOT_COMPARABLE, differences=tuple(differences),
                              marked=bool(differences), notes=(*notes, f"skipped in {side}: {_first(rec.reason)}"))
    if b.ok and not n.ok:
        return PairComparison(**common, status=FAILED_NEW, differences=tuple(differences), marked=bool(differences),
                              notes=tuple(notes + [f"measured in BASE, {n.status} in NEW: {_first(n.reason)}"]))
    if not b.ok:
        what = f"{b.status} in BASE: {_first(b.reason)}" + ("" if n.ok else f"; {n.status} in NEW: {_first(n.reason)}")
        return PairComparison(**common, status=NOT_COMPARABLE, differences=tuple(differences),
                              marked=bool(differences), notes=tuple(notes + [what]))
    seed = int(hashlib.sha256("/".join(_pair_key(b)).encode()).hexdigest()[:8], 16)
    disturbed = "; ".join(f"{side}'s core was shared (the worker got {share:.0%} of its timed runs' wall time)"
                          for side, share in (("BASE", _core_share(b)), ("NEW", _core_share(n))) if share is not None)
    metrics = tuple(compare_metric(m, b, n, options, seed + i, disturbed) for i, m in enumerate(METRICS))
    return PairComparison(**common, status=COMPARED, differences=tuple(differences), marked=bool(differences),
                          metrics=metrics, notes=tuple(notes))


def _first(reason: str) -> str:
    text = (reason or "").strip()
    return text.splitlines()[0] if text else "no reason given"


def _core_share(r: ResultRecord) -> float | None:
    for w in compute_stats(r).warnings:
        if w.code == DISTURBED:
            return w.value
    return None
