"""One configuration's phone part as every conversion of it shares it, and the error measure its artifacts are
verified with.

Verification feeds an artifact one input and compares its output with the PyTorch phone part's.
``max_rel_err`` is ``max|out - ref| / max|ref|``: the worst error relative to the feature's own scale. An
element-wise relative error would blow up on the many exact zeros a ReLU feature holds, and say nothing about
whether the feature is right. For a reduced embedding the PCA output is a small difference of large sums, so
its error is divided by the size of those sums instead (see :func:`error_scale`; ``info["error_scale"]`` names
the divisor and ``info["output_rel_err"]`` keeps ``max|out - ref| / max|ref|``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.config.spec import Spec
from harness.export.cache import VERIFY_SEED
from harness.split.configurations import Configuration

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import torch


@dataclass
class Part:
    """What one configuration's conversions share: built once per configuration on a cache miss."""

    phone: "torch.nn.Module"
    rest: "torch.nn.Module"  # the cloud part: rest(phone(x)) is the whole model's output
    example: "torch.Tensor"
    verify_input: "np.ndarray"  # the float32 verification input (seeded standard normal, VERIFY_SEED)
    verify_from: str  # what verify_input is, in words
    reference: "np.ndarray"  # the PyTorch phone part's output on it
    costs: dict[str, Any]
    info: dict[str, Any]
    error_scale: float  # what max_rel_err divides by (see error_scale)

    def reference_on(self, x: "np.ndarray") -> tuple["np.ndarray", float]:
        """The PyTorch phone part's output on another input, and the error scale there."""
        import numpy as np
        import torch

        t = torch.from_numpy(np.ascontiguousarray(x)).to(self.example.dtype)
        with torch.no_grad():
            ref = self.phone(t).detach().numpy().astype(np.float32)
        return ref, error_scale(self.phone, t, ref)[0]


def error_scale(phone: "torch.nn.Module", x: "torch.Tensor", reference: "np.ndarray") -> tuple[float, str]:
    """The magnitude a float32 error of this phone part is relative to, and its name.

    Simple and full: ``max|ref|``. Reduced: the PCA output ``W f + b`` is a small difference of large
    sums; with random weights, deep features of different inputs are nearly parallel, so ``W f``
    and ``-b`` cancel to ~1e-3 of their size and any float32 rounding in the feature below (~1e-6 of
    it, the same in PyTorch) is amplified ~1000 times. Its error is therefore measured against the
    size of the terms it sums, ``max_i (|W| |f| + |b|)_i``, the usual scale of a dot product's
    rounding error. ``info["output_rel_err"]`` keeps ``max|out - ref| / max|ref|`` as well.
    """
    import numpy as np
    import torch

    pca = getattr(phone, "pca", None)
    body = getattr(phone, "phone", None)
    if isinstance(pca, torch.nn.Linear) and body is not None:
        with torch.no_grad():
            f = body(x).reshape(1, -1).double()
            terms = f.abs() @ pca.weight.double().abs().T + pca.bias.double().abs()
        return float(terms.max()), "max(|W||f|+|b|)"
    return float(np.max(np.abs(reference))) if reference.size else 0.0, "max|ref|"


def errors(out: "np.ndarray", ref: "np.ndarray", scale: float) -> tuple[float, float, float]:
    """(max|out - ref|, that / scale, that / max|ref|)."""
    import numpy as np

    out = np.asarray(out, dtype=np.float64).reshape(ref.shape)
    ref = ref.astype(np.float64)
    abs_err = float(np.max(np.abs(out - ref))) if ref.size else 0.0
    ref_max = float(np.max(np.abs(ref))) if ref.size else 0.0
    return abs_err, (abs_err / scale if scale > 0 else abs_err), (abs_err / ref_max if ref_max > 0 else abs_err)


def build_part(loaded: Any, config: Configuration, spec: Spec, full_macs: int) -> Part:
    """The phone and cloud parts of ``config``, its costs and its float32 verification input and reference."""
    import numpy as np
    import torch

    from harness.split.configurations import build_parts
    from harness.split.costs import count_costs

    phone, rest, info = build_parts(loaded, config, spec)
    phone.eval()
    example = loaded.example_input
    x = torch.randn(*example.shape, generator=torch.Generator().manual_seed(VERIFY_SEED)).to(example.dtype)
    with torch.no_grad():
        reference = phone(x).detach().numpy().astype(np.float32)
    costs = count_costs(phone, loaded.module, example, full_macs=full_macs).to_dict()
    scale, kind = error_scale(phone, x, reference)
    return Part(phone, rest, example, x.numpy().copy(), f"seeded standard normal (seed {VERIFY_SEED})", reference,
                costs, {**info, "error_scale": kind}, scale)
