"""Calibration of `splitbench compare`: how often it cries wolf, how often it sees a real slowdown, and the
noise its default thresholds (harness.analysis.compare.DEFAULT_THRESHOLDS) come from. Written to
results/benchmarks/compare.json.

- real: the CI profile (examples/ci_smoke.toml) run REPEATS times on this host, same code, each run a
  `splitbench run` in a new process from a warm export cache (its wall time is the "under 3 minutes"
  figure; beside it, the time from its first job's start to its last job's end, and whether it waited for
  a device lease another run held), interleaved with two runs of the same spec whose model is 30% wider
  (examples/ci_model.py copied with WIDTH = 1.3: same model name, cuts and input; more channels in every
  layer, as a commit would make it). Order B W B B W B B, so drift on the shared machine hits both alike.
  Then:
  - every pair of same-code runs compared, both ways (20 comparisons): how many exit 7 (false alarms),
    and the noise each metric showed (max(r, 1/r) - 1 over the rows, r = NEW / BASE), apart for jobs
    whose core was shared (the core_shared warning: compare does not judge their times);
  - each wide run against the base runs beside it (4 comparisons): the exit code, the configurations
    named, and the ratio each metric showed;
  - suggested thresholds: per metric, the smallest step of THRESHOLD_LADDER above the largest noise seen
    (at least 10% for timings, asv's factor), beside the defaults in the code.
- synthetic: rows of 60 timed runs drawn (with replacement) from the timed runs of one real record of those
  runs, picked at random, scaled to its median, so each synthetic row has this machine's spread and
  outliers; 9 rows per comparison, as the CI profile. Same distribution on both sides: the share of
  comparisons with any significant inference test (the test's own false-alarm rate over the comparison,
  should stay under alpha) and with a regression (exit 7). One row of 9 slowed by 5, 10, 15, 20, 30%:
  how often its median test is significant, and how often compare calls it slower (that also needs the
  ratio past the threshold). Drawn twice: from the records compare judges (no core_shared warning) and
  from all records, the disturbed ones' bursts included; the synthetic rows carry no CPU-share reading,
  so here the statistics alone face those bursts.

Environment: SPLITBENCH_BENCH_COMPARE_REPEATS (default 5), SPLITBENCH_BENCH_COMPARE_SYNTHETIC (comparisons
per scenario, default 1000).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "results" / "benchmarks"
SPEC = ROOT / "examples" / "ci_smoke.toml"
MODEL = ROOT / "examples" / "ci_model.py"
REPEATS = int(os.environ.get("SPLITBENCH_BENCH_COMPARE_REPEATS", 5))
SYNTHETIC = int(os.environ.get("SPLITBENCH_BENCH_COMPARE_SYNTHETIC", 1000))
WIDER = 1.3
SLOWDOWNS = (1.05, 1.10, 1.15, 1.20, 1.30)
ROWS = 9  # the CI profile: 2 cuts + on-premise, x 3 backends
RUNS = 60
TIMING_FLOOR = 0.10  # asv's default factor: no timing threshold below it
CI_BUDGET_S = 180.0


# -- the two variants of the CI profile ------------------------------------------------------------
def _variant(where: Path, width: float) -> Path:
    """A copy of the CI spec and its model file with WIDTH set; returns the spec's path."""
    where.mkdir(parents=True, exist_ok=True)
    text = MODEL.read_text()
    if "WIDTH = 1.0\n" not in text:
        raise RuntimeError(f"{MODEL} has no 'WIDTH = 1.0' line to change")
    (where / MODEL.name).write_text(text.replace("WIDTH = 1.0\n", f"WIDTH = {width}\n"))
    shutil.copy(SPEC, where / SPEC.name)
    return where / SPEC.name


def _cli(*args: str, timeout_s: float = 1800) -> tuple[int, float, str]:
    """One splitbench command in a new process, as CI runs it: (exit code, wall seconds, stderr tail)."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=timeout_s)
    return done.returncode, time.perf_counter() - start, done.stderr[-2000:]


def _measuring_s(out: Path) -> float:
    """From the first job's start to the last job's end: the wall time of a run without the wait for the
    device lease (held by other runs on a shared host) and without the report built after it."""
    from datetime import datetime

    from harness.results.store import load_records

    records = load_records(out)
    start = min(datetime.fromisoformat(r.started_at) for r in records)
    end = max(datetime.fromisoformat(r.finished_at) for r in records)
    return (end - start).total_seconds()


def _ratio_noise(r: float | None) -> float | None:
    """How far a same-code ratio is from 1, in either direction: max(r, 1/r) - 1."""
    if r is None or r <= 0:
        return None
    return max(r, 1 / r) - 1


def _ladder(noise: float, floor: float = 0.0) -> float:
    from harness.analysis.compare import THRESHOLD_LADDER

    for step in THRESHOLD_LADDER:
        if step > noise and step >= floor:
            return step
    return THRESHOLD_LADDER[-1]


def _spread(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    values = sorted(values)
    return {"n": len(values), "median": statistics.median(values),
            "p95": values[min(len(values) - 1, int(round(0.95 * (len(values) - 1))))], "max": values[-1]}


def real() -> dict:
    from harness.analysis.compare import DEFAULT_THRESHOLDS, METRICS, Options, compare_dirs

    work = OUT / "compare_runs"
    if work.exists():
        shutil.rmtree(work)
    base_spec, wide_spec = _variant(work / "spec_base", 1.0), _variant(work / "spec_wide", WIDER)
    exports = {}
    for name, spec in (("base", base_spec), ("wide", wide_spec)):
        code, wall, err = _cli("export", str(spec))  # warm the cache: the run's figure is from a warm cache
        if code != 0:
            raise RuntimeError(f"export of the {name} variant failed (exit {code}): {err}")
        exports[name] = round(wall, 1)
    order = []
    for i in range(REPEATS):  # B W B B W B B: each wide run between two base runs
        order += ["base", "wide"] if i in (0, 2) else ["base"]
    runs: dict[str, list[Path]] = {"base": [], "wide": []}
    sequence, walls, in_order, measuring, waited = [], {"base": [], "wide": []}, [], [], []
    for i, kind in enumerate(order):
        out = work / f"{i + 1}_{kind}"
        code, wall, err = _cli("run", str(base_spec if kind == "base" else wide_spec), "--out", str(out))
        if code != 0:
            raise RuntimeError(f"run {i + 1} ({kind}) exited {code}: {err}")
        runs[kind].append(out)
        walls[kind].append(round(wall, 1))
        in_order.append(wall)
        measuring.append(round(_measuring_s(out), 1))
        waited.append("waiting for device" in err)  # another engineer's run held the device lease
        sequence.append(out.name)

    same_pairs = list(itertools.permutations(runs["base"], 2))
    noise: dict[str, list[float]] = {m.name: [] for m in METRICS}
    noise_disturbed: dict[str, list[float]] = {m.name: [] for m in METRICS}
    disturbed_rows = 0
    same = []
    for a, b in same_pairs:
        c = compare_dirs(a, b, Options())
        same.append({"base": a.name, "new": b.name, "exit_code": c.exit_code, "regressions": [
            f"{p.name} {m.metric} {m.ratio:.3g}" if m else f"{p.name} failed" for p, m in c.regressions]})
        if a.name > b.name:
            continue  # the noise of each unordered pair once
        for p in c.pairs:
            for m in p.metrics:
                d = _ratio_noise(m.ratio)
                if d is None:
                    continue
                if m.disturbed:  # compare does not judge these: their noise is reported apart
                    noise_disturbed[m.metric].append(d)
                    disturbed_rows += m.metric == "infer_median"
                else:
                    noise[m.metric].append(d)

    wide = []
    pairs = []
    for w in runs["wide"]:
        # the base runs right before and after this wide run in the sequence
        pos = sequence.index(w.name)
        neighbours = [work / sequence[j] for j in (pos - 1, pos + 1) if 0 <= j < len(sequence)
                      and sequence[j].endswith("_base")]
        pairs += [(b, w) for b in neighbours]
    for b, w in pairs:
        c = compare_dirs(b, w, Options())
        ratios: dict[str, list[float]] = {}
        for p in c.pairs:
            for m in p.metrics:
                if m.ratio is not None:
                    ratios.setdefault(m.metric, []).append(m.ratio)
        wide.append({"base": b.name, "new": w.name, "exit_code": c.exit_code,
                     "configurations_named": sorted({p.name for p, _ in c.regressions}),
                     "regressions_by_metric": {k: sum(1 for _, m in c.regressions if m and m.metric == k)
                                               for k in noise},
                     "median_ratio_by_metric": {k: statistics.median(v) for k, v in ratios.items()}})

    suggested: dict[str, float | None] = {}
    for m in METRICS:
        if not noise[m.name]:
            suggested[m.name] = None  # no judged pair (every job's core was shared): nothing to suggest from
            continue
        seen = max(noise[m.name])
        floor = TIMING_FLOOR if m.unit == "ms" else 0.0
        suggested[m.name] = 0.0 if m.name == "upload_bytes" and seen == 0 else _ladder(seen, floor)
    if max(noise["artifact_bytes"], default=0.0) == 0:
        suggested["artifact_bytes"] = DEFAULT_THRESHOLDS["artifact_bytes"]  # exact: the 1% metadata allowance
    # In-sample check of the suggestion (the same runs it came from; a rerun is the out-of-sample test).
    usable = {k: v for k, v in suggested.items() if v is not None}
    with_suggested = [compare_dirs(a, b, Options(thresholds=usable, bootstrap_resamples=0)).exit_code
                      for a, b in same_pairs]
    return {
        "spec": str(SPEC.relative_to(ROOT)), "wider": f"examples/ci_model.py with WIDTH = {WIDER}",
        "sequence": sequence, "export_s": exports, "run_wall_s": walls,
        "run_wall_s_median": statistics.median(walls["base"] + walls["wide"]), "run_budget_s": CI_BUDGET_S,
        "within_budget": max(walls["base"] + walls["wide"]) < CI_BUDGET_S,
        "within_budget_without_waiting": max((w for w, wait in zip(in_order, waited) if not wait),
                                             default=0.0) < CI_BUDGET_S,
        "measuring_s": measuring, "runs_that_waited_for_the_device": sum(waited),
        "same_code": {"comparisons": len(same), "false_alarms": sum(s["exit_code"] == 7 for s in same),
                      "exit_codes": [s["exit_code"] for s in same],
                      "false_alarm_rows": [r for s in same for r in s["regressions"]]},
        "noise": {k: _spread(v) for k, v in noise.items()},
        "noise_of_disturbed_rows": {k: _spread(v) for k, v in noise_disturbed.items()},
        "row_pairs": len(noise["artifact_bytes"]), "disturbed_row_pairs": disturbed_rows,
        "wider_model": {"comparisons": wide, "detected": sum(w["exit_code"] == 7 for w in wide)},
        "suggested_thresholds": suggested, "default_thresholds": dict(DEFAULT_THRESHOLDS),
        "false_alarms_with_suggested_thresholds": sum(code == 7 for code in with_suggested),
        "defaults_cover_noise": {k: DEFAULT_THRESHOLDS[k] >= max(v) if v else None for k, v in noise.items()},
        "runs": [str(p.relative_to(ROOT)) for p in runs["base"] + runs["wide"]],
    }


# -- synthetic -------------------------------------------------------------------------------------
def _pools(dirs: list[Path]) -> dict[str, list]:
    """Every ok record's timed runs divided by their median (this machine's shapes, outliers included): the
    records compare judges (the worker had its core: no core_shared warning) and all of them."""
    import numpy as np

    from harness.results.stats import compute_stats
    from harness.results.store import load_records

    pools: dict[str, list] = {"clean_records": [], "all_records": []}
    for d in dirs:
        for r in load_records(d, latest_only=True):
            x = np.asarray(r.result.get("infer_ns") or (), dtype=float)
            if not r.ok or x.size < 10:
                continue
            pools["all_records"].append(x / np.median(x))
            if not any(w.code == "core_shared" for w in compute_stats(r).warnings):
                pools["clean_records"].append(x / np.median(x))
    return pools


def _record(template, name: str, infer_ns):
    return dataclasses.replace(template, record_key=name, config=name,
                               identity=dataclasses.replace(template.identity, cut=name),
                               result={**template.result, "infer_ns": [int(v) for v in infer_ns]})


def _synthetic_pool(pool: list, rng) -> dict:
    from harness.analysis.compare import ALPHA, Options, compare_records
    from harness.results.records import Identity, ResultRecord

    template = ResultRecord(
        record_key="", identity=Identity("synthetic", "d", "seed:0", "", "simple", None, "onnx", "a", "cpu-1core",
                                         "local:x", "rt 1", 1, None),
        config="", order=0, artifact_path=None, artifact_bytes=1000, costs={"upload_bytes": 100},
        job={"runs": RUNS, "warmup": 5, "warm_loads": 0, "seed": 0, "input_shape": [1]},
        result={"status": "ok", "infer_ns": [], "load_cold_ns": 1_000_000, "cold_method": "fadvise_dontneed",
                "memory": [{"method": "vmhwm_in_process", "before_load_b": 0, "peak_b": 10_000_000}]},
        device={"cpu_model": "x"})
    options = Options(bootstrap_resamples=0)  # verdicts do not use the intervals
    level_ns = 2_000_000.0

    def one(slow_row: int | None, factor: float):
        base, new = [], []
        for row in range(ROWS):
            shape = pool[rng.integers(len(pool))]
            b = rng.choice(shape, RUNS) * level_ns
            n = rng.choice(shape, RUNS) * level_ns * (factor if row == slow_row else 1.0)
            base.append(_record(template, f"row{row}", b))
            new.append(_record(template, f"row{row}", n))
        return compare_records(base, new, options)

    def significant(c, row: str | None = None, metric: str | None = None) -> bool:
        return any(m.p_adjusted is not None and m.p_adjusted < ALPHA for p in c.pairs for m in p.metrics
                   if (row is None or p.config == row) and (metric is None or m.metric == metric))

    same = [one(None, 1.0) for _ in range(SYNTHETIC)]
    result = {
        "records": len(pool), "comparisons": SYNTHETIC,
        "same_distribution": {
            "any_significant_test": sum(significant(c) for c in same) / SYNTHETIC,
            "false_alarm_rate": sum(c.exit_code == 7 for c in same) / SYNTHETIC,
        },
        "slowdown_of_one_row": {},
    }
    for factor in SLOWDOWNS:
        runs = [one(0, factor) for _ in range(max(SYNTHETIC // 2, 1))]
        result["slowdown_of_one_row"][f"{factor:.2f}"] = {
            "comparisons": len(runs),
            "median_significant": sum(significant(c, "row0", "infer_median") for c in runs) / len(runs),
            "detected_slower": sum(any(m.metric == "infer_median" and m.verdict == "slower" for p in c.pairs
                                       if p.config == "row0" for m in p.metrics) for c in runs) / len(runs),
            "false_alarm_in_other_rows": sum(any(m.regression for p in c.pairs if p.config != "row0"
                                                 for m in p.metrics) for c in runs) / len(runs),
            # what other thresholds would have called it (significant and the ratio past 1 + t)
            "detected_at_threshold": {f"{t:.2f}": sum(any(
                m.metric == "infer_median" and m.p_adjusted is not None and m.p_adjusted < ALPHA and m.ratio > 1 + t
                for p in c.pairs if p.config == "row0" for m in p.metrics) for c in runs) / len(runs)
                for t in (0.05, 0.10, 0.15)},
        }
    return result


def synthetic(dirs: list[Path]) -> dict:
    import numpy as np

    from harness.analysis.compare import ALPHA, DEFAULT_THRESHOLDS

    out: dict = {"rows_per_comparison": ROWS, "runs": RUNS, "alpha": ALPHA,
                 "threshold_infer_median": DEFAULT_THRESHOLDS["infer_median"]}
    for name, pool in _pools(dirs).items():
        out[name] = _synthetic_pool(pool, np.random.default_rng(20261123)) if pool else {"records": 0}
    return out


def run() -> dict:
    OUT.mkdir(parents=True, exist_ok=True)
    figures: dict = {"note": "a shared machine gives noisy figures: rerun on a quiet one before changing defaults"}
    t0 = time.perf_counter()
    try:
        figures["real"] = real()
    except Exception as exc:  # the synthetic half can still run on earlier runs' records
        figures["real"] = {"error": f"{type(exc).__name__}: {exc}"}
    figures["real"]["bench_seconds"] = round(time.perf_counter() - t0, 1)
    print(f"real: {json.dumps(figures['real'], default=str)}", flush=True)
    t0 = time.perf_counter()
    try:
        dirs = [ROOT / p for p in figures["real"].get("runs", [])][:REPEATS]
        figures["synthetic"] = synthetic(dirs)
    except Exception as exc:
        figures["synthetic"] = {"error": f"{type(exc).__name__}: {exc}"}
    figures["synthetic"]["bench_seconds"] = round(time.perf_counter() - t0, 1)
    print(f"synthetic: {json.dumps(figures['synthetic'], default=str)}", flush=True)
    (OUT / "compare.json").write_text(json.dumps(figures, indent=2, default=str) + "\n")
    return figures


if __name__ == "__main__":
    run()
