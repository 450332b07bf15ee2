"""The model zoo: the papers' networks as plain torch modules whose cut points carry the papers' names.

Each model family lives in its own file and registers one :class:`ZooModel`. A cut name is a name in
the module's ``named_modules()``; the phone part of a cut runs the network up to and including that
module's output.
"""

from __future__ import annotations

import hashlib
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from harness.errors import UserError

_FAMILIES = ("vgg16", "activity", "vggs", "moon_tiny", "resnet18")


@dataclass(frozen=True)
class ZooModel:
    """One network of the zoo: how to build it and where the papers cut it."""

    name: str
    build: Callable[[], "object"]  # returns a torch.nn.Module (random init: the caller seeds torch)
    input_shape: tuple[int, ...]  # batch of 1, e.g. (1, 3, 224, 224)
    cuts: tuple[str, ...]  # the papers' cut names, in model order; each is in named_modules()
    reduced_dims: Mapping[str, int] = field(default_factory=dict)  # papers' PCA dims per cut
    paper: str = ""
    description: str = ""
    source: Path | None = None  # the file defining it: part of every artifact's cache key

    def definition_hash(self) -> str:
        """Hash of the file that defines the model, so edited code never reuses old artifacts."""
        return hashlib.sha256(self.source.read_bytes()).hexdigest()[:16] if self.source else ""


def zoo() -> dict[str, ZooModel]:
    """All zoo models by name, in a stable order."""
    out: dict[str, ZooModel] = {}
    for family in _FAMILIES:
        module = importlib.import_module(f"models.{family}")
        for entry in module.ZOO:
            out[entry.name] = entry
    return out


def get(name: str) -> ZooModel:
    models = zoo()
    if name not in models:
        raise UserError(f"unknown model {name!r}; the zoo has: {', '.join(models)}")
    return models[name]
