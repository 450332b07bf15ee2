"""`splitbench run`: records, tables, manifest, failures as rows, --resume, Ctrl-C, statistics, figures.

Most tests drive the orchestrator with a scripted device agent and artifact records (no export, no
worker), so they check the orchestration itself in milliseconds. The last test is a real run of a
tiny model through the export cache and the local single-core agent.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from device_agents.base import CRASHED, TIMEOUT, MeasureJob
from harness import orchestrate
from harness.measure import executors
from harness.results import stats, store, tables
from harness.split.configurations import configurations
from harness.core.errors import UserError
from harness.results.records import RESULTS_SCHEMA_VERSION, Identity, ResultRecord, device_essentials, make_record_key
from harness.config.spec import load_spec, spec_hash
from tests.fakes import FakeAgent, FakeArtifact

FIXTURES = Path(__file__).parent / "fixtures"
RUNS = 8


def _spec(tmp_path: Path, backends=("onnx", "litert"), runs: int = RUNS):
    spec = load_spec(FIXTURES / "tiny.toml")
    return dataclasses.replace(
        spec, export=dataclasses.replace(spec.export, backends=tuple(backends), cache_dir=tmp_path / "cache"),
        run=dataclasses.replace(spec.run, runs=runs, warmup=2, warm_loads=3))


def _fake_export(tmp_path: Path, failing: dict | None = None):
    """An exporter returning one FakeArtifact per (configuration, backend); ``failing`` maps to a reason."""
    failing = failing or {}

    def export(spec, *, progress):
        out = []
        for c in configurations(spec):
            for b in spec.export.backends:
                reason = failing.get((c.name, b))
                path = tmp_path / "art" / f"{c.name}__{b}.bin"
                out.append(FakeArtifact(config=c, backend=b, key=f"key-{c.name}-{b}", path=None if reason else path,
                                        status="failed" if reason else "ok", reason=reason or "",
                                        converter={"name": f"{b}-conv", "version": "0.1"}))
        return out

    return export


@pytest.fixture
def fake(monkeypatch, tmp_path):
    """Install a fake exporter and agent; returns a function to (re)configure them."""
    state: dict[str, Any] = {}

    def setup(script=None, failing=None, raise_on_call=None, agents=None, **kw):
        agent = FakeAgent(script=script, raise_on_call=raise_on_call, **kw)
        by_target = agents or {}
        monkeypatch.setattr(orchestrate, "export_artifacts", _fake_export(tmp_path, failing))
        monkeypatch.setattr(executors, "open_agent", lambda target, **options: by_target.get(target, agent))
        monkeypatch.setattr(orchestrate, "POST_RUN", ())  # cloud and privacy need a real model; figures tested alone
        state["agent"] = agent
        return agent

    return setup


def _run(spec, out, **kw):
    return orchestrate.run_spec(spec, out, progress=False, **kw)


# tiny.toml: conv1-simple, conv2-simple, full; x2 backends = 6 jobs
N_JOBS = 6


# --------------------------------------------------------------------------------------------------
# Results files


def test_run_writes_manifest_records_and_tables(fake, tmp_path):
    agent = fake()
    out = tmp_path / "out"
    outcome = _run(_spec(tmp_path), out)
    assert outcome.exit_code == 0
    assert len(agent.calls) == N_JOBS and len(outcome.records) == N_JOBS
    assert len(list((out / "records").glob("*.json"))) == N_JOBS

    manifest = json.loads((out / "manifest.json").read_text())
    for key in ("schema_version", "schema_history", "host", "devices", "versions", "converters", "git",
                "splitbench_version", "spec", "spec_hash", "started_at", "ended_at", "status", "counts"):
        assert key in manifest, key
    assert manifest["schema_version"] == RESULTS_SCHEMA_VERSION
    for key in ("cpu_model", "kernel", "cpu_governor", "mem_total_b", "python"):
        assert key in manifest["host"]
    assert manifest["devices"]["fake:0"]["fingerprint"]["cpu_model"] == "Fake CPU"
    assert manifest["devices"]["fake:0"]["spec_target"] == "cpu-1core"
    assert manifest["status"] == "complete" and manifest["counts"]["ok"] == N_JOBS
    assert manifest["spec"]["run"]["runs"] == RUNS
    assert "commit" in manifest["git"] and "dirty" in manifest["git"]

    samples = pd.read_parquet(out / "samples.parquet")
    timed = samples[samples["phase"] == "timed"]
    assert len(timed) == RUNS * N_JOBS
    assert set(samples["phase"]) == {"first", "warmup", "timed"}
    assert (samples[samples["phase"] == "first"].groupby(["config", "backend"]).size() == 1).all()
    assert np.allclose(timed["infer_ms"], timed["infer_ns"] / 1e6)

    summary = pd.read_csv(out / "summary.csv")
    issue_columns = ["model", "cut", "embedding", "config", "backend", "target", "status", "reason", "n_runs",
                     "infer_ms_median", "infer_ms_p90", "infer_ms_iqr", "infer_ms_min", "load_ms_cold",
                     "load_ms_warm", "mem_model_mb", "mem_peak_mb", "cpu_ms", "params", "macs", "upload_bytes",
                     "artifact_bytes", "artifact", "warnings", "verified", "max_rel_err"]
    assert list(summary.columns[: len(issue_columns)]) == issue_columns
    assert len(summary) == N_JOBS
    assert list(summary["config"]) == ["conv1-simple"] * 2 + ["conv2-simple"] * 2 + ["full"] * 2  # model order
    assert list(summary["backend"]) == ["onnx", "litert"] * 3
    row = summary.iloc[0]
    assert row["load_ms_cold"] == 20.0 and row["load_ms_warm"] == 6.0
    assert row["mem_model_mb"] == 12.0 and row["mem_peak_mb"] == 62.0
    assert row["n_runs"] == RUNS and row["params"] == 100


def test_tables_are_in_model_order_whatever_order_the_records_came_in(fake, tmp_path):
    """Several devices finish in any order: the tables a run writes are those `splitbench report` writes."""
    fake()
    out = tmp_path / "out"
    _run(_spec(tmp_path), out)
    expected = pd.read_csv(out / "summary.csv")[["config", "backend"]]
    tables.write_tables(out, list(reversed(store.load_records(out))))
    assert pd.read_csv(out / "summary.csv")[["config", "backend"]].equals(expected)


def test_record_is_immutable_and_round_trips(fake, tmp_path):
    fake()
    out = tmp_path / "out"
    _run(_spec(tmp_path), out)
    record = store.load_records(out)[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.model = "x"  # type: ignore[misc]
    path = out / "records" / f"{record.record_key}.json"
    data = json.loads(path.read_text())
    assert data["schema_version"] == RESULTS_SCHEMA_VERSION
    assert data["job"]["runs"] == RUNS and data["job"]["backend"] == record.backend
    assert "uptime_s" not in data["device"]  # volatile fingerprint keys never enter the key
    assert ResultRecord.from_dict(data) == record
    assert not list((out / "records").glob(".*"))  # no temp files left behind


def test_failures_are_rows_and_the_rest_is_measured(fake, tmp_path):
    agent = fake(script={("conv2-simple", "onnx"): CRASHED,
                         ("full", "onnx"): RuntimeError("agent bug")},
                 failing={("conv1-simple", "litert"): "litert-torch: unsupported op aten::foo\nlong trace"})
    out = tmp_path / "out"
    outcome = _run(_spec(tmp_path), out)
    assert outcome.exit_code == 2
    assert len(agent.calls) == N_JOBS - 1  # the failed export was never measured
    summary = pd.read_csv(out / "summary.csv", keep_default_na=False).set_index(["config", "backend"])
    assert summary.loc[("conv1-simple", "litert"), "status"] == "failed"
    assert summary.loc[("conv1-simple", "litert"), "reason"] == "export failed: litert-torch: unsupported op aten::foo"
    assert summary.loc[("conv2-simple", "onnx"), "status"] == "crashed"
    assert summary.loc[("full", "onnx"), "status"] == "failed"
    assert "agent error: RuntimeError: agent bug" in summary.loc[("full", "onnx"), "reason"]
    assert (summary.loc[[("conv1-simple", "onnx"), ("conv2-simple", "litert"), ("full", "litert")], "status"]
            == "ok").all()
    crashed = next(r for r in store.load_records(out) if r.status == "crashed")
    assert "Segmentation fault" in crashed.result["stderr_tail"]
    samples = pd.read_parquet(out / "samples.parquet")
    assert len(samples[samples["phase"] == "timed"]) == RUNS * 3


def test_coreml_is_skipped_not_failed(fake, tmp_path):
    agent = fake()
    out = tmp_path / "out"
    outcome = _run(_spec(tmp_path, backends=("onnx", "coreml")), out)
    assert outcome.exit_code == 0
    assert all(j.backend == "onnx" for j in agent.calls)
    summary = pd.read_csv(out / "summary.csv")
    skipped = summary[summary["backend"] == "coreml"]
    assert len(skipped) == 3 and (skipped["status"] == "skipped").all()
    assert skipped["reason"].str.contains("Core ML needs iOS or macOS").all()
    assert skipped["infer_ms_median"].isna().all()


def test_resume_redoes_nothing_finished_and_completes(fake, tmp_path):
    out = tmp_path / "out"
    spec = _spec(tmp_path)
    agent = fake(script={("full", "litert"): TIMEOUT})
    assert _run(spec, out).exit_code == 2
    assert len(agent.calls) == N_JOBS
    # Lose two records (as if the run had stopped there): resume measures exactly those two.
    records = store.load_records(out)
    for r in records[-2:]:
        (out / "records" / f"{r.record_key}.json").unlink()
    agent = fake()
    outcome = _run(spec, out, resume=True)
    assert len(agent.calls) == 2
    assert {(Path(j.artifact_path).stem) for j in agent.calls} == {"full__onnx", "full__litert"}
    assert outcome.exit_code == 0 and outcome.measured == 2 and len(outcome.records) == N_JOBS
    agent = fake()
    assert _run(spec, out, resume=True).exit_code == 0
    assert agent.calls == []  # everything is on disk
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["sessions"]) == 2 and manifest["counts"]["resumed"] == N_JOBS


def test_interrupted_run_keeps_finished_records_and_resume_completes(fake, tmp_path):
    out = tmp_path / "out"
    spec = _spec(tmp_path)
    agent = fake(raise_on_call=3)
    outcome = _run(spec, out)
    assert outcome.exit_code == 130 and outcome.interrupted
    assert len(agent.calls) == 3
    kept = store.load_records(out)
    assert [(r.config, r.backend) for r in kept] == [("conv1-simple", "onnx"), ("conv1-simple", "litert")]
    assert len(pd.read_csv(out / "summary.csv")) == 2  # tables rebuilt on the way out
    assert json.loads((out / "manifest.json").read_text())["status"] == "interrupted"
    agent = fake()
    outcome = _run(spec, out, resume=True)
    assert outcome.exit_code == 0 and len(agent.calls) == N_JOBS - 2
    assert len(pd.read_csv(out / "summary.csv")) == N_JOBS


def test_an_executor_failure_keeps_what_was_measured_and_says_so_in_the_manifest(fake, tmp_path, monkeypatch):
    """The executor itself failing (a Ray head lost) is not a device's loss: the error goes up (exit 70 with
    its traceback), but first the tables and a manifest that says "aborted" are written."""
    out = tmp_path / "out"
    spec = _spec(tmp_path)
    fake()
    plain = executors.Executor.run

    def run_then_fail(self, jobs, **kw):
        for n, event in enumerate(plain(self, jobs, **kw)):
            yield event
            if n == 1:
                raise ConnectionError("the cluster's head went away")

    monkeypatch.setattr(executors.Executor, "run", run_then_fail)
    with pytest.raises(ConnectionError, match="head went away"):
        _run(spec, out)
    assert len(store.load_records(out)) == 2 and len(pd.read_csv(out / "summary.csv")) == 2
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "aborted" and "head went away" in manifest["error"]
    assert manifest["counts"]["done"] == 2 and manifest["counts"]["not_attempted"] == N_JOBS - 2
    monkeypatch.setattr(executors.Executor, "run", plain)
    agent = fake()
    outcome = _run(spec, out, resume=True)
    assert outcome.exit_code == 0 and len(agent.calls) == N_JOBS - 2


def test_out_of_another_spec_is_refused_even_with_resume(fake, tmp_path):
    fake()
    out = tmp_path / "out"
    _run(_spec(tmp_path), out)
    other = _spec(tmp_path, runs=RUNS + 1)
    with pytest.raises(UserError, match="another spec.*choose a new --out"):
        _run(other, out)
    with pytest.raises(UserError, match="another spec.*--resume cannot continue it with a different spec"):
        _run(other, out, resume=True)
    with pytest.raises(UserError, match="another spec"):
        _run(_spec(tmp_path), out, runs=3)  # a command-line override changes what is measured
    # what never changes a number is not the spec's identity: the timeout, the cache directory
    spec = _spec(tmp_path)
    same = dataclasses.replace(spec, run=dataclasses.replace(spec.run, timeout_s=5.0),
                               export=dataclasses.replace(spec.export, cache_dir=tmp_path / "elsewhere"))
    assert spec_hash(same) == spec_hash(spec)
    assert _run(same, out, resume=True).exit_code == 0
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not empty"):
        _run(_spec(tmp_path), tmp_path / "stuff")
    assert _run(_spec(tmp_path), tmp_path / "stuff", resume=True).exit_code == 0  # --resume: the caller vouches
    assert (tmp_path / "stuff" / "notes.txt").read_text() == "mine"


def test_same_spec_without_resume_measures_again(fake, tmp_path):
    fake()
    out = tmp_path / "out"
    _run(_spec(tmp_path), out)
    agent = fake()
    assert _run(_spec(tmp_path), out).exit_code == 0
    assert len(agent.calls) == N_JOBS
    assert len(list((out / "records").glob("*.json"))) == N_JOBS  # same keys: records replaced


# --------------------------------------------------------------------------------------------------
# Statistics


IDENTITY = Identity(model="m", model_definition="d", weights="seed:0", cut="c", embedding="simple", reduced_dim=None,
                    backend="onnx", artifact_key="a", target="cpu-1core", device_id="local:h:cpu1",
                    runtime_version="onnxruntime 1.0", threads=1)


def _record(infer_ns, **result) -> ResultRecord:
    return ResultRecord(record_key="k", identity=IDENTITY, config="c-simple", order=0, artifact_path=None,
                        artifact_bytes=None, result={"status": "ok", "infer_ns": list(infer_ns), **result})


def test_statistics_match_numpy():
    rng = np.random.default_rng(7)
    ns = [int(v) for v in rng.integers(900_000, 1_300_000, size=60)]
    memory = [{"method": "vmhwm_in_process", "before_load_b": 10_000_000, "after_load_b": None, "peak_b": 35_500_000}]
    s = stats.compute_stats(_record(ns, load_cold_ns=12_345_678, load_warm_ns=[3_000_000, 1_000_000, 2_000_000],
                                    memory=memory, cpu_ns=61_000_001))
    a = np.asarray(ns, dtype=float)
    assert s.n_runs == 60
    assert s.infer_ms_median == pytest.approx(np.median(a) / 1e6, rel=1e-12)
    assert s.infer_ms_p90 == pytest.approx(np.percentile(a, 90) / 1e6, rel=1e-12)
    assert s.infer_ms_iqr == pytest.approx((np.percentile(a, 75) - np.percentile(a, 25)) / 1e6, rel=1e-12)
    assert s.infer_ms_min == a.min() / 1e6
    assert s.load_ms_cold == 12.345678 and s.load_ms_warm == 2.0
    assert s.mem_model_mb == 25.5 and s.mem_peak_mb == 35.5 and s.cpu_ms == 61.000001


def test_statistics_on_known_samples_are_not_rounded(tmp_path):
    ns = [1_000_001, 1_000_003, 1_000_002, 1_000_007, 1_000_005]
    rec = _record(ns)
    s = stats.compute_stats(rec)
    assert s.infer_ms_median == 1.000003 and s.infer_ms_min == 1.000001
    store.write_record(tmp_path, rec)
    tables.write_tables(tmp_path)
    row = pd.read_csv(tmp_path / "summary.csv").iloc[0]
    assert row["infer_ms_median"] == 1.000003 and row["infer_ms_p90"] == s.infer_ms_p90


def test_stability_warnings_are_data():
    steady = [1_000_000 + i for i in range(60)]
    assert stats.stability_warnings(steady) == []
    noisy = [1_000_000 if i % 2 else 1_500_000 for i in range(60)]
    codes = {w.code for w in stats.stability_warnings(noisy)}
    assert "iqr_high" in codes
    outlier = [1_000_000] * 59 + [500_000]
    warns = stats.stability_warnings(outlier)
    assert [w.code for w in warns] == ["min_far"] and warns[0].value == pytest.approx(0.5)
    few = stats.stability_warnings([1_000_000] * 5)
    assert [w.code for w in few] == ["few_runs"] and "[run].runs" in few[0].fix
    assert [w.code for w in stats.stability_warnings(steady, cold_method="not_obtained")] == ["cold_not_dropped"]
    # in the summary, with the fix to try
    row = tables.summary_row(_record(noisy))
    assert row["warnings"].startswith("iqr_high:") and "try:" in row["warnings"]


def test_record_key_depends_on_what_produced_the_numbers():
    job = MeasureJob(artifact_path="/a/x.onnx", backend="onnx", input_shape=(1, 3, 8, 8))
    protocol = job.protocol()
    assert protocol == dataclasses.replace(job, artifact_path="/elsewhere.onnx", timeout_s=5).protocol()
    dev = device_essentials({"cpu_model": "X", "kernel": "6", "uptime_s": 1, "mem_available_b": 5,
                             "runtime_versions": {"onnxruntime": "1.2"}, "boot_time": 3, "battery_temp_c": 30})
    assert dev == {"cpu_model": "X", "kernel": "6", "runtime_versions": {"onnxruntime": "1.2"}}
    k = make_record_key(IDENTITY, dev, protocol)
    for change in ({"artifact_key": "art2"}, {"target": "cpu-1core-512mb"}, {"device_id": "local:h:cpu0"},
                   {"runtime_version": "onnxruntime 1.1"}, {"threads": 2}, {"weights": "seed:1"}):
        assert k != make_record_key(dataclasses.replace(IDENTITY, **change), dev, protocol), change
    assert k != make_record_key(IDENTITY, {**dev, "kernel": "7"}, protocol)
    assert k != make_record_key(IDENTITY, dev, {**protocol, "runs": 61})


# --------------------------------------------------------------------------------------------------
# Figures


def test_figures_are_drawn_with_failed_rows_as_gaps(fake, tmp_path):
    from harness.report.figures import make_figures

    fake(script={("conv2-simple", "onnx"): TIMEOUT}, failing={("full", "litert"): "converter crashed"})
    out = tmp_path / "out"
    assert _run(_spec(tmp_path, backends=("onnx", "litert", "coreml")), out).exit_code == 2
    paths = make_figures(out)
    names = sorted(p.name for p in paths)
    assert names == sorted(f"{stem}.{ext}" for stem in ("infer_box", "load_bars", "memory_bars")
                           for ext in ("png", "svg"))
    for p in paths:
        assert p.parent == out / "figures" and p.stat().st_size > 1000
    svg = (out / "figures" / "infer_box.svg").read_text()
    # the gaps are labelled in the figure, not dropped
    assert "timeout" in svg and "failed" in svg and "skipped" in svg
    assert "conv2-simple" in svg and "inference time (ms)" in svg
    for stem, unit in (("load_bars", "load time (ms)"), ("memory_bars", "memory (MB")):
        text = (out / "figures" / f"{stem}.svg").read_text()
        assert unit in text and "timeout" in text


def test_figures_need_a_results_dir(tmp_path):
    from harness.report.figures import make_figures

    with pytest.raises(UserError, match="summary.csv"):
        make_figures(tmp_path)


# --------------------------------------------------------------------------------------------------
# The real thing


def _real_stack_missing() -> str | None:
    import importlib.util

    for mod in ("harness.export.stage", "device_agents.local.agent"):
        if importlib.util.find_spec(mod) is None:
            return f"{mod} is not written yet"
    return None


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_real_run_of_a_tiny_model(tmp_path):
    missing = _real_stack_missing()
    if missing:
        pytest.skip(missing)
    from harness.cli import main

    spec_text = (FIXTURES / "tiny.toml").read_text()
    spec_path = tmp_path / "tiny.toml"
    (tmp_path / "tiny_model.py").write_text((FIXTURES / "tiny_model.py").read_text())
    spec_path.write_text(spec_text.replace("[export]\n", f'[export]\ncache_dir = "{tmp_path / "cache"}"\n'))
    out = tmp_path / "out"
    code = main(["run", str(spec_path), "--out", str(out)])
    summary = pd.read_csv(out / "summary.csv")
    assert code == 0, summary[["config", "backend", "status", "reason"]].to_string()
    assert len(summary) == 6 and (summary["status"] == "ok").all()
    assert list(summary["config"]) == ["conv1-simple"] * 2 + ["conv2-simple"] * 2 + ["full"] * 2
    assert (summary["n_runs"] == 5).all()
    assert (summary["infer_ms_median"] > 0).all() and (summary["load_ms_cold"] > 0).all()
    assert (summary["load_ms_warm"] > 0).all() and (summary["mem_peak_mb"] > 0).all()
    assert summary["warnings"].str.contains("few_runs").all()  # 5 runs: the warning says to raise them
    samples = pd.read_parquet(out / "samples.parquet")
    assert len(samples[samples["phase"] == "timed"]) == 5 * 6
    for rec in store.load_records(out):
        assert len(rec.result["pinned_cpus"]) == 1, (rec.config, rec.backend, rec.result["pinned_cpus"],
                                                     rec.result["threads"], rec.result["diagnostics"])
        assert rec.job["runs"] == 5 and rec.job["warm_loads"] == 1
        assert Path(rec.artifact_path).is_file()
    manifest = json.loads((out / "manifest.json").read_text())
    (device,) = manifest["devices"].values()
    assert device["spec_target"] == "cpu-1core" and device["backends"]["onnx"].startswith("onnxruntime")
    assert manifest["versions"]["onnxruntime"]
    assert (out / "figures" / "infer_box.png").stat().st_size > 1000
    # resume on a complete directory measures nothing and keeps the exit code
    assert main(["run", str(spec_path), "--out", str(out), "--resume"]) == 0


def test_resume_retries_failed_jobs_and_keeps_the_old_failure(fake, tmp_path):
    out = tmp_path / "out"
    spec = _spec(tmp_path)
    fake(script={("full", "litert"): TIMEOUT})
    assert _run(spec, out).exit_code == 2
    agent = fake()  # the machine is quiet now: the retried job succeeds
    outcome = _run(spec, out, resume=True)
    assert [Path(j.artifact_path).stem for j in agent.calls] == ["full__litert"]
    assert outcome.exit_code == 0 and outcome.measured == 1
    retried = list((out / "records" / "retried").glob("*.json"))
    assert len(retried) == 1 and json.loads(retried[0].read_text())["result"]["status"] == TIMEOUT
    summary = pd.read_csv(out / "summary.csv")
    assert (summary["status"] == "ok").all() and len(summary) == N_JOBS


def test_real_corrupted_artifact_is_a_failed_row_and_resume_completes(tmp_path, monkeypatch):
    """The real stack: a corrupted artifact that reaches the device fails its row with the runtime's reason, the
    others are measured, and with the right artifact --resume measures only that job. (The export cache rebuilds a
    corrupted cached file itself, tests/test_cache_integrity.py: here the bytes change after the export stage.)"""
    missing = _real_stack_missing()
    if missing:
        pytest.skip(missing)
    from harness.export.stage import export_spec
    from harness.config.spec import load_spec

    spec_path = tmp_path / "tiny.toml"
    (tmp_path / "tiny_model.py").write_text((FIXTURES / "tiny_model.py").read_text())
    text = (FIXTURES / "tiny.toml").read_text().replace('backends = ["onnx", "litert"]', 'backends = ["onnx"]')
    spec_path.write_text(text.replace("[export]\n", f'[export]\ncache_dir = "{tmp_path / "cache"}"\n'))
    spec = load_spec(spec_path)
    artifacts = export_spec(spec, progress=False)
    victim = next(a for a in artifacts if a.config.name == "conv2-simple")
    corrupt = tmp_path / "corrupt" / Path(victim.path).name
    corrupt.parent.mkdir()
    corrupt.write_bytes(b"\x00not an onnx model" * 64)
    swapped = [dataclasses.replace(a, path=corrupt, files=()) if a is victim else a for a in artifacts]
    monkeypatch.setattr(orchestrate, "export_artifacts", lambda spec, progress: swapped)

    out = tmp_path / "out"
    outcome = orchestrate.run_spec(spec, out, progress=False)
    summary = pd.read_csv(out / "summary.csv").set_index("config")
    assert outcome.exit_code == 2
    assert summary.loc["conv2-simple", "status"] == "failed"
    assert "protobuf" in summary.loc["conv2-simple", "reason"].lower()
    assert (summary.drop(index="conv2-simple")["status"] == "ok").all()

    monkeypatch.undo()  # the fix: the artifact as exported
    outcome = orchestrate.run_spec(spec, out, resume=True, progress=False)
    assert outcome.exit_code == 0 and outcome.measured == 1
    assert (pd.read_csv(out / "summary.csv")["status"] == "ok").all()


def test_privacy_table_of_a_spec_runs_the_sweep_on_the_users_data(tmp_path):
    """[privacy] data = "inputs.npz": the sweep runs with the spec's model; cloud.csv times each cut."""
    import numpy as np

    from harness.analysis.privacy.stage import privacy_stage
    from harness.config.spec import load_spec
    from harness.measure.cloud import write_cloud_table

    rng = np.random.default_rng(0)
    n = 120
    sensitive = np.arange(n) % 3
    inputs = rng.standard_normal((n, 3, 32, 32)).astype(np.float32) + sensitive[:, None, None, None] * 0.5
    np.savez(tmp_path / "inputs.npz", inputs=inputs, primary=(np.arange(n) % 2), sensitive=sensitive)
    (tmp_path / "tiny_model.py").write_text((FIXTURES / "tiny_model.py").read_text())
    text = (FIXTURES / "tiny.toml").read_text() + '\n[privacy]\ndata = "inputs.npz"\nratios = [0, 1]\n'
    (tmp_path / "tiny.toml").write_text(text)
    spec = load_spec(tmp_path / "tiny.toml")
    out = tmp_path / "out"
    out.mkdir()
    write_cloud_table(spec, out)
    privacy_stage(spec, out)

    privacy = pd.read_csv(out / "privacy.csv")
    assert set(privacy["cut"]) == {"conv1", "conv2"} and set(privacy["noise_ratio"]) == {0, 1}
    assert privacy["log_rank_privacy"].between(0, 1).all()
    cloud = pd.read_csv(out / "cloud.csv").set_index("config")
    assert list(cloud.index) == ["conv1-simple", "conv2-simple", "full"]
    assert (cloud.loc[["conv1-simple", "conv2-simple"], "cloud_ms"] > 0).all() and cloud.loc["full", "cloud_ms"] == 0


def test_privacy_table_is_validated(tmp_path):
    from harness.config.spec import parse_spec

    base = {"model": {"zoo": "vgg16_gender"}}
    with pytest.raises(UserError, match=r"\[privacy\]\.colour"):
        parse_spec({**base, "privacy": {"colour": 1}})
    with pytest.raises(UserError, match=r"\[privacy\]\.data: file not found"):
        parse_spec({**base, "privacy": {"data": "nope.npz"}})
    with pytest.raises(UserError, match=r"\[privacy\]\.ratios"):
        parse_spec({**base, "privacy": {"ratios": [-1]}})


def test_a_shared_core_is_a_warning_with_the_fix():
    samples = [1_000_000] * 60
    shared = stats.stability_warnings(samples, cpu_ns=50_000_000, wall_runs_ns=100_000_000)
    assert [w.code for w in shared] == ["core_shared"] and "SPLITBENCH_LOCAL_CPU" in shared[0].fix
    assert stats.stability_warnings(samples, cpu_ns=97_000_000, wall_runs_ns=100_000_000) == []
