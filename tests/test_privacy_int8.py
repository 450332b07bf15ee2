"""Privacy and accuracy of the features an int8 phone part uploads (issue 19 item 4): the sweep scores
the int8 part's own feature, the merge joins per precision and never lets float32 scores stand for int8,
and the trade-off figures draw the precisions as separate series."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest

from harness.core.errors import UserError
from harness.analysis.table import merge_privacy
from test_recommend import TOY, privacy_rows, summary_rows

# --------------------------------------------------------------------------------------------------
# The sweep on the digits model


@pytest.fixture(scope="module")
def digits_sweeps():
    """The digits demo's sweep at a reduced size (2 cuts, 2 ratios, 6 epochs): float32 only, and both."""
    from harness.demo import digits_demo

    kw = dict(ratios=(0, 2.5), cuts=("conv2", "fc1"), epochs=6)
    return digits_demo(None, **kw), digits_demo(None, precisions=("float32", "int8"), **kw)


@pytest.mark.slow
def test_int8_rows_have_their_own_privacy_and_accuracy(digits_sweeps):
    only, both = digits_sweeps
    assert set(only["precision"]) == {"float32"}
    # int8 leaves the float32 rows exactly as they were (same numbers, same order)
    f32 = both[both["precision"] == "float32"].reset_index(drop=True)
    pd.testing.assert_frame_equal(f32, only.reset_index(drop=True), check_dtype=False)
    assert f32["calibration"].isna().all()  # a float32 part is not calibrated
    cuts = both[(both["precision"] == "int8") & (both["cut"] != "full")]
    expected = {(c, e, r) for c in ("conv2", "fc1") for e in ("simple", "reduced") for r in (0.0, 2.5)}
    assert set(zip(cuts["cut"], cuts["embedding"], cuts["noise_ratio"])) == expected and len(cuts) == len(expected)
    for col in ("primary_accuracy", "log_rank_privacy", "bayes_error", "attacker_accuracy"):
        assert cuts[col].between(0, 1).all(), col
    # the digits' own training images, drawn as the export draws them
    drawn = "model data: 32 of the 898 rows of digits_data(0)['train_x'], drawn with seed 0"
    assert (cuts["calibration"] == drawn).all()
    assert (cuts["warnings"].fillna("") == "").all()
    # the int8 part's feature is scored, not float32's: the numbers differ (same inputs, same noise draw)
    key = ["cut", "embedding", "noise_ratio"]
    pair = f32.merge(cuts, on=key, suffixes=("_f32", "_int8"))
    assert len(pair) == len(expected)
    assert (pair["bandwidth_f32"] != pair["bandwidth_int8"]).all()
    # Noise adds privacy to the int8 feature too.
    wide = cuts.pivot_table(index=["cut", "embedding"], columns="noise_ratio", values="log_rank_privacy")
    assert (wide[2.5] > wide[0.0]).all()
    # Accuracy: the float32 cloud part on the noise-free int8 feature is within 0.02 of float32 (18 of
    # 899 digits). Measured on this model (issue 19 research): int8 parts agree with float32 on the top-1
    # of 99.56-100% of the held-out digits on every backend, so 0.02 is 4.5x the worst disagreement seen,
    # and far below what noise does (r = 2.5 costs 0.2-0.3).
    clean = pair[pair["noise_ratio"] == 0]
    assert (clean["primary_accuracy_int8"] - clean["primary_accuracy_f32"]).abs().max() <= 0.02
    assert (clean["primary_accuracy_int8"] > 0.8).all()


@pytest.mark.slow
def test_int8_whole_model_accuracy_row(digits_sweeps):
    _, both = digits_sweeps
    full = both[both["cut"] == "full"]
    assert len(full) == 1 and full.iloc[0]["precision"] == "int8" and full.iloc[0]["embedding"] == "full"
    assert full.iloc[0]["noise_ratio"] == 0 and math.isnan(full.iloc[0]["log_rank_privacy"])
    assert abs(full.iloc[0]["primary_accuracy"] - both.attrs["full_accuracy"]) <= 0.02  # as the cuts above
    assert "nothing is uploaded" in full.iloc[0]["warnings"]


@pytest.mark.slow
def test_the_int8_part_computes_on_the_int8_grid():
    """The scored feature comes from a really quantized part: at most 256 distinct values per tensor
    (one scale, one zero point), close to float32's but not equal."""
    import torch

    from harness.analysis.privacy.quantized import Calibration, quantize_phone, uploaded_features
    from harness.split.configurations import split_at
    from models.digits import digits_data, train_digits_cnn

    data = digits_data(0)
    model = train_digits_cnn(data["train_x"][:300], data["train_digit"][:300] >= 5, epochs=2)
    phone, _ = split_at(model, "conv3")
    x = torch.from_numpy(data["test_x"][:64])
    calibration = Calibration(data=data["train_x"], samples=8, seed=5, origin="train_x")
    calib = calibration.inputs(x[:1])
    assert calibration.describe() == "model data: 8 of the 898 rows of train_x, drawn with seed 5"
    # the export's draw: 8 distinct rows, chosen with the seed, in row order
    rows = sorted(np.random.default_rng(5).choice(898, size=8, replace=False))
    assert calibration.rows() == rows and len(calib) == 8
    assert all(torch.equal(c[0], torch.from_numpy(data["train_x"][r])) for c, r in zip(calib, rows))
    assert all(c.is_contiguous() and c.stride() == (64, 64, 8, 1) for c in calib)
    q = uploaded_features(quantize_phone(phone, calib), x)
    with torch.no_grad():
        f = phone(x)
    assert q.shape == f.shape and len(torch.unique(q)) <= 256 < len(torch.unique(f))
    rel = float((q - f).abs().max() / f.abs().max())
    assert 0 < rel < 0.3  # the largest single difference; 0.057-0.28 on the demo's CNN over 899 digits (clipping)
    # without model data: seeded random inputs, the export's calibration_batch draw
    seeded_calibration = Calibration(samples=4, seed=7)
    seeded = seeded_calibration.inputs(torch.zeros(1, 1, 8, 8))
    assert seeded_calibration.describe() == "seeded random: 4 standard normal inputs, seed 7"
    assert torch.equal(torch.cat(seeded), torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(7)))


@pytest.mark.slow
def test_the_executorch_artifact_of_the_part_uploads_the_scored_feature(tmp_path):
    """The part the sweep scores, lowered to XNNPACK as the ExecuTorch int8 export lowers it and run by the
    ExecuTorch runtime, uploads the same feature: measured on every digits cut x embedding, 98.1-99.96% of
    the values are equal and the rest one or two int8 steps away (max 0.0078 of the largest value)."""
    pytest.importorskip("executorch.runtime")
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    from executorch.runtime import Runtime

    from harness.analysis.privacy.quantized import Calibration, quantize_phone, uploaded_features
    from harness.split.configurations import split_at
    from models.digits import digits_data, train_digits_cnn

    data = digits_data(0)
    model = train_digits_cnn(data["train_x"][:300], data["train_digit"][:300] >= 5, epochs=2)
    phone, _ = split_at(model, "conv2")
    calib = Calibration(data=data["train_x"], samples=16).inputs(torch.zeros(1, 1, 8, 8))
    part = quantize_phone(phone, calib)
    x = torch.from_numpy(data["test_x"][:64])
    scored = uploaded_features(part, x)
    program = to_edge_transform_and_lower(torch.export.export(part, (calib[0],)),
                                          partitioner=[XnnpackPartitioner()]).to_executorch()
    (tmp_path / "model.pte").write_bytes(program.buffer)
    method = Runtime.get().load_program(str(tmp_path / "model.pte")).load_method("forward")
    uploaded = torch.cat([method.execute([x[i:i + 1].clone(memory_format=torch.contiguous_format)])[0]
                          for i in range(x.shape[0])])
    assert uploaded.shape == scored.shape and len(torch.unique(uploaded)) <= 256  # an int8 artifact
    assert float((uploaded == scored).float().mean()) >= 0.95
    assert float((uploaded - scored).abs().max() / scored.abs().max()) <= 0.01


@pytest.mark.slow
def test_a_part_that_cannot_be_quantized_is_a_row_with_the_reason():
    import torch
    import torch.nn as nn

    from harness.analysis.privacy.sweep import privacy_sweep

    class DataDependent(nn.Module):  # torch.export cannot trace a branch on a tensor's value
        def forward(self, x):
            return x * 2 if float(x.sum()) > 0 else x

    model = nn.Sequential()
    model.add_module("block", DataDependent())
    model.add_module("head", nn.Sequential(nn.Flatten(1), nn.Linear(4, 2)))
    x = torch.randn(40, 4, generator=torch.Generator().manual_seed(0))
    y = np.arange(40) % 2
    table = privacy_sweep(model, ["block"], x, y, y, embeddings=["simple"], ratios=(0, 1),
                          precisions=("float32", "int8"), attacker=False)
    f32, int8 = table[table["precision"] == "float32"], table[table["precision"] == "int8"]
    assert len(f32) == 2 and f32["log_rank_privacy"].notna().all()
    assert len(int8[int8["cut"] == "block"]) == 2 and int8["log_rank_privacy"].isna().all()
    assert int8["primary_accuracy"].isna().all()
    assert int8["warnings"].str.contains("int8: torch.export of the phone part failed").all()


def test_precisions_are_checked():
    import torch

    from harness.analysis.privacy.sweep import privacy_sweep
    from models.digits import build_digits_cnn

    x, y = torch.zeros(20, 1, 8, 8), np.arange(20) % 2
    for bad, msg in ((("float16",), "unknown precision"), (("int8", "int8"), "once"), ((), "at least one")):
        with pytest.raises(UserError, match=msg):
            privacy_sweep(build_digits_cnn(), ["conv3"], x, y, y, precisions=bad)


@pytest.mark.slow
def test_the_spec_sweep_scores_every_precision_with_the_exports_calibration(tmp_path):
    """`[privacy] data`: every precision of `[export] precisions`; int8 calibrated on the spec's
    calibration_samples seeded inputs (this spec's model has no data of its own)."""
    import tomllib

    import torch

    from harness.analysis.privacy.stage import privacy_stage
    from harness.config.spec import parse_spec
    from models import digits

    torch.manual_seed(0)
    weights = tmp_path / "w.pt"
    torch.save(digits.build_digits_cnn().state_dict(), weights)
    rng = np.random.default_rng(0)
    labels = np.arange(60) % 3
    np.savez(tmp_path / "inputs.npz", inputs=rng.random((60, 1, 8, 8), dtype=np.float32), primary=labels % 2,
             sensitive=labels)
    spec = parse_spec(tomllib.loads(f"""
[model]
source = "{digits.__file__}:digits_factory"
weights = "{weights}"
[split]
cuts = ["fc1"]
embeddings = ["simple"]
[export]
precisions = ["float32", "int8"]
calibration_samples = 6
calibration_seed = 3
[privacy]
data = "{tmp_path / 'inputs.npz'}"
ratios = [0.0]
"""), origin="test", path=tmp_path / "spec.toml")
    table = pd.read_csv(privacy_stage(spec, tmp_path))
    assert sorted(zip(table["cut"], table["precision"])) == [("fc1", "float32"), ("fc1", "int8"), ("full", "int8")]
    # calibrated as the export calibrates: the digits module offers its own data (splitbench_data)
    assert set(table.loc[table["precision"] == "int8", "calibration"]) == {
        "model data: 6 of the 898 'calibration' rows of digits.py:splitbench_data(), drawn with seed 3"}
    assert table.loc[table["cut"] == "fc1", "log_rank_privacy"].notna().all()


# --------------------------------------------------------------------------------------------------
# The merge per precision


def _summary(precisions=("float32", "int8")) -> pd.DataFrame:
    """TOY measured in each precision; int8 is 4x faster and smaller."""
    frames = []
    for p in precisions:
        s = pd.DataFrame(summary_rows())
        if p != "float32":
            s[["infer_ms_median", "mem_model_mb"]] /= 4
        frames.append(s.assign(precision=p))
    return pd.concat(frames, ignore_index=True)


def _privacy(precisions=("float32", "int8"), ratios=(0.0, 1.0), int8_full: float | None = 0.91) -> pd.DataFrame:
    """TOY scored in each precision: int8 a little more private (+0.05) and less accurate (-0.01)."""
    frames = []
    for p in precisions:
        t = pd.DataFrame(privacy_rows(ratios=ratios))
        if p == "int8":
            t["log_rank_privacy"] += 0.05
            t["primary_accuracy"] -= 0.01
            if int8_full is not None:
                t = pd.concat([t, pd.DataFrame([dict(model="toy", cut="full", embedding="full", noise_ratio=0.0,
                                                     primary_accuracy=int8_full, log_rank_privacy=np.nan)])])
        frames.append(t.assign(precision=p))
    return pd.concat(frames, ignore_index=True)


def test_merge_joins_on_the_precision():
    merged = merge_privacy(_summary(), _privacy())
    cuts = merged[~merged["on_premise"]]
    assert len(cuts) == len(TOY) * 2 * 2  # configurations x precisions x ratios
    f32 = cuts[cuts["precision"] == "float32"].set_index(["cut", "embedding", "noise_ratio"])
    int8 = cuts[cuts["precision"] == "int8"].set_index(["cut", "embedding", "noise_ratio"])
    # every int8 row has its own measurement and its own scores
    assert np.allclose(int8["infer_ms_median"], f32["infer_ms_median"] / 4)
    assert np.allclose(int8["log_rank_privacy"], f32["log_rank_privacy"] + 0.05)
    assert np.allclose(int8["primary_accuracy"], f32["primary_accuracy"] - 0.01)
    full = merged[merged["on_premise"]].set_index("precision")
    assert full.loc["float32", "primary_accuracy"] == pytest.approx(0.94)  # float32's noise-free simple cuts
    assert full.loc["int8", "primary_accuracy"] == pytest.approx(0.91)  # the int8 whole model's own row
    assert full["log_rank_privacy"].isna().all()


def test_int8_on_premise_never_takes_a_cuts_accuracy():
    merged = merge_privacy(_summary(), _privacy(int8_full=None))
    full = merged[merged["on_premise"]].set_index("precision")
    assert full.loc["float32", "primary_accuracy"] == pytest.approx(0.94)
    assert math.isnan(full.loc["int8", "primary_accuracy"])  # unknown, not float32's, not an int8 cut's


def test_float32_scores_never_stand_for_int8_measurements(tmp_path):
    from harness.analysis.table import load_table

    # a user's table from before int8: no precision column, so float32's scores
    old = pd.DataFrame(privacy_rows(ratios=(0.0,)))
    assert "precision" not in old.columns
    merged = merge_privacy(_summary(("float32",)), old)  # still fine for a float32 run
    assert set(merged["precision"]) == {"float32"}
    # a run that measured int8 too, read as recommend and the report read it
    _summary().to_csv(tmp_path / "summary.csv", index=False)
    old.to_csv(tmp_path / "privacy.csv", index=False)
    with pytest.raises(UserError) as err:
        load_table(tmp_path)
    msg = str(err.value)
    assert "\n" not in msg and "no privacy score" in msg
    for cut, emb, *_ in TOY:
        assert f"toy/{cut}/{emb} int8" in msg
    assert "no precision column" in msg and "float32" in msg
    # a table with int8 scores for some configurations only: the others are named, never filled in
    partial = _privacy()
    partial = partial[~((partial["precision"] == "int8") & (partial["cut"] == "c3"))]
    with pytest.raises(UserError, match=r"no privacy score: toy/c3/simple int8$"):
        merge_privacy(_summary(), partial)
    # int8 scores with no int8 measurement are named too
    with pytest.raises(UserError, match=r"privacy rows with no measurement: toy/c1/reduced int8, .*toy/full/full int8"):
        merge_privacy(_summary(("float32",)), _privacy())


def test_an_unknown_precision_is_refused():
    bad = _privacy()
    bad.loc[3, "precision"] = "fp32"
    with pytest.raises(UserError, match="precision must be float32 or int8.*row 5 holds 'fp32'"):
        merge_privacy(_summary(), bad)


def test_the_recommendation_names_an_int8_choice():
    from harness.analysis.recommend import Budget
    from harness.analysis.recommend.choice import choose

    merged = merge_privacy(_summary(), _privacy(ratios=(0.0,)))
    rec = choose(merged, Budget(network="custom", uplink_mbps=1e6, delay_ms=0.0))
    # int8 is both faster and (here) more private: the most private fitting configuration is an int8 one
    assert rec.choice.precision == "int8" and rec.choice.config == "c2-reduced int8"


# --------------------------------------------------------------------------------------------------
# The trade-off figures


def _svg_paths(svg: str, gid: str) -> list[str]:
    """The path data of the artist matplotlib wrote with ``gid``."""
    m = re.search(rf'<g id="{re.escape(gid)}">(.*?)</g>', svg, re.S)
    assert m, gid
    return re.findall(r'<path d="([^"]+)"', m.group(1))


def _vertices(path: str) -> int:
    return len(re.findall(r"[ML]", path))


@pytest.mark.slow
def test_figures_draw_each_precision_as_its_own_series(tmp_path):
    from harness.report.tradeoff import accuracy_privacy_figure, cost_figures

    ratios = (0.0, 0.5, 1.0)
    privacy = _privacy(ratios=ratios)
    merged = merge_privacy(_summary(), privacy)
    cost_figures(merged, tmp_path)
    accuracy_privacy_figure(privacy, tmp_path)

    svg = (tmp_path / "privacy_vs_inference.svg").read_text()
    for text in ("onnxruntime / cpu-1core", "onnxruntime / cpu-1core int8",
                 "Pareto frontier, float32 (more privacy, less cost)",
                 "Pareto frontier, int8 (more privacy, less cost)",
                 "on-premise (onnxruntime / cpu-1core int8), nothing uploaded",
                 "c2-reduced int8", "c2-reduced"):
        assert f"<!-- {text} -->" in svg, text  # matplotlib keeps each text as a comment beside its glyphs
    # one scatter per precision, each with that precision's points only; a frontier per precision
    assert svg.count('id="series onnxruntime/cpu-1core/float32"') == 1
    assert svg.count('id="series onnxruntime/cpu-1core/int8"') == 1
    frontier = {p: _svg_paths(svg, f"frontier {p}") for p in ("float32", "int8")}
    # the frontier of each precision steps through its own 3 Pareto points (c1-simple, c1-reduced, c2-reduced):
    # a step line "post" has 2 vertices per point but the last
    assert [_vertices(frontier[p][0]) for p in ("float32", "int8")] == [5, 5]

    svg = (tmp_path / "accuracy_privacy.svg").read_text()
    assert "<!-- c1-simple int8 -->" in svg and "<!-- c1-simple -->" in svg and "(dashed, hollow: int8)" in svg
    for cut, emb, *_ in TOY:
        for p in ("float32", "int8"):
            line = _svg_paths(svg, f"curve {cut}-{emb} {p}")[0]
            assert _vertices(line) == len(ratios), (cut, emb, p)  # one curve per precision, never through both
