"""Merge of privacy scores, the network model, and `splitbench recommend` on hand-made results."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.core import exitcodes
from harness.cli import main
from harness.core.errors import UserError
from harness.config.network import PROFILES, get_profile, upload_ms
from harness.analysis.recommend import Budget, pareto_frontier
from harness.analysis.recommend.choice import choose
from harness.analysis.table import load_privacy, load_table, merge_privacy

# ------------------------------------------------------------------------------------------ fixtures

# A hand-made model "toy": cut, embedding, phone median ms, model MB, upload bytes, log-rank privacy, accuracy.
# With a network of no delay and a huge uplink, end-to-end latency == phone ms (upload < 0.01 ms).
TOY = [
    ("c1", "simple", 10.0, 20.0, 4000, 0.10, 0.95),
    ("c1", "reduced", 20.0, 22.0, 32, 0.30, 0.93),
    ("c2", "simple", 25.0, 30.0, 2000, 0.20, 0.94),  # dominated by c1-reduced (slower, less private)
    ("c2", "reduced", 40.0, 32.0, 24, 0.50, 0.91),
    ("c3", "simple", 40.0, 50.0, 1000, 0.40, 0.92),  # same latency as c2-reduced, less private
]
FULL_ROW = ("full", "full", 80.0, 120.0, 8)
FAST = dict(network="custom", uplink_mbps=1e6, delay_ms=0.0)


def summary_rows(model: str = "toy", spec=TOY, full=FULL_ROW, failed: bool = False) -> list[dict]:
    rows = []
    for cut, emb, ms, mb, up, *_ in [*spec, full]:
        rows.append(dict(model=model, cut=cut, embedding=emb, config="full" if cut == "full" else f"{cut}-{emb}",
                         backend="onnxruntime", target="cpu-1core", status="ok", reason="", n_runs=60,
                         infer_ms_median=ms, infer_ms_p90=ms * 1.1, infer_ms_iqr=ms * 0.04, infer_ms_min=ms * 0.9,
                         load_ms_cold=ms * 3, load_ms_warm=ms * 2, mem_model_mb=mb, mem_peak_mb=mb + 40,
                         cpu_ms=ms * 60, params=1000, macs=10 ** 6, upload_bytes=up, artifact_bytes=4096,
                         artifact=f"{cut}-{emb}.onnx", warnings="", verified=True, max_rel_err=1e-6))
    if failed:
        rows.append(dict(rows[0], backend="litert", status="timeout", reason="worker exceeded 60 s\nstderr tail",
                         infer_ms_median=np.nan, n_runs=0))
    return rows


def privacy_rows(model: str = "toy", spec=TOY, ratios=(None,)) -> list[dict]:
    rows = []
    for cut, emb, _ms, _mb, _up, lrp, acc in spec:
        for r in ratios:
            bump = 0.0 if r is None else 0.1 * r
            rows.append(dict(model=model, cut=cut, embedding=emb, noise_ratio=r, primary_accuracy=acc - bump / 2,
                             rank_privacy=(lrp + bump) / 2, log_rank_privacy=lrp + bump, bayes_error=0.5,
                             rank_mean=0.25, rank_std=0.1, nn1_error=0.5, attacker_accuracy=0.5, n_classes=10))
    return rows


def write_run(d: Path, *, ratios=(0.0, 0.5, 2.0), failed: bool = True, privacy: bool = True,
              cloud: bool = False, samples: bool = True) -> Path:
    """A small fake results directory: summary.csv, manifest.json, samples.parquet, privacy.csv."""
    d.mkdir(parents=True, exist_ok=True)
    summary = pd.DataFrame(summary_rows(failed=failed))
    summary.to_csv(d / "summary.csv", index=False)
    (d / "manifest.json").write_text(json.dumps({
        "schema_version": 1, "splitbench_version": "0.1.0", "spec_hash": "abc123",
        "host": {"cpu_model": "Fake CPU 3000", "kernel": "6.1.0", "governor": "performance"},
        "devices": {"cpu-1core": {"profile": "cpu-1core", "pinned_cpu": 0, "threads": 1}},
        "versions": {"onnxruntime": "1.20.0"}, "spec": {"models": ["toy"], "split": {"embeddings": ["simple", "reduced"]}},
    }))
    if samples:
        ok = summary[summary["status"] == "ok"]
        pd.DataFrame([dict(model=r.model, config=r.config, backend=r.backend, target=r.target, phase="timed", run=i,
                           infer_ms=r.infer_ms_median * (1 + 0.01 * (i % 5)))
                      for r in ok.itertuples() for i in range(12)]).to_parquet(d / "samples.parquet")
    if privacy:
        pd.DataFrame(privacy_rows(ratios=ratios)).to_csv(d / "privacy.csv", index=False)
    if cloud:
        pd.DataFrame([dict(model="toy", cut=c, embedding=e, cloud_ms=5.0) for c, e, *_ in TOY]).to_csv(
            d / "cloud.csv", index=False)
    return d


def toy_table(ratios=(None,), **kw) -> pd.DataFrame:
    return merge_privacy(pd.DataFrame(summary_rows(**kw)), pd.DataFrame(privacy_rows(ratios=ratios)))


# ---------------------------------------------------------------------------------------------- merge


def test_merge_matches_every_row_and_repeats_measurement_per_ratio():
    merged = toy_table(ratios=(0.0, 0.5, 2.0))
    cuts = merged[~merged["on_premise"]]
    assert len(cuts) == len(TOY) * 3 and merged["on_premise"].sum() == 1
    one = cuts[(cuts["cut"] == "c2") & (cuts["embedding"] == "reduced")]
    assert sorted(one["noise_ratio"]) == [0.0, 0.5, 2.0]
    assert one["infer_ms_median"].nunique() == 1 and one["log_rank_privacy"].nunique() == 3


def test_a_column_of_both_tables_keeps_the_measurements_name():
    summary = pd.DataFrame(summary_rows())
    summary["warnings"] = ["core_shared: cpu0 busy"] + [""] * (len(summary) - 1)
    privacy = pd.DataFrame(privacy_rows())
    privacy["warnings"] = "few samples"
    merged = merge_privacy(summary, privacy)
    assert not [c for c in merged.columns if c.endswith(("_x", "_y"))]
    assert merged.loc[0, "warnings"] == "core_shared: cpu0 busy"
    assert (merged.loc[~merged["on_premise"], "privacy_warnings"] == "few samples").all()


def test_on_premise_has_no_privacy_and_the_models_accuracy():
    merged = toy_table()
    full = merged[merged["on_premise"]].iloc[0]
    assert full["cut"] == "full" and math.isnan(full["log_rank_privacy"]) and math.isnan(full["noise_ratio"])
    assert full["primary_accuracy"] == pytest.approx(0.94)  # median of the noise-free simple cuts


def test_unmatched_rows_are_named_in_one_message():
    summary = pd.DataFrame(summary_rows())
    priv = pd.DataFrame(privacy_rows())
    priv = priv[priv["cut"] != "c3"]  # a measured cut without a score
    extra = dict(priv.iloc[0], cut="conv9", embedding="simple")  # a score without a measurement
    priv = pd.concat([priv, pd.DataFrame([extra])], ignore_index=True)
    with pytest.raises(UserError) as err:
        merge_privacy(summary, priv)
    msg = str(err.value)
    assert "\n" not in msg
    assert "toy/conv9/simple" in msg and "toy/c3/simple" in msg
    assert "no measurement" in msg and "no privacy score" in msg


def test_missing_column_is_named(tmp_path):
    priv = pd.DataFrame(privacy_rows()).drop(columns=["log_rank_privacy"])
    priv.to_csv(tmp_path / "privacy.csv", index=False)
    with pytest.raises(UserError, match="log_rank_privacy"):
        load_privacy(tmp_path / "privacy.csv")
    with pytest.raises(UserError, match="embedding"):
        merge_privacy(pd.DataFrame(summary_rows()), pd.DataFrame(privacy_rows()).drop(columns=["embedding"]))


def test_optional_columns_and_bad_values(tmp_path):
    minimal = pd.DataFrame(privacy_rows())[["model", "cut", "embedding", "log_rank_privacy"]]
    merged = merge_privacy(pd.DataFrame(summary_rows()), minimal)
    assert "attacker_accuracy" in merged.columns and merged["attacker_accuracy"].isna().all()
    dup = pd.concat([minimal, minimal.iloc[:1]])
    with pytest.raises(UserError, match="duplicated.*toy/c1/simple"):
        merge_privacy(pd.DataFrame(summary_rows()), dup)
    bad = minimal.astype({"log_rank_privacy": object})
    bad.loc[0, "log_rank_privacy"] = "high"
    with pytest.raises(UserError, match="numeric"):
        merge_privacy(pd.DataFrame(summary_rows()), bad)


# -------------------------------------------------------------------------------------------- network


def test_upload_time_is_delay_plus_bits_over_uplink():
    lte = get_profile("lte")
    assert (lte.uplink_mbps, lte.downlink_mbps, lte.delay_ms) == (15.0, 30.0, 25.0)
    assert upload_ms(1_875_000, lte) == pytest.approx(25.0 + 1000.0)  # 15 Mbit at 15 Mbps = 1 s
    assert upload_ms(0, lte) == pytest.approx(25.0)
    assert upload_ms(600_000, lte) == pytest.approx(345.0)  # FaceMix's whole 0.6 MB image
    custom = get_profile("custom", uplink_mbps=8.0, delay_ms=10.0)
    assert upload_ms(1000, custom) == pytest.approx(11.0)
    assert get_profile("wifi", delay_ms=1.0).delay_ms == 1.0
    assert set(PROFILES) == {"lte", "3g", "wifi", "5g"}
    assert all(p.source for p in PROFILES.values())
    with pytest.raises(UserError, match="uplink"):
        get_profile("custom")
    with pytest.raises(UserError, match="unknown network"):
        get_profile("carrier-pigeon")


# --------------------------------------------------------------------------------------------- choose


def test_frontier_on_a_hand_made_table():
    rec = choose(toy_table(), Budget(**FAST))
    assert [c.config for c in rec.frontier] == ["c1-simple", "c1-reduced", "c2-reduced"]
    assert [c.config for c in pareto_frontier(rec.candidates)] == ["c1-simple", "c1-reduced", "c2-reduced"]


def test_most_private_fitting_configuration_is_chosen():
    assert choose(toy_table(), Budget(**FAST)).choice.config == "c2-reduced"
    rec = choose(toy_table(), Budget(max_latency_ms=30, **FAST))
    assert rec.choice.config == "c1-reduced"
    assert choose(toy_table(), Budget(max_memory_mb=31, **FAST)).choice.config == "c1-reduced"
    assert choose(toy_table(), Budget(max_upload_kb=0.03, **FAST)).choice.config == "c2-reduced"
    assert choose(toy_table(), Budget(min_accuracy=0.935, **FAST)).choice.config == "c2-simple"


def test_ties_in_privacy_go_to_the_lower_latency():
    spec = [("a", "simple", 30.0, 10.0, 100, 0.4, 0.9), ("b", "simple", 20.0, 10.0, 100, 0.4, 0.9)]
    table = merge_privacy(pd.DataFrame(summary_rows(spec=spec)), pd.DataFrame(privacy_rows(spec=spec)))
    assert choose(table, Budget(**FAST)).choice.config == "b-simple"


def test_each_rejection_names_the_broken_constraint_with_numbers():
    rec = choose(toy_table(failed=True), Budget(max_latency_ms=30, max_memory_mb=31, max_upload_kb=3,
                                               min_accuracy=0.92, **FAST))
    assert rec.choice.config == "c1-reduced"
    why = {(c.config, c.backend): c.breaks for c in rec.others}
    assert any(b.startswith("upload 4.00 kB > 3 kB") for b in why[("c1-simple", "onnxruntime")])
    assert any(b.startswith("latency 40.0 ms > 30 ms") for b in why[("c2-reduced", "onnxruntime")])
    assert any(b.startswith("memory 32.0 MB > 31 MB") for b in why[("c2-reduced", "onnxruntime")])
    assert any(b.startswith("accuracy 0.910 < 0.92") for b in why[("c2-reduced", "onnxruntime")])
    assert why[("c1-simple", "litert")] == ("measurement timeout: worker exceeded 60 s",)
    assert rec.on_premise[0].breaks and "latency" in rec.on_premise[0].breaks[0]


def test_lte_and_cloud_part_enter_the_latency(tmp_path):
    d = write_run(tmp_path / "run", ratios=(0.0,), cloud=True)
    rec = choose(load_table(d), Budget(network="lte"))
    c = {(x.cut, x.embedding, x.backend): x for x in rec.candidates}[("c1", "simple", "onnxruntime")]
    assert rec.cloud_included
    assert c.latency_ms == pytest.approx(10.0 + 25.0 + 4000 * 8 / 15e6 * 1e3 + 5.0)


def test_impossible_budget_is_one_line_naming_the_closest():
    rec = choose(toy_table(), Budget(max_latency_ms=15, max_memory_mb=5, **FAST))
    assert rec.choice is None
    assert rec.closest.config == "c1-simple"  # the smallest summed relative excess
    line = rec.impossible_line()
    assert "\n" not in line and "c1-simple" in line and "memory 20.0 MB > 5 MB" in line


def test_bad_budget_values():
    with pytest.raises(UserError, match="fraction"):
        choose(toy_table(), Budget(min_accuracy=90))
    with pytest.raises(UserError, match="cpu-1core"):
        choose(toy_table(), Budget(target="pixel7"))


# ------------------------------------------------------------------------------------------------ CLI


def test_cli_prints_choice_frontier_and_rejections(tmp_path, capsys):
    d = write_run(tmp_path / "run")
    code = main(["recommend", str(d), "--max-latency-ms", "100", "--min-accuracy", "0.9", "--network", "lte"])
    out = " ".join(capsys.readouterr().out.split())  # rich wraps at the terminal width
    assert code == 0
    assert "Recommended:" in out and "Pareto frontier" in out and "cloud part is NOT included" in out
    assert "Recommended: c2-reduced on" in out  # the most private row that keeps accuracy >= 0.9 (r = 0)
    # every other configuration on one line, with the noise ratios that fit and what the others break
    assert "c2-reduced onnxruntime/cpu-1core 0.500–0.700 r = 0 chosen at r = 0" in out
    assert "c3-simple onnxruntime/cpu-1core 0.400–0.600 r = 0 fits, less private than c2-reduced; " \
           "accuracy at r = 0.5–2 (r = 0.5: 0.895 < 0.9)" in out
    assert "c2-reduced r=0.5" not in out  # (--all lists each ratio)


def test_frontier_leaves_out_rows_below_the_accuracy_floor():
    rec = choose(toy_table(ratios=(0.0, 2.0)), Budget(min_accuracy=0.9, **FAST))
    assert rec.choice.config == "c2-reduced"  # r=0: no noise, no suffix
    assert all(c.accuracy >= 0.9 for c in rec.frontier) and rec.choice in rec.frontier


def test_cli_impossible_budget_exits_nothing_fits_in_one_line(tmp_path, capsys):
    d = write_run(tmp_path / "run")
    code = main(["recommend", str(d), "--max-latency-ms", "1"])
    cap = capsys.readouterr()
    assert code == exitcodes.NOTHING_FITS != exitcodes.USAGE
    lines = cap.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in cap.err
    assert "closest is c1-" in lines[0] and "latency" in lines[0] and "> 1 ms" in lines[0]


def test_cli_json_parses(tmp_path, capsys):
    d = write_run(tmp_path / "run")
    assert main(["recommend", str(d), "--max-memory-mb", "31", "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["choice"]["cut"] == "c1" and obj["choice"]["embedding"] == "reduced"
    assert obj["frontier"] and all("latency_ms" in f for f in obj["frontier"])
    assert any("memory" in b for r in obj["rejections"] for b in r["breaks"])
    assert obj["network"]["name"] == "lte" and obj["cloud_included"] is False
    assert main(["recommend", str(d), "--max-latency-ms", "1", "--json"]) == exitcodes.NOTHING_FITS
    cap = capsys.readouterr()
    assert json.loads(cap.out)["choice"] is None and len(cap.err.strip().splitlines()) == 1


def test_without_budget_options_recommend_answers_for_the_reports_budget(tmp_path, capsys):
    """No option: the spec's [budget] table, else the report's default budget; the output names which."""
    from harness.analysis.recommend import ACCURACY_DROP, resolve_budgets

    d = write_run(tmp_path / "run", ratios=(0.0, 2.0), failed=False)
    assert main(["recommend", str(d), "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    floor = round(0.95 - ACCURACY_DROP, 4)  # c1-simple's noise-free accuracy, the best, minus 5 points
    assert "default budget" in obj["budget_source"] and obj["budget"]["min_accuracy"] == floor
    assert obj["choice"]["accuracy"] >= floor
    budgets, source = resolve_budgets(load_table(d), d, None)
    assert obj["choice"]["config"] == choose(load_table(d), budgets["toy"]).choice.config  # the report's answer

    manifest = json.loads((d / "manifest.json").read_text())
    manifest["spec"]["budget"] = {"max_latency_ms": 30.0, "network": "custom", "uplink_mbps": 1e6, "delay_ms": 0.0}
    (d / "manifest.json").write_text(json.dumps(manifest))
    assert main(["recommend", str(d)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "budget: latency <= 30 ms (the spec's [budget] table)" in out
    assert "Recommended: c1-reduced r=2 on" in out  # the most private row within 30 ms, with no accuracy floor
    assert main(["recommend", str(d), "--max-latency-ms", "15", "--network", "custom", "--uplink-mbps", "1e6",
                 "--delay-ms", "0", "--json"]) == 0  # an option replaces the spec's budget as a whole
    obj = json.loads(capsys.readouterr().out)
    assert obj["budget_source"] == "the command line" and obj["choice"]["cut"] == "c1"
    assert obj["choice"]["embedding"] == "simple"


def test_without_privacy_scores_the_fastest_fitting_cut_is_chosen_and_it_says_so(tmp_path, capsys):
    """Neurosurgeon's question: which cut, by cost alone. It works, and says privacy was not scored."""
    d = write_run(tmp_path / "run", privacy=False)
    assert main(["recommend", str(d), "--max-latency-ms", "60"]) == 0
    out = capsys.readouterr().out
    assert "privacy not scored" in out and "lowest end-to-end latency" in out
    table = load_table(d)
    rec = choose(table, Budget(max_latency_ms=60))
    assert not rec.privacy_scored and rec.choice is not None
    fitting = [c for c in rec.candidates if c.fits]
    assert rec.choice.latency_ms == min(c.latency_ms for c in fitting)
    assert not any("privacy" in b for c in rec.candidates for b in c.breaks)
    # the frontier is latency against memory: no point of it is beaten on both
    for f in rec.frontier:
        assert not any(o.latency_ms <= f.latency_ms and o.memory_mb < f.memory_mb for o in rec.candidates
                       if o.status == "ok" and o is not f)
    assert main(["recommend", str(d), "--json", "--max-latency-ms", "60"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["privacy_scored"] is False and "not scored" in obj["rule"]
    with pytest.raises(UserError, match="nothing was scored"):
        load_table(d, estimator="dpfe")


def test_terminal_table_fits_the_terminal_and_a_pipe_gets_whole_lines(tmp_path, capsys):
    import io

    from rich.console import Console

    from harness.analysis.recommend import recommend

    d = write_run(tmp_path / "run")
    budget = Budget(max_latency_ms=100, min_accuracy=0.9)
    for width in (80, 100):
        buf = io.StringIO()
        recommend(d, budget, console=Console(file=buf, width=width, force_terminal=True, color_system=None))
        text = buf.getvalue()
        assert "…" not in text and max(map(len, text.splitlines())) <= width
        assert "c2-reduced" in text and "onnxruntime/cpu-1core" in text
    # a pipe (capsys is no terminal): full column names, one line per configuration and place
    assert main(["recommend", str(d), "--max-latency-ms", "100", "--min-accuracy", "0.9"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(ln.split() == ["configuration", "backend/target", "privacy", "fits", "at", "r", "why", "not", "chosen"]
               for ln in lines)
    assert any(ln.split()[:4] == ["configuration", "backend/target", "privacy", "accuracy"] for ln in lines)
    rows = [ln for ln in lines if ln.split()[:1] == ["c1-simple"] and not ln.split()[1].startswith("r=")]
    assert len(rows) == 2 and "onnxruntime/cpu-1core" in rows[0] and "litert/cpu-1core" in rows[1]
    assert "r = 0–0.5" in rows[0] and "accuracy 0.850 < 0.9 at r = 2" in rows[0]
    assert "measurement timeout: worker exceeded 60 s" in rows[1]
    # --all: one line per noise ratio, as before
    assert main(["recommend", str(d), "--max-latency-ms", "100", "--min-accuracy", "0.9", "--all"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len([ln for ln in lines if ln.split()[:1] == ["c1-simple"] and "litert" not in ln
                and "yes" not in ln.split()]) == 3  # every ratio (the frontier's rows say yes or chosen)
    assert any(ln.split()[:2] == ["c1-simple", "r=0.5"] for ln in lines)


def test_numbers_in_the_terminal_carry_their_precision(tmp_path, capsys):
    d = write_run(tmp_path / "run", ratios=(0.0,))
    summary = pd.read_csv(d / "summary.csv")
    summary["infer_ms_median"] = summary["infer_ms_median"] / 800  # a small model: 12.5 µs
    summary.to_csv(d / "summary.csv", index=False)
    assert main(["recommend", str(d), "--network", "custom", "--uplink-mbps", "1000000", "--max-latency-ms",
                 "0.04"]) == 0
    out = capsys.readouterr().out
    import re

    assert "Recommended: c1-reduced" in out and "phone 25.0 µs" in out and "12.5 µs" in out
    assert not re.search(r"(?<![\d.])0\.0+(?![\d])", out)  # never "0.00" for a few microseconds
    assert "latency 0.0500 ms > 0.04 ms" in out  # a limit's breach: value and limit in the limit's unit


def test_backend_and_target_filters_and_the_json_keeps_its_keys(tmp_path, capsys):
    d = write_run(tmp_path / "run")
    assert main(["recommend", str(d), "--backend", "litert", "--json"]) == exitcodes.NOTHING_FITS  # only failed
    capsys.readouterr()
    assert main(["recommend", str(d), "--backend", "onnxruntime", "--target", "cpu-1core", "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert {"budget", "network", "latency", "cloud_included", "model", "estimator", "privacy_scored", "rule", "choice",
            "closest", "frontier", "rejections", "fitting_others", "on_premise"} <= set(obj)
    assert {"max_latency_ms", "max_memory_mb", "max_upload_kb", "network", "uplink_mbps", "delay_ms", "min_accuracy",
            "target"} <= set(obj["budget"])
    assert obj["budget"]["target"] == "cpu-1core" and obj["budget"]["backends"] == ["onnxruntime"]
    assert all(r["backend"] == "onnxruntime" for r in obj["rejections"])
    assert main(["recommend", str(d), "--backend", "coreml"]) == exitcodes.USAGE
    assert "no measurements on backend 'coreml'" in capsys.readouterr().err
    b = Budget(max_latency_ms=60, min_accuracy=0.9, target=("a", "b"), backends=("onnx",))
    assert b.command_line("DIR") == ("splitbench recommend DIR --max-latency-ms 60 --min-accuracy 0.9 --network lte "
                                     "--target a --target b --backend onnx")
