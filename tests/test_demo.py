"""`splitbench demo`, its digits half at a reduced size: train, sweep, export, measure, merge, report."""

from __future__ import annotations

import pandas as pd

from harness.demo import VGG_SPEC, run_digits


def test_digits_demo_measures_merges_and_reports(tmp_path, monkeypatch):
    """The demo's digits half on one cut (the demo itself runs all four): float32 and int8, every backend."""
    monkeypatch.setenv("SPLITBENCH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "digits"
    assert run_digits(out, runs=5, ratios=(0, 1), cuts=("fc1",)) == 0
    privacy, summary = pd.read_csv(out / "privacy.csv"), pd.read_csv(out / "summary.csv")
    assert set(privacy["model"]) == set(summary["model"])  # the privacy rows join the measurements
    # fc1 x 2 embeddings + full, each in float32 and int8, on 3 backends
    assert (summary["status"] == "ok").all() and len(summary) == 3 * 2 * 3
    assert set(summary["precision"]) == {"float32", "int8"} == set(privacy["precision"])
    int8 = privacy[(privacy["precision"] == "int8") & (privacy["cut"] == "fc1")]
    assert int8["log_rank_privacy"].notna().all() and int8["primary_accuracy"].between(0.5, 1).all()
    assert (out / "cloud.csv").is_file() and (out / "report.html").stat().st_size > 10_000
    assert (out / "figures" / "accuracy_privacy.png").is_file()


def test_vgg_demo_spec_is_the_papers_seven_configurations():
    import tomllib

    from harness.split.configurations import configurations
    from harness.config.spec import parse_spec

    spec = parse_spec(tomllib.loads(VGG_SPEC), origin="demo")
    assert [c.name for c in configurations(spec)] == [
        "conv5_1-simple", "conv5_1-reduced", "conv5_2-simple", "conv5_2-reduced", "conv5_3-simple",
        "conv5_3-reduced", "full"]
    assert spec.run.runs == 60
