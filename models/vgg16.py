"""VGG-16 (Simonyan & Zisserman, 2015) as the gender classifier of Osia et al., hybrid privacy-preserving
deep inference (seeds 000/001/002): the DEX network of Rothe et al. fine-tuned for 2 classes.

Layout follows the Caffe VGG-16 the papers used, with the Caffe layer names as module names so the
papers' cuts (conv5_1, conv5_2, conv5_3) are ``named_modules()`` names:
  conv1_1 conv1_2 pool1 | conv2_1 conv2_2 pool2 | conv3_1..conv3_3 pool3 | conv4_1..conv4_3 pool4 |
  conv5_1..conv5_3 pool5 | avgpool flatten | fc6 fc7 fc8.
Choices the papers do not fix:
- Each ``convX_Y`` is ``Sequential(Conv2d 3x3 pad 1, ReLU)``, so a cut at convX_Y includes its ReLU
  (Caffe runs the ReLU in place on the conv's top blob; the uploaded feature is the rectified one).
  ``fc6`` and ``fc7`` are ``Sequential(Linear, ReLU)``; ``fc8`` is the bare classifier.
- ``avgpool`` is ``AdaptiveAvgPool2d((7, 7))`` as in torchvision: the identity at 224x224 (pool5 is
  already 7x7), and it lets tests and reduced-size demos feed smaller images while fc6 keeps its
  25088x4096 weights. At 224x224 it costs nothing and changes nothing.
- No dropout modules: the harness only runs inference (eval mode), where dropout is the identity and
  every exporter drops it anyway; leaving it out keeps the exported graphs and the module tree simple.
- Weights are whatever the caller's seed gives (torch's default init); phone cost does not depend on
  the values. A DEX state_dict can be loaded through the spec's ``weights`` key with these names.
"""

from __future__ import annotations

from collections import OrderedDict

import torch.nn as nn

# (stage, number of convs, output channels) of VGG-16's configuration "D".
_STAGES = ((1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512))


def _conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel_size=3, padding=1), nn.ReLU(inplace=False))


def _fc(fin: int, fout: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(fin, fout), nn.ReLU(inplace=False))


class VGG16(nn.Sequential):
    """VGG-16 with Caffe layer names; ``num_classes`` outputs (logits)."""

    def __init__(self, num_classes: int = 1000) -> None:
        layers: "OrderedDict[str, nn.Module]" = OrderedDict()
        cin = 3
        for stage, convs, cout in _STAGES:
            for i in range(1, convs + 1):
                layers[f"conv{stage}_{i}"] = _conv(cin, cout)
                cin = cout
            layers[f"pool{stage}"] = nn.MaxPool2d(kernel_size=2, stride=2)
        layers["avgpool"] = nn.AdaptiveAvgPool2d((7, 7))
        layers["flatten"] = nn.Flatten(1)
        layers["fc6"] = _fc(512 * 7 * 7, 4096)
        layers["fc7"] = _fc(4096, 4096)
        layers["fc8"] = nn.Linear(4096, num_classes)
        super().__init__(layers)


def build_vgg16(num_classes: int = 1000) -> VGG16:
    """VGG-16 with an ImageNet-sized head by default (138.36M parameters, 15.47 GMACs at 224x224)."""
    return VGG16(num_classes).eval()


def build_vgg16_gender() -> VGG16:
    """The papers' VGG-16 gender classifier: 2 classes, input 3x224x224."""
    return VGG16(num_classes=2).eval()
