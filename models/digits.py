"""A small CNN for scikit-learn's 8x8 handwritten digits: the network of splitbench's privacy demonstration.

Not a network of the papers: it is trained here in a few seconds on real data that ships with
scikit-learn (1797 images), on the primary task "digit >= 5", with the digit itself (K = 10) as the
sensitive label, so the accuracy-privacy trade-off of DPFE's Procedure 2 can be shown end to end on
one core. Its blocks ``conv1``, ``conv2``, ``conv3``, ``fc1`` are the cuts; uploaded feature sizes:
conv1 16x8x8 = 1024, conv2 32x4x4 = 512, conv3 32x2x2 = 128, fc1 32.

It is not in the zoo table (``models/__init__.py`` lists the papers' networks, with random weights
at the papers' input sizes); the demo measures it through a spec's ``source`` =
``models/digits.py:digits_factory`` with the weights it trained, so this file's hash keys its
exported artifacts.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch

CUTS = ("conv1", "conv2", "conv3", "fc1")
REDUCED_DIM = 8  # k of the reduced embedding at every cut (the papers' PCA dimension for VGG-16 conv5_1)
INPUT_SHAPE = (1, 1, 8, 8)


@functools.cache
def digits_cnn_class() -> type:
    """The ``DigitsCNN`` module class, defined on first use so that the constants above import no torch."""
    import torch.nn as nn

    class DigitsCNN(nn.Module):
        """Three conv blocks and a hidden dense block; ``head`` gives the two primary-task logits."""

        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU())
            self.conv2 = nn.Sequential(nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
            self.conv3 = nn.Sequential(nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
            self.fc1 = nn.Sequential(nn.Flatten(1), nn.Linear(128, 32), nn.ReLU())
            self.head = nn.Linear(32, 2)

        def forward(self, x):
            return self.head(self.fc1(self.conv3(self.conv2(self.conv1(x)))))

    return DigitsCNN


def build_digits_cnn() -> "torch.nn.Module":
    """An untrained digits CNN (the caller seeds torch)."""
    return digits_cnn_class()()


def digits_factory() -> tuple["torch.nn.Module", "torch.Tensor"]:
    """The CNN and an example input: a spec's ``source`` (the spec's ``weights`` give the trained values)."""
    import torch

    return build_digits_cnn().eval(), torch.zeros(*INPUT_SHAPE)


def digits_data(seed: int = 0) -> dict[str, np.ndarray]:
    """scikit-learn's digits as (N, 1, 8, 8) float32 in [0, 1], split in half (stratified by digit).

    Returns ``train_x, train_digit, test_x, test_digit`` (the primary label is ``digit >= 5``).
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    y = digits.target.astype(np.int64)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.5, random_state=seed, stratify=y)
    return {"train_x": xtr, "train_digit": ytr, "test_x": xte, "test_digit": yte}


def splitbench_data() -> dict:
    """The model's own inputs, for splitbench's int8 calibration (the convention in docs/spec.md): the training
    half of :func:`digits_data` (seed 0, the split the demo trains on) calibrates, the other half is held out, and
    the two primary-task classes make it a classifier (top-1 agreement of int8 with float32 is measured)."""
    data = digits_data(0)
    return {"calibration": data["train_x"], "held_out": data["test_x"], "classes": ("digit < 5", "digit >= 5")}


def train_digits_cnn(train_x: np.ndarray, train_primary: np.ndarray, *, seed: int = 0, epochs: int = 25,
                     batch_size: int = 64, lr: float = 3e-3) -> "torch.nn.Module":
    """Train the digits CNN on the primary task with Adam (seeded, CPU, a few seconds); eval mode."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed)
    model = build_digits_cnn()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    xs = torch.from_numpy(train_x)
    ys = torch.from_numpy(np.asarray(train_primary, dtype=np.int64))
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(xs.shape[0], generator=gen)
        for start in range(0, xs.shape[0], batch_size):
            idx = order[start:start + batch_size]
            opt.zero_grad()
            F.cross_entropy(model(xs[idx]), ys[idx]).backward()
            opt.step()
    return model.eval()
