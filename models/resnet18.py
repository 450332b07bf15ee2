"""ResNet-18 (He et al., 2016) as the facial-attribute backbone of FaceMix (seed 004), 40 CelebA
attributes, with torchvision's module names (conv1 bn1 relu maxpool layer1..layer4 avgpool fc).

FaceMix puts the first N_pre = 1, 2 or 3 "convolution blocks" on the edge. We read a block as the
stem (conv1 + bn1 + relu + maxpool) and then each BasicBlock, NOT as a ResNet stage (layer1..3):
- the paper's edge FLOPs, 0.09G / 0.28G / 0.46G of 1.50G for the whole network (6%, 19%, 31%),
  match stem / + layer1.0 / + layer1.1 (our counter: 6.5%, 19.3%, 32.0% of the MACs at 224x224),
  while stages would give 32%, 55%, 78%;
- its edge params, 0.05M / 0.12M / 0.20M, grow by ~0.074M per step, exactly one 64-channel
  BasicBlock (73,984 with BN); the ~0.04M offset fits the last layer, which FaceMix also runs on
  the edge (its "postprocess model": the final layer only) and which is not part of our phone part.
So the zoo's cuts are ``maxpool`` (N_pre = 1), ``layer1.0`` (N_pre = 2) and ``layer1.1`` (N_pre =
3, the end of layer1). Cutting inside a BasicBlock (e.g. ``layer1.0.conv1``) is refused by the
splitter: the block's skip connection would cross the cut.
Choices the paper does not fix:
- Input 3x224x224 (the size of FaceMix's own benchmark table). The paper's full-model 1.50 GFLOPs
  is below our 1.82 GMACs at 224 (a smaller input or another counting convention); the shares
  above do not depend on that.
- Head: one ``fc`` Linear 512 -> 40 (one logit per binary attribute; the whole model has 11.20M
  parameters vs the paper's 11.21M, whose head may be 40 two-way classifiers).
- BatchNorm layers get seeded, non-trivial running statistics and affine parameters from torch's
  global generator, so exports are checked against BNs that do something; eval mode.
"""

from __future__ import annotations

import torch
import torch.nn as nn

ATTRIBUTES = 40


class BasicBlock(nn.Module):
    """Two 3x3 convs with a skip connection (a 1x1 conv + BN ``downsample`` when the shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, kernel_size=1, stride=stride, bias=False),
                                            nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet18(nn.Module):
    """ResNet-18 with torchvision's names; ``num_classes`` logits."""

    def __init__(self, num_classes: int = ATTRIBUTES) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = nn.Sequential(BasicBlock(64, 64), BasicBlock(64, 64))
        self.layer2 = nn.Sequential(BasicBlock(64, 128, 2), BasicBlock(128, 128))
        self.layer3 = nn.Sequential(BasicBlock(128, 256, 2), BasicBlock(256, 256))
        self.layer4 = nn.Sequential(BasicBlock(256, 512, 2), BasicBlock(512, 512))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.flatten = nn.Flatten(1)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.flatten(self.avgpool(x)))


def build_resnet18_facemix() -> ResNet18:
    """FaceMix's backbone: input (1, 3, 224, 224), 40 attribute logits; eval mode, seeded BN statistics."""
    model = ResNet18()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.1)
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model.eval()
