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

Calibration is the export's (:class:`Calibration`): ``[export] calibration_samples`` rows of the
model's own data where it has some, drawn with ``[export] calibration_seed``, else that many seeded
standard normal inputs shaped like one input.

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
SEEDED_RANDOM = "seeded random"
#: What an int8 row of the sweep says about the part that computed its feature.
RECIPE = ("static int8, PT2E XNNPACKQuantizer (symmetric, per-channel weights), as the LiteRT and ExecuTorch "
          "exports")
INSTALL_HINT = "pip install 'splitbench[executorch]'"


@dataclass(frozen=True)
class Calibration:
    """How an int8 part is calibrated, as the int8 export calibrates it.

    ``data`` (N, ...): the model's own inputs (a model module's ``splitbench_data()["calibration"]``);
    ``samples`` of its rows are used, drawn without replacement with ``seed`` and kept in row order (all
    of them when there are fewer), as the export draws them. Without data: ``samples`` seeded standard
    normal inputs shaped like one input, drawn by ``harness.split.configurations.calibration_batch``.
    ``samples`` and ``seed`` are the spec's ``[export] calibration_samples`` and ``calibration_seed``.
    The export's own calibration object answers :meth:`inputs` and :meth:`describe` alike, so either can be
    given to the sweep.
    """

    data: Any = None
    samples: int = 32
    seed: int = 0
    origin: str = "the model's data"  # where ``data`` comes from, for :meth:`describe`

    def rows(self) -> list[int]:
        """The rows of ``data`` used (model data only)."""
        n = int(np.asarray(self.data).shape[0])
        return sorted(int(r) for r in np.random.default_rng(self.seed).choice(n, size=min(self.samples, n),
                                                                                replace=False))

    def inputs(self, example: "torch.Tensor") -> list["torch.Tensor"]:
        """The calibration inputs, batch 1 each, in the example's dtype."""
        import torch

        from harness.split.configurations import calibration_batch

        if self.samples < 1:
            raise UserError(f"calibration samples: must be at least 1, got {self.samples}")
        if self.data is None:
            batch = calibration_batch(example, self.samples, self.seed)
        else:
            data = np.asarray(self.data)
            if data.shape[0] == 0:
                raise UserError(f"calibration data ({self.origin}): holds no inputs")
            if tuple(data.shape[1:]) != tuple(example.shape[1:]):
                raise UserError(f"calibration data ({self.origin}): inputs of shape {tuple(data.shape[1:])}, the "
                                f"model takes {tuple(example.shape[1:])}")
            batch = torch.from_numpy(np.array(data[self.rows()], dtype=np.float32)).to(example.dtype)
        # Fresh row-major copies: a row of an array made with a new axis (the digits' (N, 1, 8, 8)) can have
        # stride 0 on that axis, and a part traced with such an example gets another dim order, which
        # ExecuTorch's XNNPACK runtime then refuses for standard inputs ("Propagating input shapes failed").
        return [batch[i:i + 1].clone(memory_format=torch.contiguous_format) for i in range(batch.shape[0])]

    def describe(self) -> str:
        """Where the inputs come from: the ``calibration`` column of an int8 row (the export's wording)."""
        if self.data is None:
            return f"{SEEDED_RANDOM}: {self.samples} standard normal inputs, seed {self.seed}"
        n = int(np.asarray(self.data).shape[0])
        return f"{MODEL_DATA}: {min(self.samples, n)} of the {n} rows of {self.origin}, drawn with seed {self.seed}"


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
