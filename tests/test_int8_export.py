"""Static int8 exports for real, on the digits model (trained here in seconds; its module offers its data):
every backend's int8 artifact is really int8 (read from the artifact), verified on a held-out digit within the
int8 tolerance, agrees with float32 on the top-1 class, and comes from the cache the second time; a float32
artifact passed off as int8 fails. One cut (``fc1``) and on-premise, float32 and int8, four backends: 16
artifacts, about a minute on one core.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from harness.config.backends import BACKENDS
from harness.config.spec import parse_spec
from harness.export import quantize
from harness.export import stage as ex
from harness.export.int8_judge import COREML_INT8_NOTE, FLOAT_SIZED_ERR, INT8_RTOL
from harness.export.int8_readers import MIN_INT8_SHARE, READERS
from harness.split import configurations as conf

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
BACKEND_NAMES = ("onnx", "litert", "executorch", "coreml")


def digits_spec(tmp_path: Path, weights: Path, cache: Path, backends=BACKEND_NAMES, precisions=("float32", "int8")):
    return parse_spec({
        "model": {"source": f"{ROOT / 'models' / 'digits.py'}:digits_factory", "weights": str(weights)},
        "split": {"cuts": ["fc1"], "embeddings": ["simple"]},
        "export": {"backends": list(backends), "precisions": list(precisions), "cache_dir": str(cache)},
    }, origin="test")


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    import torch

    from models import digits as D

    d = tmp_path_factory.mktemp("digits")
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        data = D.digits_data(0)
        model = D.train_digits_cnn(data["train_x"], data["train_digit"] >= 5, seed=0, epochs=8)
    finally:
        torch.set_num_threads(previous)
    torch.save(model.state_dict(), d / "digits.pt")
    spec = digits_spec(d, d / "digits.pt", d / "cache")
    return spec, ex.export_spec(spec, progress=False)


def by_name(artifacts):
    return {(a.config.name, a.precision, a.backend): a for a in artifacts}


def test_every_backend_exports_a_real_verified_int8_part(digits):
    _, artifacts = digits
    assert [(a.config.name, a.precision, a.backend) for a in artifacts] == [
        (c, p, b) for c in ("fc1-simple", "full") for p in ("float32", "int8") for b in BACKEND_NAMES]
    found = by_name(artifacts)
    for a in artifacts:
        assert a.status == "ok", (a.name, a.reason)
        json.dumps(a.to_dict())
        # what the artifact itself holds, read again here from its file
        int8, flt, _ = READERS[a.backend](a.exported())
        share = int8 / (int8 + flt)
        if a.precision == "float32":
            assert share == 0 and a.quantization == {} and "int8" not in a.name
            continue
        assert a.name == f"{a.config.name} int8/{a.backend}"
        assert share >= MIN_INT8_SHARE and a.quantization["int8"]["problem"] is None
        assert a.artifact_bytes < found[a.config.name, "float32", a.backend].artifact_bytes
        q = a.quantization
        assert q["calibration"]["source"] == "model data" and q["calibration"]["samples"] == 32
        assert q["calibration"]["data"]["origin"] == "digits.py:splitbench_data()"
        if a.backend in ("litert", "executorch"):
            assert "torchao" in a.converter
        if a.backend == "coreml":
            assert not a.verified and a.reason == COREML_INT8_NOTE and a.max_rel_err is None
            assert q["int8"]["detail"]["specification_version"] >= 7  # iOS 16: constexpr_affine_dequantize
            assert q["timings"]["float32_export_s"] == 0.0  # the float32 package of the same part, quantized
            assert q["top1_agreement"] is None  # not runnable off macOS
            continue
        assert a.verified and FLOAT_SIZED_ERR < a.max_rel_err <= INT8_RTOL, (a.name, a.max_rel_err)
        assert q["verify_input"].startswith("row 0 of 'held_out'")  # a held-out digit, not a standard normal
        top1 = q["top1_agreement"]
        assert top1["calibration"] == {"agreement": top1["calibration"]["agreement"], "samples": 32}
        assert top1["held_out"]["samples"] == 899 and top1["held_out"]["agreement"] >= 0.97, (a.name, top1)


def test_litert_int8_takes_int8_and_uploads_in_its_output_type(digits):
    found = by_name(digits[1])
    full = found["full", "int8", "litert"]
    assert full.input_dtype == "int8" and full.output_dtype == "int8"
    assert full.costs["upload_bytes"] == 2 and full.costs["upload_dtype"] == "int8"  # two int8 logits
    assert found["full", "float32", "litert"].costs["upload_bytes"] == 8
    fc1 = found["fc1-simple", "int8", "litert"]  # ends in a float ReLU after DEQUANTIZE: float32 out
    assert fc1.output_dtype == "float32" and fc1.costs["upload_bytes"] == 128
    for backend in ("onnx", "executorch", "coreml"):  # their int8 parts dequantize their output
        assert found["full", "int8", backend].output_dtype == "float32"
        assert found["full", "int8", backend].costs["upload_bytes"] == 8


def test_a_second_export_comes_from_the_cache(digits, monkeypatch):
    spec, first = digits
    monkeypatch.setattr(conf, "load_model", lambda spec: pytest.fail("a warm export built the model"))
    for name in quantize.EXPORTERS:
        monkeypatch.setitem(quantize.EXPORTERS, name, lambda *a, **k: pytest.fail("a warm export quantized"))
    second = ex.export_spec(spec, progress=False)
    assert all(a.cached for a in second)
    assert [a.to_dict() | {"cached": None} for a in second] == [a.to_dict() | {"cached": None} for a in first]
    keys = [a.key for a in second]
    assert len(set(keys)) == len(keys)  # every precision has its own entry


def test_a_float32_artifact_passed_off_as_int8_fails(digits, tmp_path, monkeypatch):
    """Through the stage with ONNX (the fastest converter); every backend's reader refuses a float32 artifact
    (test_every_backend_exports_a_real_verified_int8_part reads 0% int8 weights in each)."""
    spec, _ = digits
    monkeypatch.setitem(quantize.EXPORTERS, "onnx", lambda phone, example, calibration, out_dir, timings,
                        float32=None: BACKENDS["onnx"].export(phone, example, out_dir))
    other = dataclasses.replace(spec, export=dataclasses.replace(spec.export, cache_dir=tmp_path / "cache",
                                                                 backends=("onnx",), precisions=("int8",)))
    artifacts = ex.export_spec(other, progress=False)
    assert len(artifacts) == 2
    for a in artifacts:
        assert a.status == "failed" and not a.verified and a.path is None, a.name
        assert a.reason.startswith("not quantized: 0% of the weight bytes in the artifact are int8"), a.reason
        assert (tmp_path / "cache" / "failed" / f"{a.key}.log").is_file()
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name not in ("failed", "export.log")]  # none cached
