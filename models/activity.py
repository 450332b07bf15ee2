"""The MotionSense activity-recognition CNN (the MTCNN of Malekzadeh et al.) used by Osia et al., hybrid
privacy-preserving deep inference (seed 000, Fig. 8 and Sec. 5.1.2), cut at Conv-4, FC-1 and FC-2.

Input: one window of 12 sensor channels (attitude, gravity, user acceleration, rotation rate; 3 axes
each) by 128 time steps, shaped (1, 12, 128). Output: logits of the 4 activities (downstairs,
upstairs, walking, jogging); the papers treat gender as the sensitive attribute, which has no head here.

The paper's figure gives the layer sequence only: Conv-1..Conv-4 each with ReLU and Pool, FC-1,
ReLU-5, FC-2, ReLU-6, then the task head. Everything else is our choice, kept small and conventional
for 1-D inertial-sensor CNNs:
- Window of 128 samples (2.56 s at MotionSense's 50 Hz), the usual HAR window length.
- ``conv1``..``conv4``: ``Sequential(Conv1d kernel 5 pad 2, ReLU, MaxPool1d 2)`` with 32, 64, 128 and
  128 channels; the time axis goes 128 -> 64 -> 32 -> 16 -> 8, so Conv-4's feature is 128x8 = 1024
  floats. A cut at ``convN`` includes its ReLU and pool (the figure draws them inside the block).
- ``fc1``: ``Sequential(Linear 1024->256, ReLU)`` (FC-1 + ReLU-5); ``fc2``: ``Sequential(Linear
  256->128, ReLU)`` (FC-2 + ReLU-6); ``head``: Linear 128->4. Cutting at fc1/fc2 uploads the
  rectified activations, as Caffe's in-place ReLU would.
- No dropout or batch norm (not in the figure; inference only).
"""

from __future__ import annotations

import torch.nn as nn

CHANNELS_IN = 12
WINDOW = 128
ACTIVITIES = 4
_CONV_CHANNELS = (32, 64, 128, 128)
_KERNEL = 5


def _conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv1d(cin, cout, kernel_size=_KERNEL, padding=_KERNEL // 2), nn.ReLU(),
                         nn.MaxPool1d(kernel_size=2, stride=2))


class ActivityMTCNN(nn.Module):
    """Four conv blocks, two rectified dense layers, one activity head."""

    def __init__(self, num_classes: int = ACTIVITIES) -> None:
        super().__init__()
        chans = (CHANNELS_IN, *_CONV_CHANNELS)
        self.conv1 = _conv(chans[0], chans[1])
        self.conv2 = _conv(chans[1], chans[2])
        self.conv3 = _conv(chans[2], chans[3])
        self.conv4 = _conv(chans[3], chans[4])
        self.flatten = nn.Flatten(1)
        self.fc1 = nn.Sequential(nn.Linear(chans[4] * (WINDOW // 16), 256), nn.ReLU())
        self.fc2 = nn.Sequential(nn.Linear(256, 128), nn.ReLU())
        self.head = nn.Linear(128, num_classes)

    def forward(self, x):
        x = self.conv4(self.conv3(self.conv2(self.conv1(x))))
        return self.head(self.fc2(self.fc1(self.flatten(x))))


def build_activity_mtcnn() -> ActivityMTCNN:
    """The activity model: input (1, 12, 128), 4 activity logits."""
    return ActivityMTCNN().eval()
