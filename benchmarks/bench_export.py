"""Cold and warm export time of the VGG-16 paper setting (examples/osia_vgg16_gender.toml), end to end
through the CLI in a fresh process, as a user runs it.

Cold: a fresh, empty cache directory (every artifact converted and verified). Warm: the same cache
again, three times; the median is reported (the promise is under 2 s: a warm export reads the
meta.json files only, imports no torch and builds no model). Each run is a new process because
the import cost is part of what a user waits for.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "examples" / "osia_vgg16_gender.toml"
OUT = ROOT / "results" / "benchmarks" / "export.json"
WARM_RUNS = 3
WARM_BUDGET_S = 2.0


def _export(cache: Path) -> tuple[float, int, list[dict]]:
    """One `splitbench export --json` in a new process: (wall seconds, exit code, rows)."""
    env = {**os.environ, "SPLITBENCH_CACHE": str(cache)}
    start = time.perf_counter()  # wall clock of the whole process: what the user waits for
    done = subprocess.run([sys.executable, "-m", "harness.cli", "export", str(SPEC), "--json"], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    try:
        rows = json.loads(done.stdout)
    except ValueError:
        raise RuntimeError(f"export failed (exit {done.returncode}): {done.stderr.strip()[-500:]}") from None
    return elapsed, done.returncode, rows


def run(cache: Path | None = None) -> dict:
    """Measure; returns the record also written to results/benchmarks/export.json.

    ``cache``: an existing cache directory to time the warm export against (skips the cold run).
    """
    record: dict = {"spec": str(SPEC.relative_to(ROOT)), "python": sys.version.split()[0], "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="splitbench-bench-") as tmp:
        if cache is None:
            cache = Path(tmp) / "cache"
            cold_s, code, rows = _export(cache)
            record.update(cold_s=round(cold_s, 2), cold_exit_code=code, artifacts=len(rows),
                          failed=[f"{r['config']['name']}/{r['backend']}: {r['reason']}" for r in rows
                                  if r["status"] != "ok"],
                          max_rel_err={f"{r['config']['name']}/{r['backend']}": r["max_rel_err"] for r in rows
                                       if r["max_rel_err"] is not None},
                          converted_s={f"{r['config']['name']}/{r['backend']}": r["export_s"] for r in rows})
        warm = []
        for _ in range(WARM_RUNS):
            warm_s, code, rows = _export(cache)
            if not all(r["cached"] for r in rows if r["status"] == "ok"):
                raise RuntimeError("the warm export converted something")
            warm.append(round(warm_s, 3))
        record.update(warm_s=warm, warm_median_s=statistics.median(warm), warm_exit_code=code,
                      warm_budget_s=WARM_BUDGET_S, warm_within_budget=statistics.median(warm) < WARM_BUDGET_S)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(record, indent=2) + "\n")
    return record


def main(argv: list[str] | None = None) -> int:
    """Print the cold and warm times; ``--cache DIR`` times the warm export against DIR only."""
    argv = sys.argv[1:] if argv is None else argv
    cache = Path(argv[argv.index("--cache") + 1]).resolve() if "--cache" in argv else None
    r = run(cache)
    if "cold_s" in r:
        print(f"cold export: {r['cold_s']:.1f} s ({r['artifacts']} artifacts, {len(r['failed'])} failed)")
    print(f"warm export: median {r['warm_median_s']:.2f} s of {r['warm_s']} (budget {WARM_BUDGET_S} s)")
    print(f"written: {OUT.relative_to(ROOT)}")
    return 0 if r["warm_within_budget"] else 1


if __name__ == "__main__":
    sys.exit(main())
