"""The DPFE facial-attribute model ("moon tiny") of Osia et al., Deep Private-Feature Extraction (DPFE,
TKDE; seed 003): a tiny-darknet variant predicting the 40 binary CelebA attributes, cut after each of
its 16 conv layers (the paper's 17 configurations with on-premise).

Architecture from the public Caffe file the paper points to (camel007/caffe-moon deploy.prototxt),
input 3x218x178 (CelebA's aligned images). Every conv is conv + BatchNorm + LeakyReLU(0.1), named
``conv1`` .. ``conv8`` after the Caffe layers, so a cut at ``convX`` uploads the rectified blob
(Caffe's in-place BN and ReLU tops):
  conv1 16 3x3, pool1; conv2 32 3x3, pool2; conv3 16 1x1, pool3;
  conv4_1 128 3x3, conv4_2 16 1x1, conv4_3 128 3x3, pool4;
  conv5_1 32 1x1, conv5_2 256 3x3, conv5_3 32 1x1, conv5_4 256 3x3, pool5;
  conv6_1 64 1x1, conv6_2 512 3x3, conv6_3 64 1x1, conv6_4 512 3x3; conv7 128 1x1; conv8 1000 1x1;
  global max pool and global average pool of conv8, each L2-normalised, concatenated (2000); fc 40.
Faithful to the prototxt, including what looks odd:
- Every conv has pad 1, the 1x1 convs too (their map grows by 2 in each dimension; the border is
  the conv's bias passed through BN and LeakyReLU). Every conv has a bias (Caffe's default).
- Caffe's ``BatchNorm`` layer has no Scale layer after it here, so it only normalises: we use
  ``BatchNorm2d(affine=False)``, running statistics only (no learned gamma/beta parameters).
- Pools are max 2/2 with Caffe's ceil rounding (``ceil_mode=True``). At 218x178 the maps are
  conv1 218x178, conv2 109x89, conv3 57x47, conv4_* 29x24 / 31x26, conv5_* 18x15 / 20x17,
  conv6_* 12x11 / 14x13, conv7 16x15, conv8 18x17.
- Caffe's ``Normalize`` (SSD's layer, across_spatial, channel-shared scale initialised to 1)
  becomes ``x / sqrt(sum(x^2) + 1e-10)`` per sample, the same formula; the learned scale is left
  out (1 at initialisation). Written with elementwise ops so every exporter handles it.
Our choice: the builder gives each BatchNorm seeded, non-trivial running statistics (mean ~ N(0,
0.1), var ~ U(0.5, 1.5)) from torch's global generator, so exported models are checked against a
BN that actually does something. The module is returned in eval mode (BN uses running stats).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn

ATTRIBUTES = 40

# (name, output channels, kernel) of every conv, with "pool" where a max pool follows.
_LAYERS = (
    ("conv1", 16, 3), "pool1",
    ("conv2", 32, 3), "pool2",
    ("conv3", 16, 1), "pool3",
    ("conv4_1", 128, 3), ("conv4_2", 16, 1), ("conv4_3", 128, 3), "pool4",
    ("conv5_1", 32, 1), ("conv5_2", 256, 3), ("conv5_3", 32, 1), ("conv5_4", 256, 3), "pool5",
    ("conv6_1", 64, 1), ("conv6_2", 512, 3), ("conv6_3", 64, 1), ("conv6_4", 512, 3),
    ("conv7", 128, 1),
    ("conv8", 1000, 1),
)


def _conv(cin: int, cout: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel_size=kernel, padding=1),
                         nn.BatchNorm2d(cout, affine=False), nn.LeakyReLU(0.1))


def _l2_normalize(x: torch.Tensor) -> torch.Tensor:
    """Caffe's Normalize over a (N, C) tensor: x / sqrt(sum x^2 + eps)."""
    return x / torch.sqrt((x * x).sum(dim=1, keepdim=True) + 1e-10)


class MoonTiny(nn.Module):
    """Tiny-darknet trunk (conv1 .. conv8 as direct children), global max+avg pooling head, fc 40."""

    def __init__(self, num_classes: int = ATTRIBUTES) -> None:
        super().__init__()
        cin = 3
        trunk: "OrderedDict[str, nn.Module]" = OrderedDict()
        for layer in _LAYERS:
            if isinstance(layer, str):
                trunk[layer] = nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True)
            else:
                name, cout, kernel = layer
                trunk[name] = _conv(cin, cout, kernel)
                cin = cout
        for name, module in trunk.items():
            self.add_module(name, module)
        self._trunk = tuple(trunk)  # names in forward order (a tuple of str, not a module)
        self.fc = nn.Linear(2 * cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name in self._trunk:
            x = getattr(self, name)(x)
        gmax = _l2_normalize(torch.amax(x, dim=(2, 3)))
        gavg = _l2_normalize(torch.mean(x, dim=(2, 3)))
        return self.fc(torch.cat([gmax, gavg], dim=1))


def build_moon_tiny() -> MoonTiny:
    """The DPFE model: input (1, 3, 218, 178), 40 attribute logits; eval mode, seeded BN statistics."""
    model = MoonTiny()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model.eval()
