"""VGG-S (Chatfield et al., "Return of the devil in the details", 2014) as the emotion classifier of
Levi & Hassner (VGG-S_RGB, 7 classes, SFEW-2) used by Osia et al., hybrid privacy-preserving deep
inference (seed 000), cut at conv5.

Layout (Caffe names): conv1 96x7x7 stride 2, norm1 (LRN), pool1 3/3; conv2 256x5x5, norm2 (LRN),
pool2 2/2; conv3, conv4, conv5 512x3x3 pad 1; pool5 3/3; fc6 4096, fc7 4096, fc8 7. Input 3x224x224.
Choices the papers do not fix:
- ``conv2`` has pad 1 (our reading of Chatfield et al.'s Table 1), so at 224x224 the sizes are
  conv1 109, pool1 37, conv2 35, pool2 18, conv3..5 18, pool5 6, and fc6 sees 512x6x6 = 18432
  inputs, the Caffe model's fc6 size. (Pad 0 would also end at 6x6, with 17x17 conv3..5 maps.)
- Pools use ``ceil_mode=True``: Caffe rounds pooled sizes up, and only that rounding gives 6x6 at
  pool5 (floor rounding would give 5x5).
- LRN as in Caffe: local_size 5, alpha 0.0005, beta 0.75, k 2 (``nn.LocalResponseNorm`` divides
  alpha by size exactly like Caffe's ACROSS_CHANNELS mode). ``CaffeLRN`` is that module with a
  forward written in 4-D elementwise ops, because torch's avg_pool3d-based one does not run on
  ExecuTorch; the test suite checks both agree. LRN after conv2 follows the digest; the
  original VGG-S paper puts LRN after conv1 only; one LRN more or less changes cost by <1%.
- Each ``convN`` is ``Sequential(Conv2d, ReLU)``: the cut ``conv5`` is conv5 + ReLU, before pool5.
  ``fc6``/``fc7`` are ``Sequential(Linear, ReLU)``; ``fc8`` the 7-way classifier. No dropout
  (inference only). The model needs 224x224 input (no adaptive pool: the Caffe network has none).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F

EMOTIONS = 7


def _conv(cin: int, cout: int, kernel: int, stride: int = 1, pad: int = 0) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel_size=kernel, stride=stride, padding=pad), nn.ReLU())


class CaffeLRN(nn.LocalResponseNorm):
    """``nn.LocalResponseNorm`` (Caffe's ACROSS_CHANNELS LRN), computed with 4-D elementwise ops only.

    torch's own forward pads a 5-D view and runs ``avg_pool3d``, which ExecuTorch's runtime has no
    kernel for (the .pte fails to load: "aten::avg_pool3d.out not found"). Same formula here:
    ``x / (k + alpha / size * sum of x^2 over the size-channel window) ** beta``, with the window
    sum written as ``size`` shifted channel slices of the zero-padded squares.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        before, after = self.size // 2, (self.size - 1) // 2
        padded = F.pad(x * x, (0, 0, 0, 0, before, after))  # zeros on the channel axis (dim 1)
        window = padded[:, self.size - 1:]  # slice i covers channels c + i - before
        for i in range(self.size - 1):
            window = window + padded[:, i:i - (self.size - 1)]
        return x / (self.k + (self.alpha / self.size) * window) ** self.beta


def _lrn() -> CaffeLRN:
    return CaffeLRN(size=5, alpha=0.0005, beta=0.75, k=2.0)


class VGGS(nn.Sequential):
    """VGG-S with Caffe layer names; ``num_classes`` logits."""

    def __init__(self, num_classes: int = EMOTIONS) -> None:
        super().__init__(OrderedDict([
            ("conv1", _conv(3, 96, 7, stride=2)),
            ("norm1", _lrn()),
            ("pool1", nn.MaxPool2d(kernel_size=3, stride=3, ceil_mode=True)),
            ("conv2", _conv(96, 256, 5, pad=1)),
            ("norm2", _lrn()),
            ("pool2", nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True)),
            ("conv3", _conv(256, 512, 3, pad=1)),
            ("conv4", _conv(512, 512, 3, pad=1)),
            ("conv5", _conv(512, 512, 3, pad=1)),
            ("pool5", nn.MaxPool2d(kernel_size=3, stride=3, ceil_mode=True)),
            ("flatten", nn.Flatten(1)),
            ("fc6", nn.Sequential(nn.Linear(512 * 6 * 6, 4096), nn.ReLU())),
            ("fc7", nn.Sequential(nn.Linear(4096, 4096), nn.ReLU())),
            ("fc8", nn.Linear(4096, num_classes)),
        ]))


def build_vggs_emotion() -> VGGS:
    """The emotion classifier: input (1, 3, 224, 224), 7 emotion logits."""
    return VGGS().eval()
