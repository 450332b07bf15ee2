"""What the phone uploads: the phone part's output tensor, in the type the artifact gives it.

:mod:`harness.split.costs` counts a configuration's feature as float32 (4 bytes an element): what every float32
artifact outputs. An artifact may output another type: a static int8 LiteRT part ends in an int8 tensor (its
last op is quantized), so the phone sends 1 byte an element, with the tensor's scale and zero point known to the
cloud from the artifact (fixed at export, nothing to send per inference). ONNX Runtime's QDQ, ExecuTorch's and
Core ML's int8 parts dequantize their output: they upload float32. So ``upload_bytes`` is the element count
times the width of the artifact's output type, and ``upload_dtype`` says which type that is.
"""

from __future__ import annotations

import math
from typing import Any

BYTES_PER_ELEMENT = {"float64": 8, "float32": 4, "float16": 2, "bfloat16": 2, "int32": 4, "int16": 2, "int8": 1,
                     "uint8": 1}


def upload_costs(costs: dict[str, Any], dtype: str) -> dict[str, Any]:
    """``costs`` (a configuration's, float32) for an artifact whose output tensor is ``dtype``: the same dict
    for float32, else with ``upload_bytes`` in that type and ``upload_dtype`` naming it."""
    if dtype == "float32" or "upload_shape" not in costs:
        return costs
    if dtype not in BYTES_PER_ELEMENT:
        raise ValueError(f"unknown output type {dtype!r}; known: {', '.join(BYTES_PER_ELEMENT)}")
    elements = math.prod(int(d) for d in costs["upload_shape"])
    return {**costs, "upload_bytes": elements * BYTES_PER_ELEMENT[dtype], "upload_dtype": dtype}
