"""The data the report's page embeds, per model: every candidate with its numbers and their printed form.

The page decides nothing on its own numbers: the latencies under each network profile, the upload in kB
and the break messages of failed rows are the very values :func:`harness.analysis.recommend.choice.choose`
computes (the JSON holds Python's doubles, so a comparison in the browser gives the same answer as in
Python), and every number it shows was formatted here by :mod:`harness.core.units`. What the browser adds
is the rule applied to a budget the reader moves (``report.js``), checked against ``choose`` by the browser
test.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import pandas as pd

from harness.analysis.table import config_label
from harness.config.network import PROFILES
from harness.analysis.recommend.budget import BYTES_PER_KB, Budget
from harness.analysis.recommend.choice import (RULE_COST, RULE_PRIVACY, Candidate, Recommendation, choose, no_median,
                                               opt, text)
from harness.analysis.recommend.explain import baseline_key, latency_formula
from harness.config.spec import FULL
from harness.core.units import fmt_bytes, fmt_mb, fmt_ms, fmt_ratio, sig
from harness.results.stats import HOST_INT8, host_int8

GIVEN = "given"  # the network key of a budget with its own uplink or delay


def _first_line(text: Any) -> str:
    if text is None or (isinstance(text, float) and math.isnan(text)) or not str(text).strip():
        return ""
    return str(text).strip().splitlines()[0]


def networks(budget: Budget) -> list[dict[str, Any]]:
    """The network profiles the page offers: the four named ones, plus the budget's own when it sets an
    uplink or a delay (key ``given``). Each with the `recommend` options that select it."""
    out = [{"key": name, "label": _short(p), "title": p.describe(), "args": f"--network {name}",
            "budget": {"network": name}} for name, p in PROFILES.items()]
    if network_key(budget) == GIVEN:
        args = f"--network {budget.network}"
        if budget.uplink_mbps is not None:
            args += f" --uplink-mbps {budget.uplink_mbps:g}"
        if budget.delay_ms is not None:
            args += f" --delay-ms {budget.delay_ms:g}"
        out.append({"key": GIVEN, "label": _short(budget.profile()), "title": budget.profile().describe(), "args": args,
                    "budget": {"network": budget.network, "uplink_mbps": budget.uplink_mbps,
                               "delay_ms": budget.delay_ms}})
    return out


def _short(p) -> str:
    return f"{p.name}: {p.uplink_mbps:g} Mbps up, {p.delay_ms:g} ms"


def network_key(budget: Budget) -> str:
    if budget.uplink_mbps is not None or budget.delay_ms is not None or budget.network not in PROFILES:
        return GIVEN
    return budget.network


def _group_key(c: Candidate) -> tuple[str, str, str]:
    return (c.backend, c.target, c.device_id)


def _row_key(r: dict[str, Any]) -> tuple[str, ...]:
    """A merged table row's measurement: configuration, where, and as what (precision, accelerator)."""
    return (str(r["cut"]), str(r["embedding"]), str(r.get("backend", "")), str(r.get("target", "")),
            text(r.get("device_id")), text(r.get("precision")) or "float32", text(r.get("accelerator")) or "cpu")


def model_data(table: pd.DataFrame, budget: Budget, *, results_dir: str, budget_source: str) -> dict[str, Any]:
    """Everything the page needs for one model (``table``: one model's merged table, with ``cloud_ms``)."""
    nets = networks(budget)
    per_net: dict[str, Recommendation] = {}
    for n in nets:
        open_budget = Budget(**{k: v for k, v in n["budget"].items() if v is not None})
        per_net[n["key"]] = choose(table, open_budget)
    first = per_net[nets[0]["key"]]
    everything = [*first.candidates, *first.on_premise]
    rows = table.to_dict("records")
    by_key = {_row_key(r): r for r in rows}

    groups: list[tuple[str, str, str]] = list(dict.fromkeys(_group_key(c) for c in everything))
    # A cut's on-premise baseline is measured where and as it was (an int8 cut against the int8 whole model).
    onprem = {baseline_key(c): c for c in first.on_premise}
    onprem_idx = {baseline_key(c): len(first.candidates) + i for i, c in enumerate(first.on_premise)}

    cands = []
    for i, c in enumerate(everything):
        same = {k: [*rec.candidates, *rec.on_premise][i] for k, rec in per_net.items()}  # c under each network
        lat = {k: x.latency_ms for k, x in same.items()}
        up_ms = {k: x.upload_ms for k, x in same.items()}
        row = by_key.get((c.cut, c.embedding, *baseline_key(c)), {})
        base = onprem.get(baseline_key(c))
        load = opt(row.get("load_ms_cold"))
        base_row = by_key.get((FULL, FULL, *baseline_key(c)), {}) if base else {}
        cands.append({
            "i": i, "config": c.config, "base": c.base_config, "r": c.noise_ratio, "backend": c.backend,
            "target": c.target, "device": c.device_id, "where": c.where, "group": groups.index(_group_key(c)),
            "ok": c.status == "ok", "status": c.status, "onprem": c.on_premise, "agg": c.timing_kind == "aggregate",
            "fail": c.breaks[0] if c.status != "ok" and c.breaks else None,
            "nomedian": no_median(row) if c.phone_ms is None and c.timing_kind == "aggregate" else None,
            "privacy": c.privacy, "accuracy": c.accuracy, "memory": c.memory_mb, "phone": c.phone_ms,
            "upload_kb": None if c.upload_bytes is None else c.upload_bytes / BYTES_PER_KB,
            "upload_bytes": c.upload_bytes, "lat": lat, "onprem_i": onprem_idx.get(baseline_key(c)),
            "precision": c.precision, "accelerator": c.accelerator,
            "host_int8": str(HOST_INT8) if host_int8(c.precision, c.backend, c.target) else None,
            "t": {"privacy": sig(c.privacy), "accuracy": sig(c.accuracy),
                  "memory": fmt_mb(c.memory_mb), "upload": fmt_bytes(c.upload_bytes), "phone": fmt_ms(c.phone_ms),
                  "cloud": fmt_ms(c.cloud_ms) if c.cloud_ms is not None else None, "load": fmt_ms(load),
                  "lat": {k: fmt_ms(v) for k, v in lat.items()}, "up_ms": {k: fmt_ms(v) for k, v in up_ms.items()}},
            "vs": None if base is None or c.on_premise else {
                "phone": fmt_ratio(c.phone_ms, base.phone_ms), "memory": fmt_ratio(c.memory_mb, base.memory_mb),
                "load": fmt_ratio(load, opt(base_row.get("load_ms_cold"))),
                "lat": {k: fmt_ratio(lat[k], _lat_of(per_net[k], base)) for k in lat}},
        })

    return {
        "model": first.model, "scored": first.privacy_scored, "estimator": first.estimator,
        "rule": RULE_PRIVACY if first.privacy_scored else RULE_COST,
        "cloud_included": first.cloud_included, "latency_formula": latency_formula(first),
        "budget": budget_json(budget), "network": network_key(budget), "budget_source": budget_source,
        "networks": [{k: n[k] for k in ("key", "label", "title", "args")} for n in nets],
        "dir": results_dir, "groups": [{"backend": b, "target": t, "device": d} for b, t, d in groups],
        "backends": list(dict.fromkeys(b for b, _, _ in groups)),
        "targets": list(dict.fromkeys(t for _, t, _ in groups)),
        "candidates": cands, "ranges": _ranges(cands),
    }


def _lat_of(rec: Recommendation, base: Candidate) -> float | None:
    same = [b for b in rec.on_premise if baseline_key(b) == baseline_key(base)]
    return same[0].latency_ms if same else None


def budget_json(budget: Budget) -> dict[str, Any]:
    return {k: getattr(budget, k) for k in ("max_latency_ms", "max_memory_mb", "max_upload_kb", "min_accuracy")}


def _ranges(cands: list[dict[str, Any]]) -> dict[str, list[float]]:
    """The span of each budget slider: from below the smallest measured value to above the largest."""
    ok = [c for c in cands if c["ok"]]

    def span(values: list[float | None], pad_lo: float = 0.8, pad_hi: float = 1.25) -> list[float]:
        vals = [v for v in values if v is not None and v > 0]
        if not vals:
            return [1e-3, 1.0]
        return [min(vals) * pad_lo, max(vals) * pad_hi]

    lat = [v for c in ok for v in c["lat"].values()]
    acc = [c["accuracy"] for c in ok if c["accuracy"] is not None]
    return {"max_latency_ms": span(lat), "max_memory_mb": span([c["memory"] for c in ok]),
            "max_upload_kb": span([c["upload_kb"] for c in ok]),
            "min_accuracy": [max(0.0, math.floor((min(acc) - 0.05) * 20) / 20) if acc else 0.0, 1.0]}


def page_json(models: list[dict[str, Any]]) -> str:
    """The embedded JSON, safe inside <script> (no "</" can close it)."""
    return json.dumps({"models": models}, allow_nan=False, default=_default).replace("</", "<\\/")


def _default(x: Any) -> Any:
    if dataclasses.is_dataclass(x):
        return dataclasses.asdict(x)
    if hasattr(x, "item"):  # a numpy scalar (pandas' all() gives numpy.bool_)
        return x.item()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


RATIO_METRICS = (("infer", "infer_ms_median"), ("load", "load_ms_cold"), ("memory", "mem_model_mb"))


def config_rows(table: pd.DataFrame, data: dict[str, Any], summary: pd.DataFrame | None = None
                ) -> tuple[list[dict[str, Any]], dict[str, list[list[str]]]]:
    """One row per configuration measured on one backend/target/device (its noise ratios folded in: the
    privacy and accuracy shown are the lowest ratio's), grouped by where it was measured; and, per
    reference configuration, each row's inference time, load time and memory against the reference
    measured in the same place (never across devices)."""
    keys = ["cut", "embedding", "backend", "target", "device_id", "precision", "accelerator"]

    def filled(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.copy()
        for col, default in (("device_id", ""), ("precision", "float32"), ("accelerator", "cpu")):
            frame[col] = [text(v) or default for v in frame[col]] if col in frame.columns else default
        return frame

    first = filled(table).drop_duplicates(keys, keep="first").to_dict("records")
    measured: dict[tuple, dict[str, Any]] = {}
    if summary is not None:  # the measurement's own columns (a privacy table's "warnings" would shadow them)
        for r in filled(summary).to_dict("records"):
            measured[tuple(str(r[k]).strip() for k in keys)] = r
    groups = [(g["backend"], g["target"], g["device"]) for g in data["groups"]]
    cand_of: dict[tuple, list[int]] = {}
    for c in data["candidates"]:
        cand_of.setdefault((c["base"], c["backend"], c["target"], c["device"], c["accelerator"]), []).append(c["i"])
    rows = []
    for r in first:
        r = {**r, **measured.get(tuple(str(r[k]) for k in keys), {})}
        base = config_label(r, with_ratio=False)
        where = (str(r["backend"]), str(r["target"]), str(r["device_id"]))
        idx = cand_of.get((base, *where, r["accelerator"]), [])
        c0 = data["candidates"][idx[0]] if idx else None
        warnings = "" if pd.isna(r.get("warnings")) else str(r.get("warnings") or "")
        rows.append({
            "base": base, "where": c0["where"] if c0 else "/".join(where[:2]), "group": groups.index(where)
            if where in groups else len(groups), "backend": where[0], "target": where[1], "device": where[2],
            "status": str(r.get("status", "ok")), "onprem": str(r["cut"]) == FULL, "precision": r["precision"],
            "reason": _first_line(r.get("reason")), "agg": str(r.get("timing_kind")) == "aggregate", "tool": "" if pd.isna(r.get("aggregate_tool"))
            else str(r.get("aggregate_tool") or ""), "cands": idx,
            "infer": fmt_ms(opt(r.get("infer_ms_median"))), "p90": fmt_ms(opt(r.get("infer_ms_p90"))),
            "load": fmt_ms(opt(r.get("load_ms_cold"))), "load_warm": fmt_ms(opt(r.get("load_ms_warm"))),
            "memory": fmt_mb(opt(r.get("mem_model_mb"))), "upload": fmt_bytes(opt(r.get("upload_bytes"))),
            "privacy": sig(opt(r.get("log_rank_privacy"))),
            "accuracy": sig(opt(r.get("primary_accuracy"))),
            "warnings": [w.split(":", 1)[0].strip() for w in warnings.split(" | ") if w.strip()],
            "warnings_text": warnings, "_values": {m: opt(r.get(col)) for m, col in RATIO_METRICS},
            "_order": len(rows),
        })
    rows.sort(key=lambda x: (x["group"], x["onprem"], x["_order"]))
    refs: dict[str, list[list[str]]] = {}
    for ref in dict.fromkeys([FULL] + [x["base"] for x in rows]):
        if not any(x["base"] == ref for x in rows):
            continue
        base_of = {(x["backend"], x["target"], x["device"]): x for x in rows if x["base"] == ref and x["status"] == "ok"}
        refs[ref] = []
        for x in rows:
            b = base_of.get((x["backend"], x["target"], x["device"]))
            if x["base"] == ref:
                refs[ref].append(["ref"] * len(RATIO_METRICS))
            elif b is None or x["status"] != "ok":
                refs[ref].append(["—"] * len(RATIO_METRICS))
            else:
                refs[ref].append([fmt_ratio(x["_values"][m], b["_values"][m]) for m, _ in RATIO_METRICS])
    for x in rows:
        del x["_values"], x["_order"]
    return rows, refs
