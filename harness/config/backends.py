"""One record per backend: what it builds, with what, how it is checked, and where it runs.

Adding a backend touches this file only: its :class:`BackendSpec` (artifact name, converter and
runtime packages with the install hint, the modules to import before the conversion clock starts,
the exporter, the verifier, the platforms whose agents run it) and its two functions. Importing this
module imports no converter: every exporter imports what it needs when called.

Backends and what proves each artifact:

- ``onnx``: ``torch.onnx.export(dynamo=True)``, one self-contained ``.onnx`` (external data only
  above protobuf's 2 GB limit); run with ONNX Runtime.
- ``litert``: ``litert_torch.convert`` to a ``.tflite`` flatbuffer; run with ``ai_edge_litert``.
- ``executorch``: ``.pte`` lowered with the XNNPACK partitioner; run with ``executorch.runtime``.
  BatchNorm without affine parameters (Caffe-style, as in DPFE's moon_tiny) is given explicit
  weight 1 and bias 0 first: XNNPACK's BatchNorm decomposition needs them, and ``x * 1 + 0`` is exact.
- ``coreml``: ``coremltools`` ML program ``.mlpackage`` in float32. Core ML cannot predict off
  macOS, so on Linux the package is reloaded and its input/output names and shapes are checked
  instead; it is marked not numerically verified.
"""

from __future__ import annotations

import platform as _platform
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import torch


@dataclass(frozen=True)
class Exported:
    """What an exporter wrote: the file (or package directory) a runtime loads, and its tensor names."""

    path: Path
    input_name: str
    output_name: str


@dataclass(frozen=True)
class BackendSpec:
    name: str
    title: str  # for people: "ONNX Runtime"
    artifact_name: str  # the file (or directory) name inside the artifact's cache entry
    converter_packages: tuple[str, ...]  # distributions whose versions change what is built or how it is checked
    runtime_package: str  # the distribution that runs it on a host (its version is the runtime's)
    modules: tuple[str, ...]  # imported before the conversion clock starts (export_s is the conversion alone)
    install_hint: str
    export: Callable[["torch.nn.Module", "torch.Tensor", Path], Exported]
    run: Callable[[Exported, "np.ndarray"], "np.ndarray"] | None  # None: cannot run on this host (checked otherwise)
    platforms: tuple[str, ...]  # agents' platforms that run it: "local", "android", "ios"


# --------------------------------------------------------------------------------------------------
# ONNX Runtime


def _export_onnx(phone: "torch.nn.Module", example: "torch.Tensor", out_dir: Path) -> Exported:
    import torch

    path = out_dir / BACKENDS["onnx"].artifact_name
    # One file unless the weights pass protobuf's 2 GB limit; then a .onnx.data file sits beside it.
    weight_bytes = sum(p.numel() * p.element_size() for p in phone.parameters())
    torch.onnx.export(phone, (example,), str(path), dynamo=True, external_data=weight_bytes > 1.9e9,
                      input_names=["input"], output_names=["feature"], verbose=False)
    return Exported(path, "input", "feature")


def _run_onnx(exported: Exported, x: "np.ndarray") -> "np.ndarray":
    import onnxruntime as ort

    session = ort.InferenceSession(str(exported.path), providers=["CPUExecutionProvider"])
    return session.run([exported.output_name], {exported.input_name: x})[0]


# --------------------------------------------------------------------------------------------------
# LiteRT


def _export_litert(phone: "torch.nn.Module", example: "torch.Tensor", out_dir: Path) -> Exported:
    import litert_torch
    from ai_edge_litert.interpreter import Interpreter

    path = out_dir / BACKENDS["litert"].artifact_name
    litert_torch.convert(phone.eval(), (example,)).export(str(path))
    interpreter = Interpreter(model_path=str(path), num_threads=1)
    return Exported(path, interpreter.get_input_details()[0]["name"], interpreter.get_output_details()[0]["name"])


def _run_litert(exported: Exported, x: "np.ndarray") -> "np.ndarray":
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(exported.path), num_threads=1)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).copy()


# --------------------------------------------------------------------------------------------------
# ExecuTorch


def affine_batchnorms(module: "torch.nn.Module") -> "torch.nn.Module":
    """A copy of ``module`` whose BatchNorms without affine parameters have weight 1 and bias 0.

    The same function to the last bit (``x * 1 + 0`` is exact in float32); ExecuTorch's XNNPACK
    lowering (its DecomposeBatchNorm pass) fails on a BatchNorm with no weight.
    """
    import copy

    import torch
    from torch.nn.modules.batchnorm import _BatchNorm

    if not any(isinstance(m, _BatchNorm) and not m.affine for m in module.modules()):
        return module
    module = copy.deepcopy(module)
    for m in module.modules():
        if isinstance(m, _BatchNorm) and not m.affine:
            m.affine = True
            m.weight = torch.nn.Parameter(torch.ones(m.num_features))
            m.bias = torch.nn.Parameter(torch.zeros(m.num_features))
    return module


def _export_executorch(phone: "torch.nn.Module", example: "torch.Tensor", out_dir: Path) -> Exported:
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    path = out_dir / BACKENDS["executorch"].artifact_name
    program = to_edge_transform_and_lower(torch.export.export(affine_batchnorms(phone), (example,)),
                                          partitioner=[XnnpackPartitioner()]).to_executorch()
    path.write_bytes(program.buffer)
    # A .pte's tensors have no names: a runtime calls method "forward" with positional inputs.
    return Exported(path, "forward/input0", "forward/output0")


def _run_executorch(exported: Exported, x: "np.ndarray") -> "np.ndarray":
    import torch
    from executorch.runtime import Runtime

    method = Runtime.get().load_program(str(exported.path)).load_method("forward")
    return method.execute([torch.from_numpy(x)])[0].numpy().copy()


# --------------------------------------------------------------------------------------------------
# Core ML


def _export_coreml(phone: "torch.nn.Module", example: "torch.Tensor", out_dir: Path) -> Exported:
    import coremltools as ct
    import torch

    path = out_dir / BACKENDS["coreml"].artifact_name
    program = torch.export.export(phone, (example,)).run_decompositions({})
    # float32 like every other backend here (the ML program default is float16), so the artifacts of
    # one configuration compute the same thing on every runtime.
    model = ct.convert(program, inputs=[ct.TensorType(name="input", shape=tuple(example.shape))],
                       outputs=[ct.TensorType(name="feature")], convert_to="mlprogram",
                       compute_precision=ct.precision.FLOAT32)
    model.save(str(path))
    return Exported(path, "input", "feature")


def _run_coreml(exported: Exported, x: "np.ndarray") -> "np.ndarray":
    """macOS only: Core ML's own prediction on the CPU."""
    import coremltools as ct

    model = ct.models.MLModel(str(exported.path), compute_units=ct.ComputeUnit.CPU_ONLY)
    return model.predict({exported.input_name: x})[exported.output_name]


def check_coreml(exported: Exported, input_shape: tuple[int, ...], output_shape: tuple[int, ...]) -> str | None:
    """Reload the package's spec; None when its input/output names and shapes match, else what differs."""
    import coremltools as ct

    description = ct.utils.load_spec(str(exported.path)).description
    found = {
        "inputs": [(i.name, tuple(i.type.multiArrayType.shape)) for i in description.input],
        "outputs": [(o.name, tuple(o.type.multiArrayType.shape)) for o in description.output],
    }
    wanted = {"inputs": [(exported.input_name, input_shape)], "outputs": [(exported.output_name, output_shape)]}
    for side in ("inputs", "outputs"):
        if found[side] != wanted[side]:
            return f"Core ML spec {side} {found[side]} != expected {wanted[side]}"
    return None


COREML_NOTE = "Core ML prediction needs macOS; spec checked: input/output names and shapes match"
ON_MACOS = _platform.system() == "Darwin"

BACKENDS: dict[str, BackendSpec] = {b.name: b for b in (
    BackendSpec("onnx", "ONNX Runtime", "model.onnx", ("torch", "onnx", "onnxscript", "onnxruntime"), "onnxruntime",
                ("onnxscript", "onnxruntime"), "pip install onnx onnxscript onnxruntime", _export_onnx, _run_onnx,
                ("local", "android")),
    BackendSpec("litert", "LiteRT", "model.tflite", ("torch", "litert-torch", "ai-edge-litert"), "ai-edge-litert",
                ("litert_torch", "ai_edge_litert.interpreter"), "pip install 'splitbench[litert]'", _export_litert,
                _run_litert, ("local", "android")),
    BackendSpec("executorch", "ExecuTorch (XNNPACK)", "model.pte", ("torch", "executorch"), "executorch",
                ("executorch.exir", "executorch.backends.xnnpack.partition.xnnpack_partitioner", "executorch.runtime"),
                "pip install 'splitbench[executorch]'", _export_executorch, _run_executorch, ("local", "android")),
    BackendSpec("coreml", "Core ML", "model.mlpackage", ("torch", "coremltools"), "coremltools", ("coremltools",),
                "pip install 'splitbench[coreml]'", _export_coreml, _run_coreml if ON_MACOS else None,
                ("ios", "local") if ON_MACOS else ("ios",)),
)}
NAMES: tuple[str, ...] = tuple(BACKENDS)  # model order of backends in tables and figures


def rank(backend: str) -> int:
    """A backend's position in tables and figures (unknown ones last)."""
    return NAMES.index(backend) if backend in NAMES else len(NAMES)


def not_runnable_reason(backend: str, target: str, runs: tuple[str, ...] | list[str]) -> str:
    """Why ``target`` skips ``backend`` (the row's reason)."""
    spec = BACKENDS.get(backend)
    if spec is not None and spec.platforms == ("ios",):
        return f"skipped: {spec.title} needs iOS or macOS; {target} cannot run it"
    return f"skipped: {target} has no {backend} runtime (it runs {', '.join(runs) or 'nothing'})"
