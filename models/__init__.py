"""The model zoo: the papers' networks as plain torch modules whose cut points carry the papers' names.

This registry is a table that imports no torch (reading the export cache must stay fast); each model
family lives in its own file with a ``build_*`` function named here. A cut name is a name in the
module's ``named_modules()``; the phone part of a cut runs the network up to and including that
module's output.
"""

from __future__ import annotations

import hashlib
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from harness.core.errors import UserError

_HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class ZooModel:
    """One network of the zoo: how to build it and where the papers cut it."""

    name: str
    family: str  # the file models/<family>.py that defines it
    builder: str  # the function in that file returning a torch.nn.Module (the caller seeds torch)
    input_shape: tuple[int, ...]  # batch of 1, e.g. (1, 3, 224, 224)
    cuts: tuple[str, ...]  # the papers' cut names, in model order; each is in named_modules()
    reduced_dims: Mapping[str, int] = field(default_factory=dict)  # papers' PCA dims per cut
    paper: str = ""
    description: str = ""

    @property
    def source(self) -> Path:
        return _HERE / f"{self.family}.py"

    def definition_hash(self) -> str:
        """Hash of the file that defines the model, so edited code never reuses old artifacts."""
        return hashlib.sha256(self.source.read_bytes()).hexdigest()[:16]

    def build(self) -> Any:
        return getattr(importlib.import_module(f"models.{self.family}"), self.builder)()


_ZOO = (
    ZooModel("vgg16_gender", "vgg16", "build_vgg16_gender", (1, 3, 224, 224), ("conv5_1", "conv5_2", "conv5_3"),
             {"conv5_1": 8, "conv5_2": 6, "conv5_3": 4}, "Osia et al. (hybrid deep inference)",
             "VGG-16 gender classifier (DEX), 2 classes"),
    ZooModel("activity_mtcnn", "activity", "build_activity_mtcnn", (1, 12, 128), ("conv4", "fc1", "fc2"),
             {"conv4": 8, "fc1": 8, "fc2": 8}, "Osia et al. (hybrid deep inference)",
             "MotionSense activity recognition CNN, 12 sensor channels, 4 activities"),
    ZooModel("vggs_emotion", "vggs", "build_vggs_emotion", (1, 3, 224, 224), ("conv5",), {"conv5": 10},
             "Osia et al. (hybrid deep inference)", "VGG-S emotion classifier (Levi & Hassner), 7 classes"),
    ZooModel("moon_tiny", "moon_tiny", "build_moon_tiny", (1, 3, 218, 178),
             ("conv1", "conv2", "conv3", "conv4_1", "conv4_2", "conv4_3", "conv5_1", "conv5_2", "conv5_3",
              "conv5_4", "conv6_1", "conv6_2", "conv6_3", "conv6_4", "conv7", "conv8"),
             # DPFE's private feature is 10-dimensional (its Sec. 4.2 and 5); used here for every cut.
             {cut: 10 for cut in ("conv1", "conv2", "conv3", "conv4_1", "conv4_2", "conv4_3", "conv5_1",
                                  "conv5_2", "conv5_3", "conv5_4", "conv6_1", "conv6_2", "conv6_3",
                                  "conv6_4", "conv7", "conv8")},
             "Osia et al. (DPFE)", "tiny-darknet facial-attribute model, 40 CelebA attributes"),
    # FaceMix's N_pre = 1, 2, 3 conv blocks on the edge: the stem, then each BasicBlock of layer1
    # (its edge FLOPs and params fit this reading, not stages; see models/resnet18.py).
    ZooModel("resnet18_facemix", "resnet18", "build_resnet18_facemix", (1, 3, 224, 224),
             ("maxpool", "layer1.0", "layer1.1"), {}, "FaceMix",
             "ResNet-18 facial-attribute model, 40 attributes; cuts = N_pre 1, 2, 3"),
)


def zoo() -> dict[str, ZooModel]:
    """All zoo models by name, in a stable order."""
    return {entry.name: entry for entry in _ZOO}


def get(name: str) -> ZooModel:
    models = zoo()
    if name not in models:
        raise UserError(f"unknown model {name!r}; the zoo has: {', '.join(models)}")
    return models[name]


def describe() -> list[dict[str, Any]]:
    """The zoo as plain rows, for `splitbench models`."""
    return [{"name": m.name, "input_shape": list(m.input_shape), "cuts": list(m.cuts),
             "reduced_dims": dict(m.reduced_dims), "paper": m.paper, "description": m.description}
            for m in _ZOO]
