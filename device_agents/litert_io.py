"""A float tensor into a LiteRT model's input, and its output back to float, whatever their types.

A static int8 ``.tflite`` (``litert_torch`` with a PT2E quantizer) takes and gives int8 tensors: ``set_tensor``
refuses a float32 array there. Its tensor details carry the affine parameters, ``quantization = (scale,
zero_point)``, with ``real = scale * (q - zero_point)``. Float tensors pass through unchanged. Used by the local
worker (once per job, before any timed call) and by the export's verification, so both feed the same bytes.
"""

from __future__ import annotations

from typing import Any


def quantize_input(x: Any, detail: dict[str, Any]) -> Any:
    """``x`` (a float array) in the tensor's type: rounded and saturated with its (scale, zero point) when the
    tensor is an integer one, cast otherwise."""
    import numpy as np

    dtype = np.dtype(detail["dtype"])
    if dtype.kind == "f":
        return np.ascontiguousarray(x, dtype=dtype)
    scale, zero = detail["quantization"]
    if not scale:
        raise ValueError(f"input {detail.get('name', '?')} is {dtype} without quantization parameters: "
                         "splitbench cannot feed it a float tensor")
    info = np.iinfo(dtype)
    return np.clip(np.round(np.asarray(x, dtype=np.float64) / scale) + zero, info.min, info.max).astype(dtype)


def dequantize_output(y: Any, detail: dict[str, Any]) -> Any:
    """An output tensor as float32: ``scale * (q - zero_point)`` for an integer tensor."""
    import numpy as np

    if np.dtype(detail["dtype"]).kind == "f":
        return np.asarray(y, dtype=np.float32)
    scale, zero = detail["quantization"]
    return ((np.asarray(y, dtype=np.float32) - zero) * scale).astype(np.float32)


def describe_input(detail: dict[str, Any]) -> dict[str, Any] | None:
    """How a float input was fed to an integer tensor (its dtype, scale and zero point); None for a float one."""
    import numpy as np

    dtype = np.dtype(detail["dtype"])
    if dtype.kind == "f":
        return None
    scale, zero = detail["quantization"]
    return {"dtype": dtype.name, "quantized_with": {"scale": float(scale), "zero_point": int(zero)},
            "where": "once, before the first inference (not timed)"}
