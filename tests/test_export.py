"""The export stage for real: every backend converts and (where it can run here) verifies a tiny model;
the cache converts nothing twice; a converter's failure is one row with its own reason; every example
spec validates and a reduced-size version of it exports to ONNX.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from harness.split import configurations as conf
from harness.export import cache as artifact_cache
from harness.export import stage as ex
from harness.cli import main
from harness.split.configurations import configurations, identify
from harness.config.spec import load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[1]
TOY = ROOT / "tests" / "fixtures" / "export_toy.py"
EXAMPLES = sorted((ROOT / "examples").glob("*.toml"))

pytestmark = pytest.mark.slow


def toy_data(cache: Path, *, factory: str = "build", cuts=("stage2",), embeddings=("simple",), backends=("onnx",),
             seed: int = 0, calibration_seed: int = 0) -> dict:
    return {
        "model": {"source": f"{TOY}:{factory}", "seed": seed},
        "split": {"cuts": list(cuts), "embeddings": list(embeddings), "reduced_dims": {"stage1": 4, "stage2": 3}},
        "export": {"backends": list(backends), "cache_dir": str(cache), "calibration_samples": 8,
                   "calibration_seed": calibration_seed},
    }


def toy_spec(cache: Path, **kw):
    return parse_spec(toy_data(cache, **kw), origin="test")


def write_toml(path: Path, data: dict) -> Path:
    """A small TOML writer for the test specs (tables of strings, ints and lists)."""
    def value(v):
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        return str(v)

    lines = []
    for table, body in data.items():
        lines.append(f"[{table}]")
        lines += [f"{k} = {value(v)}" for k, v in body.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


class Counting:
    """Wraps the backend registry so a test sees which conversions ran."""

    def __init__(self, monkeypatch, raise_for: dict[str, Exception] | None = None):
        self.calls: list[str] = []
        patched = {}
        for name, backend in ex.BACKENDS.items():
            def export(phone, example, out_dir, _name=name, _real=backend.export):
                self.calls.append(_name)
                if raise_for and _name in raise_for:
                    raise raise_for[_name]
                return _real(phone, example, out_dir)
            patched[name] = replace(backend, export=export)
        monkeypatch.setattr(ex, "BACKENDS", patched)


# --------------------------------------------------------------------------------------------------
# All four backends, once (module scope: the converters are slow to import and run)


@pytest.fixture(scope="module")
def all_backends(tmp_path_factory):
    d = tmp_path_factory.mktemp("all")
    data = toy_data(Path("cache"), cuts=("stage2",), embeddings=("reduced",),
                    backends=("onnx", "litert", "executorch", "coreml"))
    spec_path = write_toml(d / "toy.toml", data)
    return spec_path, ex.export_spec(load_spec(spec_path), progress=False)


def test_every_backend_exports_and_verifies(all_backends):
    _, artifacts = all_backends
    assert [(a.config.name, a.backend) for a in artifacts] == [
        (c, b) for c in ("stage2-reduced", "full") for b in ("onnx", "litert", "executorch", "coreml")]
    for a in artifacts:
        assert a.status == "ok", (a.name, a.reason)
        assert not a.cached and a.export_s > 0
        assert a.path.exists() and a.path.parent.name == a.key
        assert (a.path.parent / "meta.json").is_file()
        assert a.input_shape == (1, 3, 16, 16) and a.input_name and a.output_name
        assert a.artifact_bytes > 0 and a.costs["params"] > 0 and a.converter["torch"]
        json.dumps(a.to_dict())
        if a.backend == "coreml":
            assert not a.verified and a.max_rel_err is None and a.reason == ex.COREML_NOTE
            assert a.path.name.endswith(".mlpackage") and a.path.is_dir()
        else:
            assert a.verified and a.max_rel_err <= ex.RTOL and a.max_abs_err >= 0
    reduced = artifacts[0]
    assert reduced.output_shape == (1, 3) and reduced.costs["upload_bytes"] == 12
    assert 0 < reduced.info["explained_variance_ratio"] <= 1


def test_second_export_converts_nothing_and_imports_no_torch(all_backends, monkeypatch):
    spec_path, first = all_backends
    calls = Counting(monkeypatch)
    monkeypatch.setattr(conf, "load_model", lambda spec: pytest.fail("a warm export built the model"))
    second = ex.export_spec(load_spec(spec_path), progress=False)
    assert calls.calls == []
    assert all(a.cached for a in second)
    assert [a.to_dict() | {"cached": None} for a in second] == [a.to_dict() | {"cached": None} for a in first]

    # The CLI, in a fresh process: JSON that parses, exit 0, and torch never imported.
    probe = ("import json, sys; from harness.cli import main; rc = main(['export', sys.argv[1], '--json']); "
             "sys.stderr.write(json.dumps({'rc': rc, 'torch': 'torch' in sys.modules}))")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", probe, str(spec_path)], capture_output=True, text=True,
                          cwd=spec_path.parent, env=env, timeout=120)
    status = json.loads(done.stderr.strip().splitlines()[-1])
    assert status == {"rc": 0, "torch": False}, done.stderr
    rows = json.loads(done.stdout)
    assert len(rows) == 8 and all(r["cached"] and r["status"] == "ok" for r in rows)
    assert {"config", "backend", "key", "path", "max_rel_err", "input_name", "output_name", "input_shape",
            "costs", "converter"} <= set(rows[0])


# --------------------------------------------------------------------------------------------------
# The cache (ONNX only: fast)


def test_force_rebuilds(tmp_path, monkeypatch):
    spec = toy_spec(tmp_path / "cache", cuts=("stage1",))
    first = ex.export_spec(spec, progress=False)
    calls = Counting(monkeypatch)
    assert all(a.cached for a in ex.export_spec(spec, progress=False)) and calls.calls == []
    forced = ex.export_spec(spec, force=True, progress=False)
    assert calls.calls == ["onnx", "onnx"]
    assert [a.key for a in forced] == [a.key for a in first]
    assert all(a.status == "ok" and not a.cached and a.path.exists() for a in forced)
    leftovers = [p.name for p in (tmp_path / "cache").iterdir() if p.name.startswith(".")]
    assert leftovers == []  # temporary and replaced entries are gone


def test_key_covers_what_changes_the_artifact(tmp_path):
    def key(config_name="stage1-reduced", backend="onnx", **kw):
        spec = toy_spec(tmp_path, cuts=("stage1", "stage2"), embeddings=("simple", "reduced"), **kw)
        config = next(c for c in configurations(spec) if c.name == config_name)
        return ex.cache_key(identify(spec), config, backend, spec)

    base = key()
    assert key() == base  # deterministic
    assert key(seed=1) != base  # weights
    assert key("stage2-reduced") != base  # cut
    assert key("stage1-simple") != base  # embedding
    assert key(backend="litert") != base
    assert key(calibration_seed=1) != base  # the PCA's calibration, for reduced
    assert key("stage1-simple", calibration_seed=1) == key("stage1-simple")  # ...and only for reduced
    spec = toy_spec(tmp_path, cuts=("stage1",))
    config = configurations(spec)[0]
    shaped = parse_spec({**toy_data(tmp_path, cuts=("stage1",)),
                         "model": {"source": f"{TOY}:build", "input_shape": [1, 3, 32, 32]}}, origin="test")
    assert ex.cache_key(identify(shaped), config, "onnx", shaped) != ex.cache_key(identify(spec), config, "onnx", spec)


def test_cache_dir_choice(tmp_path, monkeypatch):
    spec = parse_spec({"model": {"zoo": "vgg16_gender"}}, origin="test")
    monkeypatch.delenv(artifact_cache.ENV_CACHE, raising=False)
    monkeypatch.chdir(tmp_path)
    assert ex.cache_dir_for(spec) == tmp_path / "results" / "cache"
    monkeypatch.setenv(artifact_cache.ENV_CACHE, str(tmp_path / "elsewhere"))
    assert ex.cache_dir_for(spec) == tmp_path / "elsewhere"
    assert ex.cache_dir_for(toy_spec(tmp_path / "given")) == tmp_path / "given"


# --------------------------------------------------------------------------------------------------
# Failures are rows, with the converter's own reason


def test_conversion_failure_is_a_row_and_exit_code_2(tmp_path, monkeypatch, capsys):
    data = toy_data(Path("cache"), cuts=("stage1",), backends=("onnx", "litert"))
    spec_path = write_toml(tmp_path / "toy.toml", data)
    boom = RuntimeError("Lowering not found: aten.frobnicate.default\n\nWhile executing %x\n"
                        "Set TORCH_LOGS=+dynamo for more information")
    calls = Counting(monkeypatch, raise_for={"litert": boom})
    artifacts = ex.export_spec(load_spec(spec_path), progress=False)
    assert calls.calls == ["onnx", "litert", "onnx", "litert"]
    by = {(a.config.name, a.backend): a for a in artifacts}
    for config in ("stage1-simple", "full"):
        assert by[config, "onnx"].status == "ok" and by[config, "onnx"].verified
        failed = by[config, "litert"]
        assert failed.status == "failed" and failed.path is None and not failed.verified
        assert failed.reason == "RuntimeError: Lowering not found: aten.frobnicate.default"
        assert not (tmp_path / "cache" / failed.key).exists()  # failures are not cached
        assert Path(failed.info["log"]).is_file()

    # The CLI: the failed rows are retried (not cached), shown with their reason, exit code 2.
    assert main(["export", str(spec_path)]) == 2
    out = capsys.readouterr().out
    assert "failed" in out and "aten.frobnicate.default" in out
    assert main(["export", str(spec_path), "--json"]) == 2
    rows = json.loads(capsys.readouterr().out)
    assert [r["status"] for r in rows] == ["ok", "failed", "ok", "failed"]
    assert [r["cached"] for r in rows] == [True, False, True, False]


def test_op_a_converter_refuses(tmp_path):
    """torch.special.erfinv has no ONNX lowering: the whole model fails, the cut before it exports."""
    spec = toy_spec(tmp_path / "cache", factory="build_unsupported", cuts=("stage1",))
    first, full = ex.export_spec(spec, progress=False)
    assert first.status == "ok" and first.verified
    assert full.status == "failed" and "erf_inv" in full.reason and "\n" not in full.reason


def test_verification_failure_keeps_the_errors(tmp_path, monkeypatch):
    real = ex.BACKENDS["onnx"]
    monkeypatch.setitem(ex.BACKENDS, "onnx", replace(real, run=lambda exported, x: real.run(exported, x) * 1.01))
    (a, _) = ex.export_spec(toy_spec(tmp_path / "cache", cuts=("stage1",)), progress=False)
    assert a.status == "failed" and not a.verified and a.reason.startswith("verification: max relative error")
    assert a.max_rel_err == pytest.approx(0.01, rel=1e-3) and a.max_abs_err > 0
    assert not (tmp_path / "cache" / a.key).exists()


def test_failure_reason_picks_the_innermost_meaningful_line():
    try:
        try:
            raise KeyError("No ONNX function found for <OpOverload(op='prims.erf_inv')>")
        except KeyError as inner:
            raise RuntimeError("Failed to convert the exported program.\x1b[96m step 3/3\x1b[0m") from inner
    except RuntimeError as exc:
        assert ex.failure_reason(exc) == "KeyError: No ONNX function found for <OpOverload(op='prims.erf_inv')>"
    assert ex.failure_reason(ValueError("\n\n  \"\nOperator aten.erfinv is not in Core ATen opset\"\n")) == \
        "ValueError: Operator aten.erfinv is not in Core ATen opset"
    assert len(ex.failure_reason(ValueError("x" * 1000))) == 300


# --------------------------------------------------------------------------------------------------
# The example specs


EXPECTED_CONFIGS = {"osia_vgg16_gender": 7, "dpfe_moon_tiny": 17, "osia_activity": 7, "osia_vggs_emotion": 3,
                    "facemix_resnet18": 4, "ci_smoke": 3}
# The paper settings export to all four backends; the CI profile to the three that run on Linux.
EXPECTED_BACKENDS = {"ci_smoke": ("onnx", "litert", "executorch")}
# Smaller inputs for the test suite (the examples keep the papers' sizes). VGG-S and the activity
# CNN have no adaptive pooling: their fc6 / fc1 fix the input size.
SMALL_INPUT = {"vgg16_gender": [1, 3, 32, 32], "moon_tiny": [1, 3, 40, 32], "resnet18_facemix": [1, 3, 32, 32]}


def test_examples_are_the_paper_settings():
    assert {p.stem for p in EXAMPLES} == set(EXPECTED_CONFIGS)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_spec_validates(path):
    spec = load_spec(path)
    configs = configurations(spec)
    assert len(configs) == EXPECTED_CONFIGS[path.stem]
    assert configs[-1].name == "full"
    assert spec.export.backends == EXPECTED_BACKENDS.get(path.stem, ("onnx", "litert", "executorch", "coreml"))


@pytest.mark.slow
@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_exports_and_runs_on_every_backend_at_reduced_size(path, tmp_path):
    """The example's first cut (each embedding) and on-premise, at a small input, exported for every backend
    it names and verified numerically (Core ML: exported and its spec checked), then measured by the real
    cpu-1core agent with a few runs on ONNX Runtime, LiteRT and ExecuTorch: every example runs in the
    tests, on every backend. On-premise holds every layer (DPFE's moon_tiny failed ExecuTorch there)."""
    data = tomllib.loads(path.read_text())
    zoo = data["model"].get("zoo")  # the CI profile's model is a source file, already small
    if zoo in SMALL_INPUT:
        data["model"]["input_shape"] = SMALL_INPUT[zoo]
    data["split"]["cuts"] = data["split"]["cuts"][:1]
    data["export"] = {**data["export"], "cache_dir": str(tmp_path / "cache")}
    data["run"] = {**data.get("run", {}), "runs": 3, "warmup": 1, "warm_loads": 1, "timeout_s": 300,
                   "targets": ["cpu-1core"]}
    data.pop("privacy", None)  # the privacy sweep is tested on its own
    spec = parse_spec(data, origin=str(path), path=path)  # path: a source model is found beside its spec
    backends = set(spec.export.backends)
    assert {"onnx", "litert", "executorch"} <= backends, f"{path.name} must measure the three runtimes"
    artifacts = ex.export_spec(spec, progress=False)
    assert len(artifacts) == (len(data["split"]["cuts"]) * len(data["split"]["embeddings"]) + 1) * len(backends)
    for a in artifacts:
        if a.backend == "coreml":
            assert a.status == "ok" and a.reason == ex.COREML_NOTE, (a.name, a.reason)
        else:
            assert a.status == "ok" and a.verified and a.max_rel_err <= ex.RTOL, (a.name, a.reason, a.max_rel_err)
        assert a.input_shape == tuple(spec.model.input_shape or a.input_shape)

    from harness.orchestrate import run_spec

    outcome = run_spec(spec, tmp_path / "out", progress=False)
    summary = pd.read_csv(tmp_path / "out" / "summary.csv")
    assert outcome.exit_code == 0, summary[["config", "backend", "status", "reason"]].to_string()
    measured = summary[summary["backend"] != "coreml"]
    assert (measured["status"] == "ok").all() and set(measured["backend"]) == {"onnx", "litert", "executorch"}
    assert (summary[summary["backend"] == "coreml"]["status"] == "skipped").all()
    assert (measured["n_runs"] == 3).all() and (measured["infer_ms_median"] > 0).all()
    assert (tmp_path / "out" / "cloud.csv").is_file()
