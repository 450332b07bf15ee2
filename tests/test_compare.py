"""`splitbench compare`: known answers on records built here (identical runs, a 2x slowdown, a 1% change
below the threshold, aggregate-only rows, a device change, rows on one side, failures, a shared core,
several devices, the correction over the whole comparison), then the CLI's exit codes and formats on
results directories written by the orchestrator with the scripted agent, and one real end-to-end run of
the CI profile at a reduced protocol (slow).
"""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
import tomllib
from pathlib import Path

import numpy as np
import pytest

from device_agents.base import CRASHED
from harness.analysis import compare as cmp
from harness import orchestrate
from harness.measure import executors
from harness.cli import main
from harness.split.configurations import configurations
from harness.core.errors import UserError
from harness.core.exitcodes import NOT_COMPARABLE, OK, REGRESSION, USAGE
from harness.results.records import Identity, ResultRecord
from harness.config.spec import load_spec, parse_spec
from tests.fakes import AGGREGATE, FakeAgent, FakeArtifact

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"
DEVICE = {"cpu_model": "Test CPU", "kernel": "6.1", "cpu_count": 2, "pinned_cpu": 1,
          "runtime_versions": {"onnxruntime": "1.0", "torch": "2.0"}}
JOB = {"runs": 60, "warmup": 5, "warm_loads": 5, "seed": 0, "input_shape": [1, 3, 8, 8], "backend": "onnx",
       "artifact_path": "/x", "timeout_s": 900.0, "artifact_key": "k"}


def timings(n: int = 60, level_ms: float = 2.0, spread: float = 0.01, seed: int = 0) -> list[int]:
    rng = np.random.default_rng(seed)
    return [int(level_ms * 1e6 * (1 + spread * x)) for x in rng.standard_normal(n)]


def record(config: str = "conv1-simple", backend: str = "onnx", *, infer_ns=None, aggregate=None, device=None,
           device_id: str = "local:a:cpu1", runtime: str = "onnxruntime 1.0", threads: int = 1, job=None,
           status: str = "ok", reason: str = "", artifact_bytes: int = 100_000, upload_bytes: int = 4096,
           cold_ns: int = 5_000_000, warm_ns=(3_000_000, 3_100_000, 2_900_000, 3_050_000, 2_950_000),
           peak_b: int = 20_000_000, cpu_share: float = 1.0, finished_at: str = "2026-01-01T00:00:00",
           target: str = "cpu-1core", model_definition: str = "def1") -> ResultRecord:
    """One result record as the orchestrator writes it, with the parts compare reads."""
    cut = config.split("-")[0]
    infer = list(infer_ns if infer_ns is not None else timings()) if aggregate is None else []
    wall = sum(infer) or 1
    result = {"status": status, "reason": reason}
    if status == "ok":
        result.update(infer_ns=infer, infer_aggregate=aggregate, load_cold_ns=cold_ns, cold_method="fadvise_dontneed",
                      load_warm_ns=list(warm_ns), memory=[{"method": "vmhwm_in_process", "before_load_b": 10_000_000,
                                                           "after_load_b": 15_000_000, "peak_b": peak_b}],
                      cpu_ns=int(wall * cpu_share), wall_runs_ns=wall, pinned_cpus=[1])
    identity = Identity(model="m", model_definition=model_definition, weights="seed:0", cut=cut,
                        embedding="full" if cut == "full" else "simple", reduced_dim=None, backend=backend,
                        artifact_key=f"art-{config}-{backend}", target=target, device_id=device_id,
                        runtime_version=runtime, threads=threads)
    return ResultRecord(record_key=f"{config}-{backend}-{device_id}-{finished_at}", identity=identity, config=config,
                        order=0 if cut == "conv1" else 1, artifact_path="/x", artifact_bytes=artifact_bytes,
                        costs={"upload_bytes": upload_bytes}, job=dict(job or JOB), result=result,
                        device=dict(device or DEVICE), finished_at=finished_at)


def metric(c: cmp.Comparison, name: str, config: str = "conv1-simple", backend: str = "onnx") -> cmp.MetricComparison:
    (pair,) = [p for p in c.pairs if p.config == config and p.backend == backend]
    return next(m for m in pair.metrics if m.metric == name)


def verdicts(c: cmp.Comparison) -> dict[str, str]:
    (pair,) = c.pairs
    return {m.metric: m.verdict for m in pair.metrics}


# --------------------------------------------------------------------------------------------------
# Known answers


def test_identical_runs_are_no_change_and_exit_0():
    c = cmp.compare_records([record()], [record()])
    assert verdicts(c) == {m.name: "no change" for m in cmp.METRICS}
    m = metric(c, "infer_median")
    assert m.ratio == 1.0 and m.ci_low <= 1 <= m.ci_high and m.p_adjusted == pytest.approx(1.0)
    assert m.test == cmp.TEST_RANK and metric(c, "infer_p90").test == cmp.TEST_QUANTILE
    assert metric(c, "load_cold").test == cmp.TEST_ONE and "threshold alone" in metric(c, "load_cold").note
    assert metric(c, "artifact_bytes").test == cmp.TEST_EXACT
    assert c.exit_code == OK and c.regressions == [] and c.tests == 3  # median, p90, warm load


def test_a_clear_2x_slowdown_is_slower_and_exit_7():
    c = cmp.compare_records([record()], [record(infer_ns=timings(level_ms=4.0, seed=1))])
    m = metric(c, "infer_median")
    assert m.verdict == "slower" and m.regression
    assert m.ratio == pytest.approx(2.0, rel=0.02) and m.ci_low < 2.0 < m.ci_high and m.ci_low > 1.9
    assert m.p_adjusted < 1e-10
    assert metric(c, "infer_p90").verdict == "slower"
    assert c.exit_code == REGRESSION
    assert [(p.name, x.metric) for p, x in c.regressions] == [("m/conv1-simple/onnx/cpu-1core", "infer_median"),
                                                               ("m/conv1-simple/onnx/cpu-1core", "infer_p90")]
    faster = cmp.compare_records([record(infer_ns=timings(level_ms=4.0, seed=1))], [record()])
    assert metric(faster, "infer_median").verdict == "faster" and faster.exit_code == OK


def test_a_1_percent_change_is_significant_but_below_the_threshold():
    base = timings(spread=0.001, seed=2)
    c = cmp.compare_records([record(infer_ns=base)], [record(infer_ns=[int(v * 1.01) for v in base])])
    m = metric(c, "infer_median")
    assert m.p_adjusted < 0.01  # the test sees it...
    assert m.ratio == pytest.approx(1.01, abs=1e-3)
    assert m.verdict == "no change" and c.exit_code == OK  # ...the practical size does not
    # the same change with a 0.5% threshold is a regression
    strict = cmp.compare_records([record(infer_ns=base)], [record(infer_ns=[int(v * 1.01) for v in base])],
                                 cmp.Options(thresholds={"infer_median": 0.005}))
    assert metric(strict, "infer_median").verdict == "slower" and strict.exit_code == REGRESSION


def test_beyond_the_threshold_but_not_significant_is_no_change():
    base = [1_000_000 * (1 + i) for i in range(6)]
    new = [int(v * 1.5) for v in base]  # 50% slower, but 6 runs that overlap
    c = cmp.compare_records([record(infer_ns=base)], [record(infer_ns=new)])
    m = metric(c, "infer_median")
    assert m.ratio == pytest.approx(1.5) and m.verdict == "no change"
    assert "not significant" in m.note


def test_aggregate_only_rows_use_welch_on_mean_std_n_and_say_so():
    def agg(mean_ms: float, **kw):
        return {"n": 50, "mean_ns": mean_ms * 1e6, "std_ns": mean_ms * 1e6 * 0.05, "min_ns": None, "max_ns": None,
                "percentiles": {}, "tool": "benchmark_model (test)", **kw}

    same = cmp.compare_records([record(aggregate=agg(2.0))], [record(aggregate=agg(2.0))])
    m = metric(same, "infer_median")
    assert m.test == cmp.TEST_WELCH and "aggregate-only" in m.note and "mean" in m.note
    assert m.verdict == "no change" and m.base == pytest.approx(2.0) and m.n_base == 50
    p90 = metric(same, "infer_p90")
    assert p90.verdict == "not comparable" and "printed no p90" in p90.note

    slower = cmp.compare_records([record(aggregate=agg(2.0))], [record(aggregate=agg(3.0))])
    m = metric(slower, "infer_median")
    assert m.verdict == "slower" and m.ratio == pytest.approx(1.5) and m.ci_low < 1.5 < m.ci_high
    assert m.p_value < 1e-10 and slower.exit_code == REGRESSION

    tails = cmp.compare_records([record(aggregate=agg(2.0, percentiles={"90": 2.2e6}))],
                                [record(aggregate=agg(2.0, percentiles={"90": 4.4e6}))])
    p90 = metric(tails, "infer_p90")
    assert p90.test == cmp.TEST_TOOL and p90.verdict == "slower" and p90.p_value is None

    mixed = cmp.compare_records([record()], [record(aggregate=agg(2.0))])
    assert "one side" in metric(mixed, "infer_median").note and metric(mixed, "infer_median").test == cmp.TEST_WELCH


def test_a_device_change_is_not_comparable_and_says_what_differs():
    new = record(device={**DEVICE, "kernel": "6.2"}, device_id="local:b:cpu1", infer_ns=timings(level_ms=4.0))
    c = cmp.compare_records([record()], [new])
    (pair,) = c.pairs
    assert pair.status == "not comparable" and pair.metrics == ()
    assert pair.differences == ("device kernel: '6.1' -> '6.2'",)
    assert c.exit_code == NOT_COMPARABLE
    allowed = cmp.compare_records([record()], [new], cmp.Options(allow_device_change=True))
    (pair,) = allowed.pairs
    assert pair.status == "compared" and pair.marked and allowed.exit_code == REGRESSION
    assert "device id local:a:cpu1 -> local:b:cpu1" in pair.changes


def test_a_new_host_with_the_same_fingerprint_pairs():
    c = cmp.compare_records([record(device_id="local:ci-1:cpu1")], [record(device_id="local:ci-2:cpu1")])
    assert c.pairs[0].status == "compared" and c.exit_code == OK


@pytest.mark.parametrize("change, differs", [
    (dict(runtime="onnxruntime 1.1"), "runtime 'onnxruntime 1.0' -> 'onnxruntime 1.1'"),
    (dict(threads=2), "threads 1 -> 2"),
    (dict(job={**JOB, "runs": 30}), "protocol runs: 60 -> 30"),
    (dict(job={**JOB, "input_shape": [1, 3, 16, 16]}), "protocol input_shape: [1, 3, 8, 8] -> [1, 3, 16, 16]"),
])
def test_runtime_threads_or_protocol_changes_are_not_comparable(change, differs):
    c = cmp.compare_records([record()], [record(**change)])
    assert c.pairs[0].status == "not comparable" and c.pairs[0].differences == (differs,)


def test_a_converter_upgrade_is_compared_not_refused():
    device = {**DEVICE, "runtime_versions": {"onnxruntime": "1.0", "torch": "2.1"}}
    c = cmp.compare_records([record()], [record(device=device, model_definition="def2")])
    assert c.pairs[0].status == "compared" and "model definition" in c.pairs[0].changes


def test_rows_on_one_side_only_are_listed_never_dropped():
    base = [record("conv1-simple"), record("conv2-simple")]
    new = [record("conv1-simple"), record("full")]
    c = cmp.compare_records(base, new)
    statuses = {p.config: p.status for p in c.pairs}
    assert statuses == {"conv1-simple": "compared", "conv2-simple": "only in BASE", "full": "only in NEW"}
    assert c.exit_code == OK
    assert cmp.compare_records([record("conv2-simple")], [record("full")]).exit_code == NOT_COMPARABLE
    md = cmp.render_markdown(c)
    assert "m/conv2-simple/onnx/cpu-1core`: only in BASE" in md and "m/full/onnx/cpu-1core`: only in NEW" in md


def _as(r: ResultRecord, precision: str, **result) -> ResultRecord:
    """``r`` as another precision (another artifact, another record), its result changed by ``result``."""
    ident = dataclasses.replace(r.identity, precision=precision, artifact_key=f"{r.identity.artifact_key}-{precision}")
    return dataclasses.replace(r, identity=ident, record_key=f"{r.record_key}-{precision}",
                               result={**r.result, **result})


def test_an_int8_row_never_pairs_with_a_float32_one():
    float32, int8 = record(), _as(record(), "int8", infer_ns=timings(level_ms=0.5))
    c = cmp.compare_records([float32], [int8])  # the same configuration, backend and device: still two rows
    assert sorted((p.status, p.precision) for p in c.pairs) == [("only in BASE", "float32"), ("only in NEW", "int8")]
    assert c.exit_code == NOT_COMPARABLE and not any(p.regression for p in c.pairs)
    both = cmp.compare_records([float32, _as(record(), "int8")], [record(infer_ns=timings(level_ms=4.0)), int8])
    by = {p.precision: p for p in both.pairs}
    assert len(both.pairs) == 2 and all(p.status == "compared" for p in both.pairs)
    assert metric_of(by["float32"], "infer_median").verdict == "slower"  # 2 ms -> 4 ms, float32 against float32
    assert metric_of(by["int8"], "infer_median").verdict == "faster"  # 2 ms -> 0.5 ms, int8 against int8
    assert by["int8"].name == "m/conv1-simple/int8/onnx/cpu-1core" and by["float32"].name == "m/conv1-simple/onnx/cpu-1core"


def metric_of(pair, name: str):
    return next(m for m in pair.metrics if m.metric == name)


def test_a_configuration_failing_in_new_only_is_a_regression():
    c = cmp.compare_records([record()], [record(status=CRASHED, reason="worker crashed\nSegmentation fault")])
    (pair,) = c.pairs
    assert pair.status == "failed in NEW" and "crashed in NEW: worker crashed" in pair.notes[-1]
    assert c.exit_code == REGRESSION
    never_measured = dataclasses.replace(record(status="failed", reason="export failed: unsupported op"), device={},
                                         job={})
    c = cmp.compare_records([record()], [never_measured])
    assert c.pairs[0].status == "failed in NEW" and "export failed" in c.pairs[0].notes[-1]
    fixed = cmp.compare_records([record(status=CRASHED, reason="boom")], [record()])
    assert fixed.pairs[0].status == "not comparable" and fixed.exit_code == NOT_COMPARABLE
    skipped = cmp.compare_records([record(status="skipped", reason="Core ML needs iOS or macOS")],
                                  [record(status="skipped", reason="Core ML needs iOS or macOS")])
    assert "skipped in BASE" in skipped.pairs[0].notes[0] and skipped.exit_code == NOT_COMPARABLE


def test_times_from_a_shared_core_are_not_comparable_memory_and_sizes_are():
    c = cmp.compare_records([record()], [record(infer_ns=timings(level_ms=4.0), cpu_share=0.5, cold_ns=50_000_000,
                                                artifact_bytes=150_000)])
    m = metric(c, "infer_median")
    assert m.verdict == "not comparable" and m.disturbed and "NEW's core was shared (the worker got 50%" in m.note
    assert m.ratio == pytest.approx(2.0, rel=0.02)  # shown, not judged
    for name in ("infer_p90", "load_warm", "load_cold"):
        assert metric(c, name).verdict == "not comparable" and metric(c, name).disturbed
    assert metric(c, "mem_model").verdict == "no change"
    assert metric(c, "artifact_bytes").verdict == "bigger" and c.exit_code == REGRESSION
    assert "times of 1 not judged: a core was shared" in cmp.render_markdown(c)


def test_several_devices_of_one_row_pair_by_device_id():
    base = [record(device_id="phone:A"), record(device_id="phone:B")]
    new = [record(device_id="phone:A", infer_ns=timings(level_ms=4.0)), record(device_id="phone:C")]
    c = cmp.compare_records(base, new)
    by = {(p.base_device, p.new_device): p for p in c.pairs}
    assert by[("phone:A", "phone:A")].status == "compared" and by[("phone:A", "phone:A")].regression
    assert by[("phone:B", None)].status == "only in BASE" and "several devices" in by[("phone:B", None)].notes[0]
    assert by[(None, "phone:C")].status == "only in NEW"
    assert by[("phone:A", "phone:A")].name == "m/conv1-simple/onnx/cpu-1core/phone:A"


def test_an_older_record_of_the_same_row_is_set_aside():
    old = record(finished_at="2026-01-01T00:00:00", model_definition="old", infer_ns=timings(level_ms=9.0))
    c = cmp.compare_records([old, record(finished_at="2026-01-02T00:00:00")], [record()])
    (pair,) = c.pairs
    assert pair.status == "compared" and "1 older record(s)" in pair.notes[0] and c.exit_code == OK


def test_false_alarms_are_controlled_over_the_whole_comparison():
    """A complete separation of 6 runs gives p = 0.0022: a regression alone, not among twenty tests."""
    base = [1_000_000 + 1000 * i for i in range(6)]
    new = [int(v * 1.5) for v in base]
    alone = cmp.compare_records([record(infer_ns=base)], [record(infer_ns=new)])
    assert metric(alone, "infer_median").p_value == pytest.approx(2 / 924)
    assert metric(alone, "infer_median").verdict == "slower"
    others = [record(f"c{i}-simple", infer_ns=base) for i in range(9)]
    crowd = cmp.compare_records([record(infer_ns=base), *others], [record(infer_ns=new), *others])
    m = metric(crowd, "infer_median")
    assert m.p_value == pytest.approx(2 / 924) and m.p_adjusted > 0.01
    assert m.verdict == "no change" and "not significant" in m.note and crowd.exit_code == OK


def test_zero_and_missing_values_are_not_comparable_never_a_division_error():
    c = cmp.compare_records([record(upload_bytes=0, warm_ns=())], [record(upload_bytes=0, warm_ns=())])
    assert metric(c, "upload_bytes").verdict == "no change"
    assert metric(c, "load_warm").verdict == "not comparable" and "no warm loads" in metric(c, "load_warm").note
    grown = cmp.compare_records([record(upload_bytes=0)], [record(upload_bytes=10)])
    assert metric(grown, "upload_bytes").verdict == "not comparable"


def test_parse_thresholds():
    assert cmp.parse_thresholds(["5%"]) == {m.name: 0.05 for m in cmp.METRICS}
    assert cmp.parse_thresholds(["0.2", "infer_median=3%"])["infer_median"] == pytest.approx(0.03)
    assert cmp.parse_thresholds(["0.2", "infer_median=3%"])["load_cold"] == pytest.approx(0.2)
    for bad in ("fast", "infer_mean=5%", "-1", "nan"):
        with pytest.raises(UserError):
            cmp.parse_thresholds([bad])


def test_json_has_every_number_and_maps_to_bencher_and_github_action_benchmark():
    c = cmp.compare_records([record()], [record(infer_ns=timings(level_ms=4.0, seed=1))])
    data = json.loads(json.dumps(cmp.to_json(c)))
    assert data["outcome"] == "regression" and data["exit_code"] == REGRESSION
    assert data["correction"] == "benjamini-hochberg" and data["alpha"] == 0.01 and data["tests"] == 3
    (pair,) = data["pairs"]
    m = pair["metrics"][0]
    for key in ("name", "unit", "base", "new", "ratio", "ci_low", "ci_high", "test", "p_value", "p_adjusted",
                "threshold", "verdict", "regression"):
        assert key in m
    assert m["name"] == "m/conv1-simple/onnx/cpu-1core/infer_median" and m["unit"] == "ms"
    bmf = {x["name"]: {"latency": {"value": x["new"]}} for p in data["pairs"] for x in p["metrics"]}  # Bencher
    gab = [{"name": x["name"], "unit": x["unit"], "value": x["new"]} for p in data["pairs"] for x in p["metrics"]]
    assert len(bmf) == len(gab) == len(cmp.METRICS)


# --------------------------------------------------------------------------------------------------
# The command line, on results directories written by the orchestrator


def _fake_export(tmp_path: Path):
    def export(spec, *, progress):
        return [FakeArtifact(config=c, backend=b, key=f"key-{c.name}-{b}", path=tmp_path / "art" / f"{c.name}__{b}.bin",
                             converter={"name": f"{b}-conv", "version": "0.1"})
                for c in configurations(spec) for b in spec.export.backends]

    return export


class Kernel7(FakeAgent):
    """The same device after a kernel upgrade."""

    def describe(self):
        info = super().describe()
        return dataclasses.replace(info, fingerprint={**info.fingerprint, "kernel": "7.0"})


@pytest.fixture
def results(monkeypatch, tmp_path):
    """Write a results directory with a fresh scripted agent: results(name, agent class, **options) -> its path."""
    spec = load_spec(FIXTURES / "tiny.toml")
    spec = dataclasses.replace(spec, export=dataclasses.replace(spec.export, backends=("onnx", "litert")),
                               run=dataclasses.replace(spec.run, runs=30, warmup=2, warm_loads=3))
    monkeypatch.setattr(orchestrate, "export_artifacts", _fake_export(tmp_path))
    monkeypatch.setattr(orchestrate, "POST_RUN", ())

    def write(name: str, agent_class=FakeAgent, runs: int | None = None, **agent_options) -> Path:
        agent = agent_class(**agent_options)
        monkeypatch.setattr(executors, "open_agent", lambda target, **options: agent)
        out = tmp_path / name
        orchestrate.run_spec(spec, out, progress=False, runs=runs)
        return out

    return write


def test_cli_exit_codes(results, capsys):
    base, same, slower = results("base"), results("same"), results("slower", speed=2.0)
    assert main(["compare", str(base), str(same)]) == OK
    assert "no regression (6 of 6 rows compared; exit 0)" in capsys.readouterr().out
    assert main(["compare", str(base), str(slower)]) == REGRESSION
    out = capsys.readouterr().out
    assert "6 regressions" in out
    assert "regression: tiny_model:build/conv1-simple/onnx/cpu-1core: inference median slower" in out
    assert main(["compare", str(base), str(slower), "--threshold", "infer_median=200%",
                 "--threshold", "infer_p90=200%"]) == OK
    assert main(["compare", str(base), str(results("agg", script={("full", "litert"): AGGREGATE}))]) == OK
    assert main(["compare", str(base), str(results("crash", script={("full", "litert"): CRASHED}))]) == REGRESSION
    assert "failed in NEW" in capsys.readouterr().out


def test_cli_device_change_nothing_comparable_and_allowed(results, capsys):
    base = results("base")
    assert main(["compare", str(base), str(results("host2", device_id="fake:1"))]) == OK  # a new host id pairs
    moved = results("kernel7", Kernel7)
    capsys.readouterr()
    assert main(["compare", str(base), str(moved)]) == NOT_COMPARABLE
    out = capsys.readouterr().out
    assert "device kernel: '6.0' -> '7.0'" in out and "nothing comparable" in out
    assert main(["compare", str(base), str(moved), "--allow-device-change", "--format", "json"]) == OK
    data = json.loads(capsys.readouterr().out)
    assert all(p["compared_across_change"] and p["status"] == "compared" for p in data["pairs"])


def test_cli_bad_input_is_one_line(results, tmp_path, capsys):
    base = results("base")
    capsys.readouterr()
    assert main(["compare", str(base), str(tmp_path / "missing")]) == USAGE
    err = capsys.readouterr().err
    assert err.startswith("error: NEW ") and "no such results directory" in err and err.count("\n") == 1
    (tmp_path / "empty").mkdir()
    assert main(["compare", str(base), str(tmp_path / "empty")]) == USAGE
    assert "not a results directory" in capsys.readouterr().err
    assert main(["compare", str(base), str(base), "--format", "xml"]) == USAGE
    assert main(["compare", str(base), str(base), "--threshold", "fast"]) == USAGE
    assert main(["compare", str(base), str(base), "--alpha", "2"]) == USAGE


def test_cli_formats(results, capsys):
    base, slower = results("base"), results("slower", speed=2.0)
    assert main(["compare", str(base), str(slower), "--format", "json"]) == REGRESSION
    data = json.loads(capsys.readouterr().out)
    assert data["outcome"] == "regression" and len(data["pairs"]) == 6
    assert {p["status"] for p in data["pairs"]} == {"compared"}
    assert main(["compare", str(base), str(slower), "--format", "md"]) == REGRESSION
    md = capsys.readouterr().out
    assert md.startswith("### :x: splitbench compare: 6 regressions")
    assert "| configuration | metric | BASE | NEW | ratio | 95% CI | p adj. | test | verdict | note |" in md
    assert "**slower**" in md and "<details><summary>All 42 comparisons</summary>" in md
    # In a pipe (capsys is not a terminal) the table keeps its width: each row is one line, not cut at 80.
    assert main(["compare", str(base), str(slower)]) == REGRESSION
    table = capsys.readouterr().out
    row = next(line for line in table.splitlines() if "conv1-simple onnx cpu-1core" in line)
    assert len(row) > 80 and "inference median" in row and "slower" in row


def test_render_table_to_a_stream():
    c = cmp.compare_records([record()], [record()])
    buf = io.StringIO()
    cmp.render_table(c, buf)
    text = buf.getvalue()
    assert "no regression (1 of 1 rows compared; exit 0)" in text and "Benjamini-Hochberg over the 3 tests" in text


# --------------------------------------------------------------------------------------------------
# The CI profile for real (reduced protocol): same code exits 0, the model 30% wider exits 7


def _ci_variant(where: Path, width: float, cache: Path) -> Path:
    where.mkdir(parents=True)
    model = (ROOT / "examples" / "ci_model.py").read_text()
    assert "WIDTH = 1.0\n" in model
    (where / "ci_model.py").write_text(model.replace("WIDTH = 1.0\n", f"WIDTH = {width}\n"))
    data = tomllib.loads((ROOT / "examples" / "ci_smoke.toml").read_text())
    data["split"]["cuts"] = ["block1"]
    data["export"] = {**data["export"], "backends": ["onnx"], "cache_dir": str(cache)}
    data["run"] = {**data["run"], "runs": 20, "warmup": 2, "warm_loads": 2}
    return where, data


@pytest.mark.slow
def test_ci_profile_same_code_exits_0_and_a_wider_model_exits_7(tmp_path, capsys):
    from harness.orchestrate import run_spec

    cache = tmp_path / "cache"
    outs = {}
    for name, width in (("base", 1.0), ("same", 1.0), ("wide", 1.3)):
        where, data = _ci_variant(tmp_path / f"spec_{name}", width, cache)
        spec = parse_spec(data, origin=str(where / "ci_smoke.toml"), path=where / "ci_smoke.toml")
        outs[name] = tmp_path / name
        assert run_spec(spec, outs[name], progress=False).exit_code == 0
    rc = main(["compare", str(outs["base"]), str(outs["same"]), "--format", "md"])
    assert rc == OK, capsys.readouterr().out
    capsys.readouterr()
    assert main(["compare", str(outs["base"]), str(outs["wide"]), "--format", "json"]) == REGRESSION
    data = json.loads(capsys.readouterr().out)
    named = {r.split(": ")[0] for r in data["regressions"]}
    assert named == {"ci_model:build/block1-simple/onnx/cpu-1core", "ci_model:build/full/onnx/cpu-1core"}
    sizes = {(p["config"], m["metric"]): m["verdict"] for p in data["pairs"] for m in p["metrics"]}
    assert sizes[("block1-simple", "artifact_bytes")] == sizes[("block1-simple", "upload_bytes")] == "bigger"
    shutil.rmtree(cache)


# --------------------------------------------------------------------------------------------------
# Too few runs for a test (issue 21, defect 8): "not tested", never a regression on the threshold alone


def test_one_timed_run_a_side_is_not_tested_never_a_regression():
    """The issue's case: one timed run each, 1.38x apart; the threshold alone called it a regression."""
    c = cmp.compare_records([record(infer_ns=[1_000_000], warm_ns=(3_000_000,))],
                            [record(infer_ns=[1_380_000], warm_ns=(3_000_000,))])
    for name in ("infer_median", "infer_p90", "load_warm"):
        m = metric(c, name)
        assert m.verdict == cmp.NOT_TESTED and not m.regression and m.p_value is None and not m.tested
        assert "cannot reach p < 0.01" in m.note and "a side" in m.note
    assert metric(c, "infer_median").ratio == pytest.approx(1.38)  # shown, not judged
    assert metric(c, "infer_median").test == cmp.TEST_RANK and "needs at least 5" in metric(c, "infer_median").note
    assert metric(c, "artifact_bytes").verdict == "no change"  # exact figures are still judged
    assert c.exit_code == OK and c.regressions == [] and c.tests == 0
    assert len(c.not_tested) == 3


@pytest.mark.parametrize("n, verdict", [(4, cmp.NOT_TESTED), (5, "slower")])
def test_the_rank_test_runs_only_where_it_can_reach_alpha(n, verdict):
    """Four runs a side that do not overlap at all give p = 0.029 at best: not tested; five give 0.008 (the only
    test of the comparison: the 3 warm loads a side are not tested either)."""
    base = [1_000_000 + 1000 * i for i in range(n)]
    loads = (3_000_000, 3_100_000, 2_900_000)
    c = cmp.compare_records([record(infer_ns=base, warm_ns=loads)], [record(infer_ns=[2 * v for v in base],
                                                                            warm_ns=loads)])
    assert metric(c, "load_warm").verdict == cmp.NOT_TESTED
    assert metric(c, "infer_median").verdict == verdict
    assert c.exit_code == (REGRESSION if verdict == "slower" else OK)
    assert cmp.best_p(cmp.TEST_RANK, 5, 5) == pytest.approx(2 / 252)


def test_the_p90_of_30_runs_is_not_tested_60_are():
    for n, tested in ((30, False), (60, True)):
        c = cmp.compare_records([record(infer_ns=timings(n))], [record(infer_ns=timings(n, level_ms=4.0, seed=1))])
        p90 = metric(c, "infer_p90")
        assert p90.tested is tested and (p90.verdict == "slower") is tested
        assert metric(c, "infer_median").verdict == "slower"


def test_a_tool_figure_of_one_run_is_not_tested_of_fifty_is_judged():
    def agg(n: int, mean_ms: float):
        return {"n": n, "mean_ns": mean_ms * 1e6, "std_ns": None, "min_ns": None, "max_ns": None, "percentiles": {},
                "tool": "benchmark_model (test)"}

    one = cmp.compare_records([record(aggregate=agg(1, 2.0))], [record(aggregate=agg(1, 3.0))])
    m = metric(one, "infer_median")
    assert m.test == cmp.TEST_TOOL and m.verdict == cmp.NOT_TESTED and "the tool timed 1 and 1 runs" in m.note
    assert one.exit_code == OK
    fifty = cmp.compare_records([record(aggregate=agg(50, 2.0))], [record(aggregate=agg(50, 3.0))])
    assert metric(fifty, "infer_median").verdict == "slower" and fifty.exit_code == REGRESSION


def test_not_tested_in_every_format(results, capsys):
    """Results directories of one timed run each (the orchestrator, a scripted agent 1.38x slower in NEW):
    exit 0, and the table, Markdown and JSON each say which metrics were not tested; nothing on disk changes."""
    import hashlib

    base, new = results("base1", runs=1), results("new1", runs=1, speed=1.38)
    hashes = {p: hashlib.sha256(p.read_bytes()).hexdigest() for d in (base, new) for p in (d / "records").glob("*")}
    capsys.readouterr()
    assert main(["compare", str(base), str(new)]) == OK
    table = capsys.readouterr().out
    assert "not tested" in table and "regression:" not in table
    assert "no regression (6 of 6 rows compared; exit 0); 18 metrics not tested (too few runs for a test)" in table
    assert main(["compare", str(base), str(new), "--format", "md"]) == OK
    md = capsys.readouterr().out
    assert md.startswith("### :white_check_mark: splitbench compare: no regression") and "18 metrics not tested" in md
    assert "<b>18 metrics not tested</b>" in md and "| not tested |" in md
    assert main(["compare", str(base), str(new), "--format", "json"]) == OK
    data = json.loads(capsys.readouterr().out)
    assert data["schema_version"] == 2 and data["outcome"] == "no regression" and len(data["not_tested"]) == 18
    verdicts_ = {(p["config"], p["backend"], m["metric"]): (m["verdict"], m["tested"])
                 for p in data["pairs"] for m in p["metrics"]}
    assert verdicts_[("conv1-simple", "onnx", "infer_median")] == ("not tested", False)
    assert verdicts_[("conv1-simple", "onnx", "artifact_bytes")] == ("no change", True)
    assert hashes == {p: hashlib.sha256(p.read_bytes()).hexdigest() for d in (base, new)
                      for p in (d / "records").glob("*")}
