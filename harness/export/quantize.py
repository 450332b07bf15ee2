"""Post-training static int8 phone parts, one exporter per backend.

Each exporter takes the float32 phone part, its example input and the calibration inputs (batch 1 each, see
:mod:`harness.export.calibration`), writes the backend's artifact into ``out_dir`` under the same file name as
the float32 one, and fills ``timings`` with each step's seconds:

- ``onnx``: the float32 backend's ONNX export, ``onnxruntime.quantization.quant_pre_process``, then
  ``quantize_static`` with a ``CalibrationDataReader`` over the calibration inputs: QDQ format, per-channel
  signed int8 weights, signed int8 activations, MinMax calibration. Input and output stay float32.
- ``executorch``: PT2E with ExecuTorch's ``XNNPACKQuantizer`` (``get_symmetric_quantization_config(
  is_per_channel=True)``), ``prepare_pt2e`` / ``convert_pt2e`` from ``torchao.quantization.pt2e.quantize_pt2e``,
  then ``to_edge_transform_and_lower`` with the XNNPACK partitioner. Input and output stay float32.
- ``litert``: PT2E with ``litert_torch``'s own ``PT2EQuantizer`` (its ``get_symmetric_quantization_config(
  is_per_channel=True, is_dynamic=False)``), ``convert_pt2e(..., fold_quantize=False)``, then
  ``litert_torch.convert(..., quant_config=QuantConfig(pt2e_quantizer=q))``; without ``quant_config`` the
  weights stay float (and it runs ~8x slower), which the artifact check catches. Its input and output tensors
  are int8 (an output is float32 when the part ends in a float op after a DEQUANTIZE).
- ``coreml``: the float32 ML program (the float32 backend's conversion, or its cached package), then
  ``coremltools.optimize.coreml.linear_quantize_weights``: int8 per-channel symmetric weights, every weight
  (``weight_threshold=0``; the default 2048 leaves small layers in float). Weight-only: quantizing activations
  (``linear_quantize_activations``) runs predictions, which only macOS can. The package needs iOS 16
  (specification 7, ``constexpr_affine_dequantize``); the float32 one needs iOS 15.

Every converter is imported inside its exporter (the stage imports each backend's modules before the clock
starts, see :data:`INT8_MODULES`). Whether an artifact really is int8, and how close to PyTorch, is
:mod:`harness.export.int8_readers` and :mod:`harness.export.int8_verify`.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from harness.config.backends import BACKENDS, Exported, affine_batchnorms

if TYPE_CHECKING:  # pragma: no cover
    import torch

# Distributions besides the backend's own converters whose version changes an int8 artifact (PT2E lives in
# torchao), and the modules imported before the conversion clock starts.
INT8_PACKAGES: dict[str, tuple[str, ...]] = {"onnx": (), "litert": ("torchao",), "executorch": ("torchao",),
                                             "coreml": ()}
INT8_MODULES: dict[str, tuple[str, ...]] = {
    "onnx": ("onnxruntime.quantization",),
    "litert": ("torchao.quantization.pt2e.quantize_pt2e", "litert_torch.quantize.pt2e_quantizer"),
    "executorch": ("torchao.quantization.pt2e.quantize_pt2e",
                   "executorch.backends.xnnpack.quantizer.xnnpack_quantizer"),
    "coreml": ("coremltools.optimize.coreml",),
}


def _timed(timings: dict[str, float], step: str, start: float) -> float:
    now = time.perf_counter()
    timings[step] = round(now - start, 4)
    return now


# --------------------------------------------------------------------------------------------------
# ONNX Runtime


def export_onnx_int8(phone: "torch.nn.Module", example: "torch.Tensor", calibration: Sequence["torch.Tensor"],
                     out_dir: Path, timings: dict[str, float], float32: Exported | None = None) -> Exported:
    """``model.onnx``: QDQ, per-channel int8 weights, int8 activations; float32 input and output."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quant_pre_process, quantize_static)

    class Reader(CalibrationDataReader):
        """The calibration inputs, one feed each, under the float32 model's input name."""

        def __init__(self, name: str) -> None:
            self._feeds = iter([{name: t.detach().numpy()} for t in calibration])

        def get_next(self):  # noqa: ANN201 - onnxruntime's interface
            return next(self._feeds, None)

    path = out_dir / BACKENDS["onnx"].artifact_name
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".onnx-float32-") as tmp:
        t = time.perf_counter()
        fp32 = BACKENDS["onnx"].export(phone, example, Path(tmp))
        t = _timed(timings, "float32_export_s", t)
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32.path), str(pre), skip_symbolic_shape=True)
        t = _timed(timings, "pre_process_s", t)
        quantize_static(str(pre), str(path), Reader(fp32.input_name), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)
        _timed(timings, "calibrate_quantize_s", t)
    return Exported(path, fp32.input_name, fp32.output_name)


# --------------------------------------------------------------------------------------------------
# PT2E: ExecuTorch and LiteRT


def pt2e_quantize(phone: "torch.nn.Module", example: "torch.Tensor", calibration: Sequence["torch.Tensor"],
                  quantizer, timings: dict[str, float], **convert_kwargs) -> "torch.nn.Module":
    """``torch.export`` -> ``prepare_pt2e`` -> the calibration inputs run through -> ``convert_pt2e``."""
    import torch
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    t = time.perf_counter()
    prepared = prepare_pt2e(torch.export.export(phone.eval(), (example,)).module(), quantizer)
    t = _timed(timings, "pt2e_prepare_s", t)
    with torch.no_grad():
        for x in calibration:
            prepared(x)
    t = _timed(timings, "calibrate_s", t)
    converted = convert_pt2e(prepared, **convert_kwargs)
    _timed(timings, "pt2e_convert_s", t)
    return converted


def export_executorch_int8(phone: "torch.nn.Module", example: "torch.Tensor", calibration: Sequence["torch.Tensor"],
                           out_dir: Path, timings: dict[str, float], float32: Exported | None = None) -> Exported:
    """``model.pte``: PT2E with XNNPACKQuantizer (symmetric, per channel), lowered to the XNNPACK delegate."""
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (XNNPACKQuantizer,
                                                                         get_symmetric_quantization_config)
    from executorch.exir import to_edge_transform_and_lower

    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    converted = pt2e_quantize(affine_batchnorms(phone), example, calibration, quantizer, timings)
    t = time.perf_counter()
    program = to_edge_transform_and_lower(torch.export.export(converted, (example,)),
                                          partitioner=[XnnpackPartitioner()]).to_executorch()
    path = out_dir / BACKENDS["executorch"].artifact_name
    path.write_bytes(program.buffer)
    _timed(timings, "lower_s", t)
    # A .pte's tensors have no names: a runtime calls method "forward" with positional inputs.
    return Exported(path, "forward/input0", "forward/output0")


def export_litert_int8(phone: "torch.nn.Module", example: "torch.Tensor", calibration: Sequence["torch.Tensor"],
                       out_dir: Path, timings: dict[str, float], float32: Exported | None = None) -> Exported:
    """``model.tflite``: PT2E with litert_torch's PT2EQuantizer (static, symmetric, per channel); int8 I/O."""
    import litert_torch
    from ai_edge_litert.interpreter import Interpreter
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from litert_torch.quantize.quant_config import QuantConfig

    quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False))
    converted = pt2e_quantize(phone, example, calibration, quantizer, timings, fold_quantize=False)
    t = time.perf_counter()
    path = out_dir / BACKENDS["litert"].artifact_name
    litert_torch.convert(converted, (example,), quant_config=QuantConfig(pt2e_quantizer=quantizer)).export(str(path))
    _timed(timings, "convert_s", t)
    interpreter = Interpreter(model_path=str(path), num_threads=1)
    return Exported(path, interpreter.get_input_details()[0]["name"], interpreter.get_output_details()[0]["name"])


# --------------------------------------------------------------------------------------------------
# Core ML


def export_coreml_int8(phone: "torch.nn.Module", example: "torch.Tensor", calibration: Sequence["torch.Tensor"],
                       out_dir: Path, timings: dict[str, float], float32: Exported | None = None) -> Exported:
    """``model.mlpackage``: the float32 ML program with int8 per-channel symmetric weights (weight-only).

    ``float32``: the float32 package of the same part (the cache's), read and quantized without converting
    again; without it the float32 backend converts first. ``calibration`` is not used: weight-only quantization
    needs no data, and activation quantization needs predictions (macOS only).
    """
    import coremltools as ct
    import coremltools.optimize.coreml as cto

    path = out_dir / BACKENDS["coreml"].artifact_name
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".coreml-float32-") as tmp:
        t = time.perf_counter()
        if float32 is None:
            float32 = BACKENDS["coreml"].export(phone, example, Path(tmp))
            t = _timed(timings, "float32_export_s", t)
        else:
            timings["float32_export_s"] = 0.0  # the float32 package of the same part was reused
        # Read only (nothing is compiled or written into the float32 package: Linux cannot compile anyway).
        model = ct.models.MLModel(str(float32.path), skip_model_load=True)
        config = cto.OptimizationConfig(global_config=cto.OpLinearQuantizerConfig(
            mode="linear_symmetric", dtype="int8", granularity="per_channel", weight_threshold=0))
        cto.linear_quantize_weights(model, config=config).save(str(path))
        _timed(timings, "quantize_weights_s", t)
    return Exported(path, float32.input_name, float32.output_name)


# --------------------------------------------------------------------------------------------------
# Entry point

EXPORTERS: dict[str, Callable[..., Exported]] = {
    "onnx": export_onnx_int8, "litert": export_litert_int8, "executorch": export_executorch_int8,
    "coreml": export_coreml_int8}
# The code that decides what an int8 artifact is: hashed into its cache key (harness.export.cache).
QUANTIZER_FUNCTIONS: tuple[Callable, ...] = (export_onnx_int8, pt2e_quantize, export_executorch_int8,
                                             export_litert_int8, export_coreml_int8)


def export_int8(backend: str, phone: "torch.nn.Module", example: "torch.Tensor",
                calibration: Sequence["torch.Tensor"], out_dir: Path, timings: dict[str, float],
                float32: Exported | None = None) -> Exported:
    """Export ``backend``'s static int8 artifact into ``out_dir``; ``float32``: the backend's float32 artifact of
    the same part where one exists (Core ML quantizes it instead of converting again)."""
    return EXPORTERS[backend](phone, example, calibration, Path(out_dir), timings, float32)
