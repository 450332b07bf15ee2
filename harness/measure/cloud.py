"""The cloud side of a split: the rest of the network timed on this host with all its cores.

End-to-end latency of a configuration = phone inference + upload + cloud part. The phone part is
measured on the device; the cloud part is measured here, in eager PyTorch with one intra-op
thread per core (a server runs the rest at full width). The host is not a datacenter GPU, so the
figure is an upper bound for a real service, and it is reported with the host's core count.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

from harness.results.layout import CLOUD_CSV, CLOUD_JSON


def time_cloud_part(rest_module: Any, feature_example: Any, runs: int = 20, warmup: int = 3) -> dict[str, Any]:
    """Time ``rest_module(feature_example)`` ``runs`` times after ``warmup`` untimed calls.

    Torch uses ``os.cpu_count()`` threads while timing and the caller's setting is restored
    afterwards. One clock (``time.perf_counter_ns``) around the module call only; every sample is
    kept. Returns ``cloud_ms_median``, ``cloud_ms_iqr``, ``cloud_ms_min``, ``samples_ms``,
    ``runs``, ``threads`` and ``batch`` (the example's first dimension).
    """
    import torch

    if runs < 1:
        raise ValueError("runs must be at least 1")
    threads = os.cpu_count() or 1
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        rest_module.eval()
        with torch.inference_mode():
            for _ in range(warmup):
                rest_module(feature_example)
            samples_ms = []
            for _ in range(runs):
                t0 = time.perf_counter_ns()
                rest_module(feature_example)
                samples_ms.append((time.perf_counter_ns() - t0) / 1e6)
    finally:
        torch.set_num_threads(previous)
    q = statistics.quantiles(samples_ms, n=4) if len(samples_ms) >= 2 else [samples_ms[0]] * 3
    return {"cloud_ms_median": statistics.median(samples_ms), "cloud_ms_iqr": q[2] - q[0],
            "cloud_ms_min": min(samples_ms), "samples_ms": samples_ms, "runs": runs, "threads": threads,
            "batch": int(feature_example.shape[0]) if getattr(feature_example, "ndim", 0) else 1}




def cloud_fingerprint(spec: Any) -> str:
    """What the cloud timings depend on: the model (definition, weights, input shape), the configurations,
    the host's CPU and core count, torch's version and this module's code. Not the phone-side settings."""
    import hashlib
    import inspect
    import json
    import os
    from device_agents.host import cpu_model, installed_version
    from harness.split.configurations import configurations, identify

    ident = identify(spec)
    blob = {"model": [ident.name, ident.definition_hash, ident.weights_id, list(ident.input_shape)],
            "configs": [[c.cut, c.embedding, c.reduced_dim] for c in configurations(spec)],
            "host": [cpu_model(), os.cpu_count()], "torch": installed_version("torch"),
            "code": hashlib.sha256(inspect.getsource(time_cloud_part).encode()
                                   + inspect.getsource(write_cloud_table).encode()).hexdigest()}
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()


def write_cloud_table(spec: Any, out: Any, runs: int = 20) -> Any:
    """Time the cloud part of every configuration of ``spec`` and write ``OUT/cloud.csv``.

    Columns: model, cut, embedding, config, cloud_ms (the median), cloud_ms_iqr, cloud_ms_min, runs,
    threads. On-premise has no cloud part: its cloud_ms is 0 by definition, not a measurement.
    The feature fed to each cloud part is the phone part's output on the spec's seeded example input.
    For a reduced embedding the cloud part starts with the k -> d reconstruction; its cost does not
    depend on the PCA's values (as the phone's does not depend on the weights), so an unfitted layer
    of the same shape is timed instead of fitting the PCA again (32 forward passes of the phone part).

    A stage of its own: ``cloud.json`` keeps its fingerprint (:func:`cloud_fingerprint`), and a run that
    finds the same fingerprint beside ``cloud.csv`` keeps the table instead of timing it again.
    """
    import json
    from pathlib import Path

    path, meta_path = Path(out) / CLOUD_CSV, Path(out) / CLOUD_JSON
    fingerprint = cloud_fingerprint(spec)
    try:
        if path.is_file() and json.loads(meta_path.read_text()).get("fingerprint") == fingerprint:
            return path  # the same stage already ran here: nothing it depends on changed
    except (OSError, ValueError):
        pass

    import pandas as pd
    import torch
    import torch.nn as nn

    from harness.split.configurations import configurations, load_model, split_at
    from harness.results.store import atomic_write_bytes, atomic_write_json

    loaded = load_model(spec)
    rows = []
    for config in configurations(spec):
        row = {"model": config.model, "cut": config.cut, "embedding": config.embedding, "config": config.name}
        if config.cut == "full":
            rows.append({**row, "cloud_ms": 0.0, "cloud_ms_iqr": 0.0, "cloud_ms_min": 0.0, "runs": 0,
                         "threads": 0})
            continue
        phone, rest = split_at(loaded.module, config.cut)
        with torch.inference_mode():
            feature = phone(loaded.example_input)
        if config.embedding == "reduced":
            rest = nn.Sequential(nn.Linear(config.reduced_dim, feature[0].numel()),
                                 nn.Unflatten(1, tuple(feature.shape[1:])), rest).eval()
            feature = torch.zeros(feature.shape[0], config.reduced_dim)
        t = time_cloud_part(rest, feature, runs=runs)
        rows.append({**row, "cloud_ms": t["cloud_ms_median"], "cloud_ms_iqr": t["cloud_ms_iqr"],
                     "cloud_ms_min": t["cloud_ms_min"], "runs": t["runs"], "threads": t["threads"]})
    atomic_write_bytes(path, pd.DataFrame(rows).to_csv(index=False).encode())
    atomic_write_json(meta_path, {"fingerprint": fingerprint, "runs": runs,
                                  "what": "the cloud part of each configuration timed on this host, all cores"})
    return path
