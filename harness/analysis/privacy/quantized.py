"""The feature an int8 phone part uploads, computed by the quantized phone part itself, in PyTorch.

The privacy sweep scores what a phone part uploads. For an int8 part that is not the float32 feature:
the int8 exports of LiteRT and ExecuTorch quantize the phone part with PyTorch 2 export quantization
(PT2E) and the phone computes with the result. This module runs the same static recipe in PyTorch:

1. ``torch.export.export(phone, (example,))`` at batch 1 (BatchNorms without affine parameters get
   weight 1 and bias 0 first, as the ExecuTorch export does; the same function to the last bit);
2. ``prepare_pt2e`` with ExecuTorch's ``XNNPACKQuantizer`` set to
   ``get_symmetric_quantization_config(is_per_channel=True)``: int8 weights, symmetric per output
   channel; int8 activations with HistogramObserver ranges;
3. calibration: one forward per calibration input, batch 1, in the given order;
4. ``convert_pt2e``: every quantized tensor becomes quantize/dequantize pairs around float operators,
   so the part computes on the int8 grid (PyTorch's reference representation of the XNNPACK int8
   kernels).

Calibration is the export's (:func:`calibration_inputs`): the first ``samples`` rows of the model's
own data where the caller has it (source ``"model data"``), else ``samples`` seeded standard normal
inputs shaped like one input, drawn exactly as ``harness.split.configurations.calibration_batch``
draws them (source ``"seeded random (seed N)"``).

The converted part is traced at batch 1 (as exported), so :func:`uploaded_features` runs it one
input at a time.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np

from harness.config.spec import PRECISIONS
from harness.core.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    import torch

FLOAT32 = "float32"
INT8 = "int8"
MODEL_DATA = "model data"
#: What an int8 row of the sweep says about the part that computed its feature.
RECIPE = ("static int8, PT2E XNNPACKQuantizer (symmetric, per-channel weights), as the LiteRT and ExecuTorch "
          "exports")
INSTALL_HINT = "pip install 'splitbench[executorch]'"


@dataclass(frozen=True)
class Calibration:
    """How an int8 part is calibrated, as the export calibrates it: the spec's ``[export]
    calibration_samples`` and ``calibration_seed``, and the model's own inputs where it has them."""

    data: Any = None  # (M, ...) the model's own inputs, or None: seeded random inputs
    samples: int = 32
    seed: int = 0

    def inputs(self, input_shape: tuple[int, ...]) -> tuple[list["torch.Tensor"], str]:
        """The batch-1 calibration inputs and the ``calibration`` text of the rows they make."""
        batch, source = calibration_inputs(input_shape, self.samples, self.seed, self.data)
        return batch, describe_calibration(source, len(batch))


def check_precisions(precisions: Iterable[str]) -> tuple[str, ...]:
    """The precisions as a tuple, each once and known (one UserError line otherwise)."""
    out = tuple(str(p) for p in precisions)
    if not out:
        raise UserError(f"precisions: give at least one of {', '.join(PRECISIONS)}")
    for p in out:
        if p not in PRECISIONS:
            raise UserError(f"precisions: unknown precision {p!r}; use {' or '.join(PRECISIONS)}")
    if len(set(out)) != len(out):
        raise UserError(f"precisions: give each precision once, got {list(out)!r}")
    return out


def calibration_inputs(input_shape: tuple[int, ...], samples: int, seed: int,
                       data: Any = None) -> tuple[list["torch.Tensor"], str]:
    """``samples`` batch-1 calibration inputs and where they come from, as the int8 export draws them.

    ``input_shape``: the shape of one batch of inputs (N, ...); only ``[1:]`` is used. ``data``
    (M, ...): the model's own inputs; the first ``samples`` rows are used (all of them when M is
    smaller), source ``"model data"``. Without data: seeded standard normal inputs, source
    ``"seeded random (seed N)"``.
    """
    import torch

    from harness.split.configurations import calibration_batch

    if samples < 1:
        raise UserError(f"calibration samples: must be at least 1, got {samples}")
    if data is not None:
        t = torch.as_tensor(np.asarray(data))[:samples].to(torch.float32)
        if t.shape[0] == 0:
            raise UserError("calibration data: holds no inputs")
        if tuple(t.shape[1:]) != tuple(input_shape[1:]):
            raise UserError(f"calibration data: inputs of shape {tuple(t.shape[1:])}, the model takes "
                            f"{tuple(input_shape[1:])}")
        # Fresh row-major copies: a row of an array made with a new axis (digits' (N, 1, 8, 8)) has stride 0 on
        # that axis, and a traced example with such strides gets another dim order, which ExecuTorch's XNNPACK
        # runtime then refuses ("Propagating input shapes failed") for standard inputs.
        return [t[i:i + 1].clone(memory_format=torch.contiguous_format) for i in range(t.shape[0])], MODEL_DATA
    batch = calibration_batch(torch.zeros(1, *input_shape[1:]), samples, seed)
    return [batch[i:i + 1].contiguous() for i in range(samples)], f"seeded random (seed {seed})"


def describe_calibration(source: str, samples: int) -> str:
    """The ``calibration`` column of an int8 row, e.g. ``model data, 32 inputs``."""
    return f"{source}, {samples} input{'s' if samples != 1 else ''}"


def quantize_phone(phone: "torch.nn.Module", calibration: list["torch.Tensor"]) -> "torch.nn.Module":
    """The phone part quantized to static int8 by the export's PT2E recipe (see the module docstring).

    What the converters print (torchao's CUDA libraries it cannot load, deprecation lines) goes to a
    temporary log; a part that cannot be exported or quantized is one UserError line naming the step.
    """
    import torch

    from harness.config.backends import affine_batchnorms
    from harness.core.fdcapture import capture_fds

    with tempfile.TemporaryDirectory(prefix="splitbench-int8-") as tmp:
        log = Path(tmp) / "quantize.log"
        step = "importing the quantizer"
        try:
            with capture_fds(log):
                try:
                    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
                        XNNPACKQuantizer,
                        get_symmetric_quantization_config,
                    )
                    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
                except ImportError as exc:
                    raise UserError(f"scoring int8 parts needs ExecuTorch's XNNPACKQuantizer and torchao "
                                    f"({exc}): {INSTALL_HINT}") from None
                example = calibration[0]
                step = "torch.export"
                graph = torch.export.export(affine_batchnorms(phone).eval(), (example,)).module()
                step = "prepare_pt2e"
                quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
                prepared = prepare_pt2e(graph, quantizer)
                step = "calibration"
                with torch.no_grad():
                    for x in calibration:
                        prepared(x)
                step = "convert_pt2e"
                return convert_pt2e(prepared)
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001 - any converter failure is one line for this part
            first = (str(exc).strip().splitlines() or [""])[0][:300]
            raise UserError(f"int8: {step} of the phone part failed: {type(exc).__name__}: {first}") from None


def uploaded_features(part: "torch.nn.Module", x: "torch.Tensor") -> "torch.Tensor":
    """The part's output for every row of ``x``, one input at a time (the int8 part is traced at batch 1)."""
    import torch

    with torch.no_grad():
        return torch.cat([part(x[i:i + 1]) for i in range(x.shape[0])])
