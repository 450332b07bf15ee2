"""What the phone part of a configuration costs apart from time: parameters, multiply-accumulates and
the feature it uploads.

MACs come from ``torch.utils.flop_counter.FlopCounterMode`` on one forward pass of the example input.
It counts the matrix products only: convolutions (any dimension, grouped included), linear layers,
matmul/bmm/baddbmm and attention kernels, as 2 FLOPs per multiply-accumulate. Element-wise work
(bias adds, BatchNorm at inference, activations, pooling, LRN, L2 normalisation, residual adds) is
not counted; it is a few percent at most in the papers' networks and it is how published counts
(VGG-16's 15.47 GMACs, ResNet-18's 1.82 GMACs) are made. So ``macs = FLOPs / 2`` and ``flops``
below is that same matrix-product count times two.

``mac_share`` is the phone's MACs over the whole model's: FaceMix's "computation on edge".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import torch

FLOAT32_BYTES = 4


@dataclass(frozen=True)
class Costs:
    """The phone part's size, work and upload for one configuration (batch of one)."""

    params: int  # parameters of the phone part (learned weights and biases; BN running stats excluded)
    macs: int  # multiply-accumulates of one inference of the phone part
    flops: int  # 2 * macs
    upload_shape: tuple[int, ...]  # shape of the phone part's output, batch included
    upload_bytes: int  # the uploaded feature as float32
    full_macs: int  # multiply-accumulates of one inference of the whole model
    mac_share: float  # macs / full_macs (1.0 for on-premise)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["upload_shape"] = list(self.upload_shape)
        return d


def count_params(module: "torch.nn.Module") -> int:
    """Parameters of ``module``, each shared tensor counted once."""
    return sum(p.numel() for p in module.parameters())


def count_macs(module: "torch.nn.Module", example_input: "torch.Tensor") -> tuple[int, "torch.Tensor"]:
    """(multiply-accumulates of one forward pass, its output), counted without autograd.

    The pass runs on the ``meta`` device (shapes only, no arithmetic: VGG-16 at 224x224 is counted
    in well under a second instead of a real 15 GMAC pass); the module's own tensors are swapped for
    meta stand-ins through ``functional_call``, so nothing is copied. The output is then a meta
    tensor (its shape is what callers use). A module that cannot run on meta is counted for real.
    """
    import torch
    from torch.func import functional_call
    from torch.utils.flop_counter import FlopCounterMode

    meta = {name: torch.empty_like(t, device="meta")
            for name, t in (*module.named_parameters(), *module.named_buffers())}
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            out = functional_call(module, meta, (example_input.to("meta"),))
    except (NotImplementedError, RuntimeError):  # an op without a meta kernel
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            out = module(example_input)
    return counter.get_total_flops() // 2, out


def count_costs(phone: "torch.nn.Module", full_model: "torch.nn.Module", example_input: "torch.Tensor",
                full_macs: int | None = None) -> Costs:
    """The :class:`Costs` of ``phone`` (fed ``example_input``) beside ``full_model``.

    Pass ``full_macs`` (from :func:`count_macs`) to skip recounting the whole model for every cut.
    """
    import torch

    macs, out = count_macs(phone, example_input)
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"the phone part must return one tensor, got {type(out).__name__}")
    if full_macs is None:
        full_macs = macs if full_model is phone else count_macs(full_model, example_input)[0]
    return Costs(
        params=count_params(phone),
        macs=macs,
        flops=2 * macs,
        upload_shape=tuple(out.shape),
        upload_bytes=out.numel() * FLOAT32_BYTES,
        full_macs=full_macs,
        mac_share=macs / full_macs if full_macs else 0.0,
    )
