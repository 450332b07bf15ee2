"""float32 and int8 through a run: every (configuration, precision, backend) is its own job, record and row;
resume keeps both precisions; and, for real, the tiny CNN's static int8 LiteRT and ONNX Runtime parts measured
on cpu-1core through the real worker (LiteRT's int8 input quantized once, outside the timed call)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest

from harness import orchestrate
from harness.config.spec import load_spec
from harness.measure import executors
from harness.results import store
from harness.split.configurations import configurations
from tests.fakes import FakeAgent, FakeArtifact

FIXTURES = Path(__file__).parent / "fixtures"


def _spec(tmp_path: Path):
    spec = load_spec(FIXTURES / "tiny.toml")
    return dataclasses.replace(
        spec, export=dataclasses.replace(spec.export, backends=("onnx", "litert"), precisions=("float32", "int8"),
                                         cache_dir=tmp_path / "cache"),
        run=dataclasses.replace(spec.run, runs=8, warmup=2, warm_loads=1))


def _fake_export(tmp_path: Path):
    """One scripted artifact per (configuration, precision, backend), int8 ones with their calibration."""
    def export(spec, *, progress):
        return [FakeArtifact(config=c, backend=b, key=f"key-{c.name}-{p}-{b}", precision=p,
                             path=tmp_path / "art" / f"{c.name}__{p}__{b}.bin",
                             quantization={"calibration": {"source": "seeded random"}} if p == "int8" else {})
                for c in configurations(spec) for p in spec.export.precisions for b in spec.export.backends]
    return export


@pytest.fixture
def scripted(monkeypatch, tmp_path):
    def setup():
        agent = FakeAgent()
        monkeypatch.setattr(orchestrate, "export_artifacts", _fake_export(tmp_path))
        monkeypatch.setattr(executors, "open_agent", lambda target, **options: agent)
        monkeypatch.setattr(orchestrate, "POST_RUN", ())
        return agent
    return setup


def test_both_precisions_are_rows_and_resume_keeps_both(scripted, tmp_path):
    out, spec = tmp_path / "out", _spec(tmp_path)
    agent = scripted()
    assert orchestrate.run_spec(spec, out, progress=False).exit_code == 0
    assert len(agent.calls) == 12  # 3 configurations x 2 precisions x 2 backends
    summary = pd.read_csv(out / "summary.csv")
    assert sorted(summary["precision"].value_counts().items()) == [("float32", 6), ("int8", 6)]
    assert list(summary["precision"][:4]) == ["float32", "float32", "int8", "int8"]  # configuration, precision, backend
    assert (summary.loc[summary["precision"] == "int8", "calibration"] == "seeded random").all()
    assert summary.loc[summary["precision"] == "float32", "calibration"].isna().all()
    # Lose one record of each precision: resume measures exactly those two, keeps the other ten.
    records = store.load_records(out)
    lost = [next(r for r in records if r.precision == p and r.config == "full" and r.backend == "litert")
            for p in ("float32", "int8")]
    for r in lost:
        (out / "records" / f"{r.record_key}.json").unlink()
    agent = scripted()
    outcome = orchestrate.run_spec(spec, out, progress=False, resume=True)
    assert outcome.exit_code == 0 and outcome.measured == 2 and len(outcome.records) == 12
    assert sorted(Path(j.artifact_path).stem for j in agent.calls) == ["full__float32__litert", "full__int8__litert"]
    agent = scripted()
    assert orchestrate.run_spec(spec, out, progress=False, resume=True).exit_code == 0 and agent.calls == []
    keys = {(r.config, r.precision, r.backend): r.record_key for r in store.load_records(out)}
    assert len(keys) == 12 and len(set(keys.values())) == 12


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_real_int8_run_on_cpu_1core_through_the_worker(tmp_path):
    from harness.cli import main

    (tmp_path / "tiny_model.py").write_text((FIXTURES / "tiny_model.py").read_text())
    text = (FIXTURES / "tiny.toml").read_text().replace('cuts = ["conv1", "conv2"]', 'cuts = ["conv1"]')
    text = text.replace("[export]\n", f'[export]\ncache_dir = "{tmp_path / "cache"}"\nprecisions = ["float32", "int8"]\n')
    spec_path = tmp_path / "tiny.toml"
    spec_path.write_text(text)
    out = tmp_path / "out"
    code = main(["run", str(spec_path), "--out", str(out)])
    summary = pd.read_csv(out / "summary.csv")
    assert code == 0, summary[["config", "precision", "backend", "status", "reason"]].to_string()
    assert len(summary) == 8 and (summary["status"] == "ok").all()  # conv1-simple, full x 2 precisions x 2 backends
    int8 = summary[summary["precision"] == "int8"]
    assert len(int8) == 4 and (int8["n_runs"] == 5).all() and (int8["infer_ms_median"] > 0).all()
    assert (int8["calibration"] == "seeded random").all() and int8["verified"].all()
    litert = int8[int8["backend"] == "litert"]
    assert litert["warnings"].str.contains("host_int8").all()  # its host speed-up is not a phone's: said
    assert not int8[int8["backend"] == "onnx"]["warnings"].str.contains("host_int8").any()
    conv1 = litert[litert["config"] == "conv1-simple"].iloc[0]
    assert conv1["upload_bytes"] == 8 * 32 * 32  # the int8 feature: 1 byte an element
    for rec in store.load_records(out):
        assert len(rec.result["pinned_cpus"]) == 1
        fed = rec.result["diagnostics"].get("input_fed")
        if rec.precision == "int8" and rec.backend == "litert":
            assert fed["dtype"] == "int8" and fed["quantized_with"]["scale"] > 0, rec.result["diagnostics"]
            assert rec.quantization["calibration"]["source"] == "seeded random"
            assert rec.quantization["int8"]["int8_share"] == 1.0
        else:  # ONNX Runtime's QDQ int8 and every float32 part take the float input as it is
            assert fed is None
    assert json.loads((out / "manifest.json").read_text())["status"] == "complete"
    # resume with both precisions measures nothing and keeps the exit code
    assert main(["run", str(spec_path), "--out", str(out), "--resume"]) == 0
    assert len(store.load_records(out)) == 8
