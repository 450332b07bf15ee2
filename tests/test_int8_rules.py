"""The int8 rules without a converter: the calibration convention of a model module, the int8 judge (not
quantized, beyond the tolerance, and why a reduced embedding of random weights fails), the upload in the
artifact's output type, the cache key of an int8 part (and that a float32 key is what it was), and a
LiteRT int8 input fed with the interpreter's parameters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from device_agents.litert_io import dequantize_output, describe_input, quantize_input
from harness.config.spec import parse_spec
from harness.core.errors import UserError
from harness.export import cache
from harness.export.calibration import MODEL_DATA, SEEDED_RANDOM, calibration_for, offers_data
from harness.export.int8_judge import FLOAT_SIZED_ERR, INT8_RTOL, Verification, judge
from harness.export.int8_readers import MIN_INT8_SHARE, Int8Check
from harness.split.configurations import configurations, identify
from harness.split.upload import upload_costs

ROOT = Path(__file__).resolve().parents[1]
TOY = (ROOT / "tests" / "fixtures" / "export_toy.py").read_text()
DATA = '''

def splitbench_data():
    import numpy as np

    rng = np.random.default_rng({seed})
    return {{"calibration": rng.random((40, 3, 16, 16), dtype=np.float32),
            "held_out": rng.random((5, 3, 16, 16), dtype=np.float32){extra}}}
'''


def model_file(tmp_path: Path, data: str | None = None, name: str = "toy.py") -> Path:
    path = tmp_path / name
    path.write_text(TOY + (data or ""))
    return path


def spec_of(path: Path, **export):
    return parse_spec({"model": {"source": f"{path}:build"}, "split": {"cuts": ["stage1"]},
                       "export": {"backends": ["onnx", "litert"], "precisions": ["float32", "int8"],
                                  "cache_dir": str(path.parent / "cache"), **export}}, origin="test")


# --------------------------------------------------------------------------------------------------
# The calibration convention


def test_a_module_without_data_calibrates_on_seeded_random_inputs(tmp_path):
    path = model_file(tmp_path)
    assert not offers_data(path)
    c = calibration_for(spec_of(path, calibration_samples=12, calibration_seed=3))
    assert (c.source, c.samples, c.seed, c.data, c.classifier) == (SEEDED_RANDOM, 12, 3, None, False)
    assert c.verify_input() is None and c.held_out() is None  # the float32 input is in its distribution
    assert "standard normal" in c.describe()


def test_a_module_with_data_calibrates_on_it_and_says_so(tmp_path):
    path = model_file(tmp_path, DATA.format(seed=0, extra=', "classes": ["a", "b", "c", "d", "e"]'))
    assert offers_data(path)
    c = calibration_for(spec_of(path, calibration_samples=8, calibration_seed=1))
    assert c.source == MODEL_DATA and c.samples == 8 and len(set(c.rows)) == 8 and c.classifier
    assert c.rows == calibration_for(spec_of(path, calibration_samples=8, calibration_seed=1)).rows  # seeded
    assert c.rows != calibration_for(spec_of(path, calibration_samples=8, calibration_seed=2)).rows
    x, where = c.verify_input()
    assert x.shape == (1, 3, 16, 16) and "row 0 of 'held_out'" in where
    assert c.to_dict()["data"]["classes"] == ["a", "b", "c", "d", "e"] and "8 of the 40" in c.describe()
    # more samples than rows: every row, and the count says so
    assert calibration_for(spec_of(path, calibration_samples=100)).samples == 40


def test_without_held_out_data_the_verification_input_is_a_row_not_calibrated_on(tmp_path):
    path = model_file(tmp_path, DATA.format(seed=0, extra="").replace(
        ',\n            "held_out": rng.random((5, 3, 16, 16), dtype=np.float32)', ""))
    c = calibration_for(spec_of(path, calibration_samples=8))
    _, where = c.verify_input()
    row = int(where.split()[1])
    assert row not in c.rows and "not in the calibration set" in where


@pytest.mark.parametrize("body, message", [
    ("def splitbench_data():\n    return [1, 2]\n", "must return a dict with a 'calibration' array"),
    ("def splitbench_data():\n    return {'calibration': []}\n", "must be a non-empty array"),
    ("def splitbench_data():\n    raise OSError('no such file: digits.npz')\n", "failed: OSError: no such file"),
    ("def splitbench_data():\n    import numpy as np\n    return {'calibration': np.zeros((4, 3, 16, 16)), "
     "'classes': 'ab'}\n", "must list the class names"),
    ("def splitbench_data():\n    import numpy as np\n    return {'calibration': np.zeros((4, 3, 16, 16)), "
     "'held_out': np.zeros((4, 3, 8, 8))}\n", "'held_out' rows are (3, 8, 8)"),
])
def test_bad_model_data_is_one_line(tmp_path, body, message):
    path = model_file(tmp_path, "\n\n" + body, name=f"bad{abs(hash(body))}.py")
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        calibration_for(spec_of(path))
    assert "\n" not in str(err.value)


def test_data_rows_of_another_shape_than_the_input_are_refused(tmp_path):
    import torch

    path = model_file(tmp_path, DATA.format(seed=0, extra=""))
    c = calibration_for(spec_of(path))
    with pytest.raises(UserError, match=r"'calibration' rows are \(3, 16, 16\), the model's input is \(1, 3, 8, 8\)"):
        c.check_shape(torch.zeros(1, 3, 8, 8))
    c.check_shape(torch.zeros(1, 3, 16, 16))


# --------------------------------------------------------------------------------------------------
# The int8 judge


def int8_check(int8: int = 900, flt: int = 0, size: int = 300, params: int = 1200) -> Int8Check:
    return Int8Check("onnx", int8, flt, size, params)


def test_a_real_int8_part_passes():
    assert judge(int8_check(), Verification(0.01, 0.008, 0.008)) is None
    assert judge(int8_check(), None) is None  # Core ML off macOS: read, not run


def test_an_artifact_without_int8_weights_is_not_quantized():
    reason = judge(int8_check(int8=0, flt=4000), Verification(1e-4, 4e-7, 4e-7))
    assert reason.startswith("not quantized: 0% of the weight bytes in the artifact are int8")
    assert judge(int8_check(int8=800, flt=200), None).startswith("not quantized: 80%")  # below MIN_INT8_SHARE
    assert MIN_INT8_SHARE == 0.9


def test_a_big_artifact_not_about_4x_smaller_is_not_quantized():
    big = 4 << 20
    assert judge(int8_check(size=big // 4 + 1000, params=big), Verification(0.01, 0.01, 0.01)) is None
    reason = judge(int8_check(size=big, params=big), Verification(0.01, 0.01, 0.01))
    assert reason.startswith("not quantized: the artifact is 1.00x the part's float32 weights")
    # a part under 1 MiB is dominated by its graph: the size rule is not applied
    assert judge(int8_check(size=6000, params=1000), Verification(0.01, 0.01, 0.01)) is None


def test_a_float_sized_error_is_not_quantized():
    reason = judge(int8_check(), Verification(1e-6, 4e-7, 4e-7))
    assert reason.startswith("not quantized: max relative error 4e-07 is float-sized")
    assert judge(int8_check(), Verification(1e-4, FLOAT_SIZED_ERR * 1.01, 0.001)) is None


def test_beyond_the_int8_tolerance_fails_on_either_scale():
    reason = judge(int8_check(), Verification(0.5, 0.32, 0.32))
    assert reason.startswith("verification: max relative error 0.32 > 0.1 (the int8 tolerance")
    assert judge(int8_check(), Verification(0.5, 0.05, INT8_RTOL * 1.5)).startswith(
        "verification: output relative error")


def test_a_reduced_embedding_of_random_weights_says_why_it_fails():
    """VGG-16 reduced with random weights: 2e-4 of the PCA's terms, but all zeros (1.0 of itself)."""
    reason = judge(int8_check(), Verification(0.3, 2.1e-4, 1.0, output_all_zero=True), reduced=True)
    assert reason.startswith("verification: output relative error (max|out-ref|/max|ref|) 1 > 0.1")
    assert "small difference of large sums" in reason and "all zeros" in reason and "random weights" in reason
    # collapsed to zeros is wrong, not "float-sized" (its term-scale error is tiny)
    assert judge(int8_check(), Verification(0.3, 1e-5, 1.0, True), reduced=True).startswith("verification:")


# --------------------------------------------------------------------------------------------------
# What the phone uploads


def test_upload_bytes_follow_the_artifacts_output_type():
    costs = {"upload_shape": [1, 16, 8, 8], "upload_bytes": 4096, "params": 10}
    assert upload_costs(costs, "float32") is costs  # float32 artifacts keep their costs as they were
    int8 = upload_costs(costs, "int8")
    assert int8["upload_bytes"] == 1024 and int8["upload_dtype"] == "int8" and costs["upload_bytes"] == 4096
    with pytest.raises(ValueError, match="unknown output type"):
        upload_costs(costs, "int4")


# --------------------------------------------------------------------------------------------------
# The cache key


def test_the_int8_key_covers_precision_calibration_data_and_quantizer(tmp_path):
    path = model_file(tmp_path, DATA.format(seed=0, extra=""))

    def key(precision="int8", backend="onnx", spec=None, **export):
        spec = spec or spec_of(path, **export)
        return cache.cache_key(identify(spec), configurations(spec)[0], backend, spec, precision)

    f32 = key("float32")
    assert key("int8") != f32
    assert key("float32", calibration_seed=5) == f32  # a simple cut's float32 key knows no calibration
    assert key(calibration_seed=5) != key() and key(calibration_samples=9) != key()  # int8's does
    assert key(backend="litert") != key()
    changed = model_file(tmp_path, DATA.format(seed=1, extra=""), name="toy2.py")  # other data, same code
    other = spec_of(changed)
    assert key(spec=other) != key()
    assert key("float32", spec=other) != f32  # (its file changed: the model's definition hash)
    assert "torchao" in cache.converter_versions("litert", "int8") and "torchao" in cache.converter_versions(
        "executorch", "int8")
    assert "torchao" not in cache.converter_versions("litert")  # a float32 key is what it was before int8


def test_a_float32_key_does_not_change_when_int8_is_exported_too(tmp_path):
    path = model_file(tmp_path)
    only = parse_spec({"model": {"source": f"{path}:build"}, "split": {"cuts": ["stage1"]},
                       "export": {"backends": ["onnx"]}}, origin="test")
    both = spec_of(path)
    config = configurations(only)[0]
    assert cache.cache_key(identify(only), config, "onnx", only) == \
        cache.cache_key(identify(both), config, "onnx", both, "float32")


# --------------------------------------------------------------------------------------------------
# LiteRT's int8 input


def test_a_float_input_is_quantized_with_the_tensors_parameters():
    detail = {"dtype": np.int8, "quantization": (1 / 255, -128), "name": "serving_default_args_0"}
    x = np.array([[0.0, 0.5, 1.0, 2.0, -1.0]], dtype=np.float32)
    q = quantize_input(x, detail)
    assert q.dtype == np.int8 and q.tolist() == [[-128, 0, 127, 127, -128]]  # rounded, then saturated
    assert np.allclose(dequantize_output(q, detail), [[0.0, 0.5019608, 1.0, 1.0, 0.0]])
    assert describe_input(detail)["quantized_with"] == {"scale": 1 / 255, "zero_point": -128}
    f32 = {"dtype": np.float32, "quantization": (0.0, 0)}
    assert quantize_input(x, f32).dtype == np.float32 and describe_input(f32) is None
    with pytest.raises(ValueError, match="without quantization parameters"):
        quantize_input(x, {"dtype": np.int8, "quantization": (0.0, 0)})
