"""`make bench`: run every benchmark, print its figures and save them under results/benchmarks/.

Each benchmark module exposes ``run() -> dict`` and writes its own JSON; this runner only orders them,
keeps going when one fails, and writes a summary. Speed and memory targets live here, never in tests:
the machine is shared and noisy, so each figure is a median or a ratio measured within one run.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
import traceback
from pathlib import Path

BENCHMARKS = ("bench_export", "bench_measure", "bench_int8", "bench_privacy", "bench_compare", "bench_scale")
OUT = Path("results/benchmarks")


def main(argv: list[str]) -> int:
    names = argv or list(BENCHMARKS)
    OUT.mkdir(parents=True, exist_ok=True)
    summary: dict[str, object] = {}
    failed = 0
    for name in names:
        print(f"== {name}", flush=True)
        t0 = time.perf_counter()
        try:
            result = importlib.import_module(f"benchmarks.{name}").run()
            summary[name] = {"ok": True, "seconds": round(time.perf_counter() - t0, 1), "result": result}
        except Exception as exc:  # a failing benchmark is reported; the others still run
            traceback.print_exc()
            summary[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            failed += 1
    (OUT / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print(f"wrote {OUT / 'summary.json'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
