"""Scoring time of the privacy measures at the issue's size: N = 2000, d = 512, K = 40, on one core.

The process is pinned to one CPU (``os.sched_setaffinity``) with one BLAS/OpenMP thread, so the
figure is what one core does whatever the host. 2000 training features (what the attacker knows)
and 2000 test features (what is scored), 50 per class, classes overlapping; the budget is 10 s for the whole
:func:`harness.analysis.privacy.score` call of the default ``splitbench`` estimator, trained attacker included.
Median of 3, every sample kept. The ``dpfe`` estimator (one ``gaussian_kde`` per class) cannot run at
d = 512 with 50 features per class (singular class covariances; its one-line reason is recorded); it is
timed on the first 8 dimensions of the same features instead, as the papers reduce with PCA.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

N_TRAIN = N_TEST = 2000
DIM = 512
DPFE_DIM = 8
CLASSES = 40
REPEATS = 3
BUDGET_S = 10.0
OUT = Path("results/benchmarks/privacy.json")  # relative, like the runner's summary.json


def _data(seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(CLASSES, DIM)) * 0.3  # classes overlap: ranks spread over 1..K
    ytr = np.arange(N_TRAIN) % CLASSES
    yte = np.arange(N_TEST) % CLASSES
    return (centres[ytr] + rng.normal(size=(N_TRAIN, DIM)), ytr,
            centres[yte] + rng.normal(size=(N_TEST, DIM)), yte)


def run() -> dict:
    """Time :func:`harness.analysis.privacy.score` (with and without the trained attacker); write and print the JSON."""
    from threadpoolctl import threadpool_limits

    from harness.core.errors import UserError
    from harness.analysis.privacy import score

    xtr, ytr, xte, yte = _data()
    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    cpu = min(affinity) if affinity else None
    samples: dict[str, list[float]] = {"score_s": [], "density_only_s": [], "dpfe_s": []}
    dpfe_d512 = None
    try:
        if affinity:
            os.sched_setaffinity(0, {cpu})
        with threadpool_limits(1):
            score(xtr[:200], ytr[:200], xte[:200], yte[:200])  # untimed: imports and first-call costs
            for _ in range(REPEATS):
                t0 = time.perf_counter()
                result = score(xtr, ytr, xte, yte, seed=0)
                samples["score_s"].append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                score(xtr, ytr, xte, yte, seed=0, attacker=False)
                samples["density_only_s"].append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                dpfe_result = score(xtr[:, :DPFE_DIM], ytr, xte[:, :DPFE_DIM], yte, estimator="dpfe")
                samples["dpfe_s"].append(time.perf_counter() - t0)
            try:
                score(xtr, ytr, xte, yte, estimator="dpfe")
            except UserError as exc:
                dpfe_d512 = str(exc)
    finally:
        if affinity:
            os.sched_setaffinity(0, affinity)
    median = statistics.median(samples["score_s"])
    record = {
        "benchmark": "privacy_score", "estimator": "splitbench", "n_train": N_TRAIN, "n_test": N_TEST, "dim": DIM,
        "classes": CLASSES,
        "cpu": cpu, "threads": 1, "repeats": REPEATS, "median_s": median,
        "density_only_median_s": statistics.median(samples["density_only_s"]), "samples_s": samples["score_s"],
        "density_only_samples_s": samples["density_only_s"], "budget_s": BUDGET_S, "within_budget": median < BUDGET_S,
        "log_rank_privacy": result.log_rank_privacy, "attacker_accuracy": result.attacker_accuracy,
        "dpfe": {"estimator": "dpfe", "dim": DPFE_DIM, "median_s": statistics.median(samples["dpfe_s"]),
                 "samples_s": samples["dpfe_s"], "log_rank_privacy": dpfe_result.log_rank_privacy,
                 "at_dim_512": dpfe_d512},
        "python": sys.version.split()[0], "machine": platform.machine(),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))
    return record


if __name__ == "__main__":  # pragma: no cover
    run()
