"""Is an int8 artifact really int8? Read from the artifact itself, one reader per backend.

A weight is a constant tensor of two or more dimensions (conv kernels, linear matrices); per-channel scales,
zero points and int32 biases are 0-d or 1-d and are not counted. Each reader returns an :class:`Int8Check`:
the int8 and float weight bytes found, the artifact's size against the part's float32 parameter bytes, and
reader-specific facts (dtypes, ops).

- ONNX: the initializers' ``data_type``.
- LiteRT: the flatbuffer's tensors that own data (``ai_edge_litert.tools.flatbuffer_utils.read_model``), by
  ``TensorType``; and the input and output tensor types (int8 for a static int8 part).
- ExecuTorch: the XNNPACK delegate's own graph: each delegate blob's ``XNNGraph`` flatbuffer, decoded with the
  ``flatc`` ExecuTorch ships and XNNPACK's ``schema.fbs``; the datatype of every constant value
  (``xnn_datatype_qcint8`` = per-channel int8); and the operators the program runs outside any delegate.
- Core ML: the MIL program: ``constexpr_*`` weight ops whose data are int8, against float ``const`` tensors.

An artifact is int8 when at least ``MIN_INT8_SHARE`` of its weight bytes are int8 and, for a part with at
least 1 MiB of float32 parameters, it is at most ``MAX_SIZE_RATIO`` of them (int8 weights are a quarter; scales,
int32 biases and the graph add a few percent). Small parts are exempt from the size rule: their graph outweighs
their weights (an int8 ONNX digits ``conv1`` is 6.2x its float32 weights).
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from device_agents.base import artifact_files
from harness.config.backends import Exported

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: At least this share of the weight bytes must be int8 (measured: 1.0 for every int8 artifact, 0.0 for float32).
MIN_INT8_SHARE = 0.9
#: An int8 artifact is at most this fraction of the part's float32 parameter bytes (measured 0.251-0.252 on every
#: int8 VGG-16 conv5_x artifact, 1.000-1.001 for float32), checked for parts of at least SIZE_RULE_FROM bytes.
MAX_SIZE_RATIO = 0.4
SIZE_RULE_FROM = 1 << 20


@dataclass(frozen=True)
class Int8Check:
    """What an artifact says about its weights."""

    backend: str
    int8_weight_bytes: int  # int8 weight data found in the artifact
    float_weight_bytes: int  # float (32 or 16 bit) weight data found in the artifact
    artifact_bytes: int  # the whole artifact (file, or package directory)
    float32_param_bytes: int  # 4 x the phone part's parameters and buffers: what a float32 artifact holds
    detail: dict[str, Any] = field(default_factory=dict)  # reader-specific facts (dtypes, ops left out)

    @property
    def int8_share(self) -> float:
        total = self.int8_weight_bytes + self.float_weight_bytes
        return self.int8_weight_bytes / total if total else 0.0

    @property
    def size_ratio(self) -> float | None:
        return self.artifact_bytes / self.float32_param_bytes if self.float32_param_bytes else None

    @property
    def problem(self) -> str | None:
        """Why this artifact is not an int8 one, or None."""
        if self.int8_share < MIN_INT8_SHARE:
            return (f"not quantized: {self.int8_share:.0%} of the weight bytes in the artifact are int8 "
                    f"({self.int8_weight_bytes} int8, {self.float_weight_bytes} float; at least "
                    f"{MIN_INT8_SHARE:.0%} wanted)")
        ratio = self.size_ratio
        if self.float32_param_bytes >= SIZE_RULE_FROM and ratio is not None and ratio > MAX_SIZE_RATIO:
            return (f"not quantized: the artifact is {ratio:.2f}x the part's float32 weights (int8 is ~0.25x, at "
                    f"most {MAX_SIZE_RATIO} accepted)")
        return None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "int8_share": self.int8_share, "size_ratio": self.size_ratio,
                "problem": self.problem}


def float32_param_bytes(phone: "torch.nn.Module") -> int:
    """Bytes of the part's floating-point parameters and buffers in float32 (a shared tensor once)."""
    seen: dict[int, int] = {}
    for t in (*phone.parameters(), *phone.buffers()):
        if t.is_floating_point():
            seen[t.data_ptr()] = t.numel() * 4
    return sum(seen.values())


def artifact_size(path: Path) -> int:
    """Bytes of every file a load reads (:func:`device_agents.base.artifact_files`: an ONNX external-data file too)."""
    return sum(f.stat().st_size for f in artifact_files(path))


def _count(counts: dict[str, int], key: str, n: int = 1) -> None:
    counts[key] = counts.get(key, 0) + n


# --------------------------------------------------------------------------------------------------
# ONNX

_ONNX_INT8 = {3}  # TensorProto.INT8
_ONNX_FLOAT = {1, 10, 16}  # FLOAT, FLOAT16, BFLOAT16


def read_onnx(exported: Exported) -> tuple[int, int, dict[str, Any]]:
    """(int8 weight bytes, float weight bytes, facts) of an ONNX model's initializers."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(exported.path))
    int8 = flt = 0
    by_type: dict[str, int] = {}
    for init in model.graph.initializer:
        n = int(numpy_helper.to_array(init).nbytes)
        _count(by_type, onnx.TensorProto.DataType.Name(init.data_type), n)
        if len(init.dims) >= 2:
            if init.data_type in _ONNX_INT8:
                int8 += n
            elif init.data_type in _ONNX_FLOAT:
                flt += n
    ops: dict[str, int] = {}
    for node in model.graph.node:
        _count(ops, node.op_type)
    return int8, flt, {"initializer_bytes_by_type": by_type, "ops": ops}


# --------------------------------------------------------------------------------------------------
# LiteRT


def litert_io_dtypes(path: Path) -> tuple[str, str]:
    """The input and output tensor types of a ``.tflite`` ("int8" for a static int8 part, else "float32")."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=1)
    return it.get_input_details()[0]["dtype"].__name__, it.get_output_details()[0]["dtype"].__name__


def read_litert(exported: Exported) -> tuple[int, int, dict[str, Any]]:
    """(int8 weight bytes, float weight bytes, facts) of a ``.tflite``'s tensors that own data."""
    import numpy as np
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(exported.path))
    type_names = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    op_names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    int8 = flt = 0
    by_type: dict[str, int] = {}
    ops: dict[str, int] = {}
    for sg in model.subgraphs:
        for t in sg.tensors:
            buf = model.buffers[t.buffer]
            n = len(buf.data) if buf.data is not None else int(buf.size or 0)  # size: data outside the flatbuffer
            if n == 0:
                continue
            _count(by_type, type_names.get(t.type, str(t.type)), n)
            if t.shape is not None and len(t.shape) >= 2 and int(np.prod(t.shape)) > 16:
                if t.type == schema.TensorType.INT8:
                    int8 += n
                elif t.type in (schema.TensorType.FLOAT32, schema.TensorType.FLOAT16):
                    flt += n
        for op in sg.operators:
            code = model.operatorCodes[op.opcodeIndex]
            _count(ops, op_names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "?"))
    input_dtype, output_dtype = litert_io_dtypes(exported.path)
    return int8, flt, {"constant_bytes_by_type": by_type, "ops": ops, "input_dtype": input_dtype,
                       "output_dtype": output_dtype}


# --------------------------------------------------------------------------------------------------
# ExecuTorch

# XNNDatatype of executorch/backends/xnnpack/serialization/schema.fbs (flatc --json prints the names)
_XNN_INT8 = {"xnn_datatype_qint8", "xnn_datatype_qcint8", "xnn_datatype_qdint8", "xnn_datatype_qpint8"}
_XNN_FLOAT = {"xnn_datatype_fp32", "xnn_datatype_fp16", "xnn_datatype_bf16", "xnn_datatype_pfp32"}
# flatc prints non-finite floats (a ReLU's output_max) as bare inf / nan: not JSON
_INF = re.compile(r"(?<=[\s:\[,])(-?)inf\b")
_NAN = re.compile(r"(?<=[\s:\[,])-?nan\b")


def xnnpack_graphs(pte: bytes) -> tuple[list[dict], list[str]]:
    """Every XNNPACK delegate's XNNGraph as JSON, and the operators the program runs outside delegates."""
    from executorch.backends.xnnpack.serialization import xnnpack_graph_serialize as xser
    from executorch.backends.xnnpack.serialization.xnnpack_graph_serialize import XNNHeader
    from executorch.exir._serialize._flatbuffer import _get_flatc_path
    from executorch.exir._serialize._program import deserialize_pte_binary

    program = deserialize_pte_binary(pte).program
    schema = Path(xser.__file__).with_name("schema.fbs")  # the package has no __init__: use the module's file
    graphs: list[dict] = []
    outside: list[str] = []
    for plan in program.execution_plan:
        outside += [op.name for op in plan.operators]
        for d in plan.delegates:
            if d.id != "XnnpackBackend":
                continue
            blob = bytes(program.backend_delegate_data[d.processed.index].data)
            header = XNNHeader.from_bytes(blob[:XNNHeader.EXPECTED_LENGTH])
            fb = blob[header.flatbuffer_offset:header.flatbuffer_offset + header.flatbuffer_size]
            with tempfile.TemporaryDirectory() as tmp:
                (Path(tmp) / "g.bin").write_bytes(fb)
                subprocess.run([_get_flatc_path(), "--json", "--strict-json", "--raw-binary", "--defaults-json",
                                "-o", tmp, str(schema), "--", str(Path(tmp) / "g.bin")], check=True,
                               capture_output=True)
                text = _NAN.sub("NaN", _INF.sub(r"\1Infinity", (Path(tmp) / "g.json").read_text()))
                graphs.append(json.loads(text))
    return graphs, outside


def read_executorch(exported: Exported) -> tuple[int, int, dict[str, Any]]:
    """(int8 weight bytes, float weight bytes, facts) of the XNNPACK delegates' constant values."""
    import numpy as np

    graphs, outside = xnnpack_graphs(Path(exported.path).read_bytes())
    int8 = flt = 0
    by_type: dict[str, int] = {}
    nodes: dict[str, int] = {}
    for g in graphs:
        for v in g.get("xvalues", []):
            u = v["xvalue_union"]
            tensor = u.get("tensor_value", u)  # XNNQuantizedTensorValue wraps an XNNTensorValue
            if not tensor.get("constant_buffer_idx") and not tensor.get("named_key"):
                continue  # not a constant
            dims = tensor.get("dims", [])
            count = int(np.prod(dims)) if dims else 1
            dt = tensor.get("datatype", "xnn_datatype_invalid")
            width = 2 if "16" in dt else (4 if ("32" in dt or dt == "xnn_datatype_fp32") else 1)
            _count(by_type, dt, count * width)
            if len(dims) >= 2:
                if dt in _XNN_INT8:
                    int8 += count * width
                elif dt in _XNN_FLOAT:
                    flt += count * width
        for n in g.get("xnodes", []):
            _count(nodes, n.get("xnode_union_type", "?"))
    return int8, flt, {"delegates": len(graphs), "constant_bytes_by_type": by_type, "xnnpack_nodes": nodes,
                       "operators_outside_delegates": sorted(set(outside))}


# --------------------------------------------------------------------------------------------------
# Core ML


def read_coreml(exported: Exported) -> tuple[int, int, dict[str, Any]]:
    """(int8 weight bytes, float weight bytes, facts) of an ML program's weight constants.

    ``constexpr_affine_dequantize`` (iOS 16) / ``constexpr_blockwise_shift_scale`` (iOS 18) with int8 data are
    int8 weights; plain float ``const`` tensors of two or more dimensions are float weights. Sizes are the
    element counts of the tensor types (the data live in ``weights/weight.bin``)."""
    import coremltools as ct
    import numpy as np
    from coremltools.proto import MIL_pb2

    spec = ct.utils.load_spec(str(exported.path))
    dt = MIL_pb2.DataType
    width = {dt.INT8: 1, dt.UINT8: 1, dt.FLOAT16: 2, dt.FLOAT32: 4}
    int8 = flt = 0
    ops: dict[str, int] = {}

    def tensor_bytes(value_type) -> tuple[int, int, int]:
        tt = value_type.tensorType
        dims = [d.constant.size for d in tt.dimensions]
        return tt.dataType, len(dims), int(np.prod(dims)) * width.get(tt.dataType, 4) if dims else 0

    for fn in spec.mlProgram.functions.values():
        for block in fn.block_specializations.values():
            for op in block.operations:
                _count(ops, op.type)
                if op.type == "const":
                    dtype, rank, n = tensor_bytes(op.outputs[0].type)
                    if rank >= 2 and dtype in (dt.FLOAT32, dt.FLOAT16):
                        flt += n
                elif op.type.startswith("constexpr_"):
                    for key in ("quantized_data", "data"):  # the attribute (iOS 16) or input (iOS 18) name
                        if key in op.attributes:
                            dtype, _rank, n = tensor_bytes(op.attributes[key].type)
                            if dtype in (dt.INT8, dt.UINT8):
                                int8 += n
                            break
    weights = Path(exported.path) / "Data" / "com.apple.CoreML" / "weights" / "weight.bin"
    return int8, flt, {"ops": ops, "specification_version": spec.specificationVersion,
                       "weight_bin_bytes": weights.stat().st_size if weights.exists() else None}


# --------------------------------------------------------------------------------------------------
# Entry point

READERS: dict[str, Callable[[Exported], tuple[int, int, dict[str, Any]]]] = {
    "onnx": read_onnx, "litert": read_litert, "executorch": read_executorch, "coreml": read_coreml}


def check_int8(backend: str, exported: Exported, phone: "torch.nn.Module") -> Int8Check:
    """Read ``backend``'s artifact: is it int8?"""
    int8, flt, detail = READERS[backend](exported)
    return Int8Check(backend, int8, flt, artifact_size(exported.path), float32_param_bytes(phone), detail)


def io_dtypes(backend: str, exported: Exported) -> tuple[str, str]:
    """(input dtype, output dtype) of an artifact's tensors: only LiteRT's static int8 parts have int8 ones."""
    if backend == "litert":
        return litert_io_dtypes(exported.path)
    return "float32", "float32"
