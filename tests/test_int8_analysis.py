"""int8 beside float32 after the run, on a hand-made results directory: `recommend` (with and without privacy
scores) lists the int8 rows as configurations of their own and compares an int8 cut with the int8 whole
model; the report names them and tags a LiteRT int8 row timed on the host; the figures put a configuration's
float32 and int8 side by side as two series."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from harness.analysis.recommend import Budget
from harness.analysis.recommend.choice import choose
from harness.analysis.recommend.explain import on_premise_of, versus_on_premise
from harness.analysis.table import load_table
from harness.cli import main

# cut, embedding, precision, phone ms, model MB, upload bytes (float32 feature 4096 B; LiteRT int8 uploads 1 B each)
ROWS = [
    ("c1", "simple", "float32", 10.0, 20.0, 4096),
    ("c1", "simple", "int8", 3.0, 8.0, 1024),
    ("c2", "simple", "float32", 25.0, 30.0, 2048),
    ("c2", "simple", "int8", 7.0, 11.0, 512),
    ("full", "full", "float32", 80.0, 120.0, 8),
    ("full", "full", "int8", 20.0, 35.0, 2),
]
FAST = dict(network="custom", uplink_mbps=1e6, delay_ms=0.0)


def write_run(d: Path, *, backend: str = "litert", privacy: bool = False) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    rows = []
    for order, (cut, emb, precision, ms, mb, up) in enumerate(ROWS):
        host = precision == "int8" and backend == "litert"
        rows.append(dict(
            model="toy", cut=cut, embedding=emb, config="full" if cut == "full" else f"{cut}-{emb}",
            precision=precision, accelerator="cpu", backend=backend, target="cpu-1core", device_id="local:a:cpu1",
            status="ok", reason="", n_runs=60, infer_ms_median=ms, infer_ms_p90=ms * 1.1, infer_ms_iqr=ms * 0.04,
            infer_ms_min=ms * 0.9, load_ms_cold=ms * 3, load_ms_warm=ms * 2, mem_model_mb=mb, mem_peak_mb=mb + 40,
            cpu_ms=ms * 60, params=1000, macs=10 ** 6, upload_bytes=up, artifact_bytes=4096, order=order // 2,
            artifact=f"{cut}-{precision}.tflite", verified=True, max_rel_err=0.01 if precision == "int8" else 1e-6,
            calibration="model data" if precision == "int8" else None, timing_kind="samples",
            warnings="host_int8: LiteRT int8 timed on a host CPU" if host else ""))
    summary = pd.DataFrame(rows)
    summary.to_csv(d / "summary.csv", index=False)
    (d / "manifest.json").write_text(json.dumps({"schema_version": 3, "spec_hash": "abc", "spec": {}}))
    pd.DataFrame([dict(model="toy", config=r["config"], precision=r["precision"], backend=r["backend"],
                       target=r["target"], device_id=r["device_id"], phase="timed", run=i,
                       infer_ms=r["infer_ms_median"] * (1 + 0.01 * (i % 5)))
                  for r in rows for i in range(12)]).to_parquet(d / "samples.parquet")
    if privacy:  # the privacy stage's rows: each precision's features scored apart (harness.analysis.privacy)
        pd.DataFrame([dict(model="toy", cut=c, embedding="simple", precision=precision, noise_ratio=None,
                           primary_accuracy=0.9, rank_privacy=0.2, log_rank_privacy=p, bayes_error=0.5,
                           rank_mean=0.25, rank_std=0.1, nn1_error=0.5, attacker_accuracy=0.5, n_classes=10)
                      for c, p in (("c1", 0.2), ("c2", 0.4)) for precision in ("float32", "int8")]
                     ).to_csv(d / "privacy.csv", index=False)
    return d


def test_recommend_without_privacy_lists_int8_and_baselines_it_on_int8(tmp_path, capsys):
    d = write_run(tmp_path / "run")
    rec = choose(load_table(d), Budget(max_latency_ms=1000, **FAST))
    names = sorted(c.config for c in rec.candidates)
    assert names == ["c1-simple", "c1-simple int8", "c2-simple", "c2-simple int8"]
    assert rec.choice.config == "c1-simple int8" and rec.choice.precision == "int8"  # the fastest that fits
    assert sorted(b.config for b in rec.on_premise) == ["full", "full int8"]
    assert on_premise_of(rec, rec.choice).config == "full int8"  # never float32's whole model
    f32 = next(c for c in rec.candidates if c.config == "c1-simple")
    assert on_premise_of(rec, f32).config == "full"
    assert "against full int8 on litert/cpu-1core: phone inference −85.0%" in versus_on_premise(rec, rec.choice)
    assert main(["recommend", str(d), "--max-latency-ms", "1000", "--network", "custom", "--uplink-mbps", "1e6",
                 "--delay-ms", "0"]) == 0
    out = capsys.readouterr().out
    assert "Recommended: c1-simple int8 on litert/cpu-1core" in out and "against full int8" in out
    assert "note: LiteRT int8 timed on a host CPU" in out  # a host's int8 speed-up is labelled as such


def test_recommend_with_privacy_keeps_int8_rows_apart(tmp_path):
    d = write_run(tmp_path / "run", backend="onnx", privacy=True)
    rec = choose(load_table(d), Budget(max_latency_ms=1000, **FAST))
    assert rec.privacy_scored
    int8 = [c for c in rec.candidates if c.precision == "int8"]
    assert sorted(c.config for c in int8) == ["c1-simple int8", "c2-simple int8"]
    assert all(on_premise_of(rec, c).config == "full int8" for c in int8)
    assert rec.choice is not None and on_premise_of(rec, rec.choice).precision == rec.choice.precision


def test_report_names_int8_rows_and_tags_a_host_int8_choice(tmp_path, monkeypatch):
    import harness.report.figures
    import harness.report.tradeoff
    from harness.report import build_report

    monkeypatch.setattr(harness.report.figures, "make_figures", lambda d: [])
    monkeypatch.setattr(harness.report.tradeoff, "make_tradeoff_figures", lambda d, merged=None, privacy=None: [])
    d = write_run(tmp_path / "run")
    build_report(d, budget=Budget(max_latency_ms=1000, **FAST))
    page = (d / "report.html").read_text()
    text = re.sub(r"<[^>]+>", " ", re.sub(r"</?bdi>", "", page))  # a name isolated in <bdi> reads as the name
    assert "c1-simple int8" in text and "full int8" in text and "c2-simple int8" in text
    card = text[text.index("Recommended"):][:800]
    assert "c1-simple int8" in card and "host int8" in card and "(the whole model on the phone: full int8)" in card


def test_figures_put_float32_and_int8_side_by_side(tmp_path):
    import matplotlib

    from harness.report.figures import make_figures

    d = write_run(tmp_path / "run")
    with matplotlib.rc_context({"svg.fonttype": "none"}):  # keep the SVG's text as text, to read it here
        paths = make_figures(d)
    svg = next(p for p in paths if p.name == "infer_box.svg").read_text()
    labels = re.findall(r"<text[^>]*>([^<]*)</text>", svg)
    ticks = [t for t in labels if t.startswith(("c1-", "c2-", "full"))]
    assert ticks == ["c1-simple", "c1-simple int8", "c2-simple", "c2-simple int8", "full", "full int8"]
    assert "float32" in labels and "int8" in labels  # a legend with two series
    assert any("AMX/VNNI" in t for t in labels)  # the LiteRT panel on cpu-1core says the speed-up is the host's
    load = next(p for p in paths if p.name == "load_bars.svg").read_text()
    assert any(t.endswith(", int8") for t in re.findall(r"<text[^>]*>([^<]*)</text>", load))
