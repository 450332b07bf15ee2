"""The model of the CI profile (``examples/ci_smoke.toml``): a small image CNN standing in for the
network a team ships, cut after ``block1`` or ``block2``.

``WIDTH`` multiplies every layer's channel count. It is the knob the compare calibration
(``benchmarks/bench_compare.py``) turns to 1.3 to play "a change that made the model 30% wider":
a copy of this file with ``WIDTH = 1.3`` beside a copy of the spec, so the model keeps its name
(``ci_model:build``), cuts and input, and only its definition changes, as in a real commit.
"""

from __future__ import annotations

WIDTH = 1.0
INPUT_SHAPE = (1, 3, 128, 128)
CLASSES = 10


def _ch(n: int) -> int:
    return max(1, round(n * WIDTH))


def build():
    """Return (module, example_input) as a spec's ``[model].source`` factory must."""
    import torch
    import torch.nn as nn

    def block(cin: int, cout: int, pool: bool) -> nn.Sequential:
        layers = [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU()]
        return nn.Sequential(*layers, nn.MaxPool2d(2)) if pool else nn.Sequential(*layers)

    class CIModel(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = block(INPUT_SHAPE[1], _ch(24), pool=True)  # 128 -> 64
            self.block1 = block(_ch(24), _ch(48), pool=True)  # 64 -> 32
            self.block2 = block(_ch(48), _ch(96), pool=True)  # 32 -> 16
            self.block3 = block(_ch(96), _ch(96), pool=False)
            self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(_ch(96), CLASSES))

        def forward(self, x):
            return self.head(self.block3(self.block2(self.block1(self.stem(x)))))

    torch.manual_seed(0)
    return CIModel().eval(), torch.randn(*INPUT_SHAPE)
