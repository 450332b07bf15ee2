"""Where an int8 phone part's calibration inputs come from, and which input verifies it.

Static int8 fixes each activation's range from real inputs run through the float32 part. The inputs are the
model's own data when its module offers some, else seeded standard normal inputs; the artifact says which
(``quantization["calibration"]``, and the record after it).

**The convention.** The module that defines the model (the spec's ``source`` file, or a zoo entry's
``models/<family>.py``) may define a function ``splitbench_data()`` taking no argument and returning a dict:

- ``"calibration"`` (required): an array of real inputs, ``(N, *input_shape[1:])``, float;
- ``"held_out"`` (optional): more inputs of the same shape, none of them in ``"calibration"``; the first one
  verifies the int8 part, and the top-1 agreement is measured on them as well;
- ``"classes"`` (optional): the class names, in output order. A module that names its classes declares a
  classifier: the whole model's output is one score per class, so the int8 part's top-1 agreement with
  float32 is measured (through the float32 cloud part). Without it no agreement is measured: a 2-D output
  may as well be an embedding or a regression, so the shape alone is never taken for a classifier.

``[export].calibration_samples`` rows are drawn from ``"calibration"`` without replacement with
``[export].calibration_seed`` (all of them when there are fewer). Without the function: that many seeded
standard normal inputs (the PCA's calibration batch). Whether the function exists is read from the file's
syntax tree; it is only imported and called when an int8 export asks, and what it returned is hashed into the
cache key (a change of the data rebuilds the int8 artifacts).
"""

from __future__ import annotations

import ast
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.config.spec import Spec
from harness.core.errors import UserError
from harness.split.configurations import calibration_batch, definition_file, model_module

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import torch

DATA_FUNCTION = "splitbench_data"
MODEL_DATA = "model data"
SEEDED_RANDOM = "seeded random"
# Held-out inputs the top-1 agreement is measured on, at most (each is one batch-1 inference per runtime).
TOP1_HELD_OUT_MAX = 1000


@dataclass(frozen=True)
class ModelData:
    """What a model module's ``splitbench_data()`` returned, checked."""

    origin: str  # "digits.py:splitbench_data()"
    calibration: "np.ndarray"
    held_out: "np.ndarray | None"
    classes: tuple[str, ...] | None
    sha256: str  # over every array and the class names: the data's identity in the cache key


def offers_data(path: Path) -> bool:
    """Whether the file defines ``splitbench_data`` at module level (read from its syntax tree: no import)."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return False
    return any(isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == DATA_FUNCTION
               for node in tree.body)


def model_data(spec: Spec) -> ModelData | None:
    """The model module's data, or None when it offers none. Bad data is one :class:`UserError` line."""
    path = definition_file(spec)
    if not path.is_file() or not offers_data(path):
        return None
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _LOADED:
        _LOADED[key] = _load_data(spec, path)
    return _LOADED[key]


_LOADED: dict[tuple[str, int, int], ModelData] = {}  # (file, size, mtime) -> its data, once per process


def _load_data(spec: Spec, path: Path) -> ModelData:
    import numpy as np

    origin = f"{path.name}:{DATA_FUNCTION}()"
    fn = getattr(model_module(spec), DATA_FUNCTION)
    try:
        data = fn()
    except Exception as exc:  # noqa: BLE001 - the user's function failed: one line
        first = (str(exc).strip().splitlines() or [""])[0]
        raise UserError(f"{origin} failed: {type(exc).__name__}: {first}") from None
    if not isinstance(data, dict) or "calibration" not in data:
        raise UserError(f"{origin} must return a dict with a 'calibration' array (and optionally 'held_out' and "
                        f"'classes'), got {type(data).__name__}")

    def array(key: str) -> "np.ndarray":
        try:
            a = np.asarray(data[key])
        except Exception as exc:  # noqa: BLE001 - anything that is no array
            raise UserError(f"{origin}['{key}'] is not an array: {type(exc).__name__}: {exc}") from None
        if a.ndim < 1 or a.shape[0] < 1 or a.dtype.kind not in "fiub" or not np.isfinite(a.astype(float)).all():
            raise UserError(f"{origin}['{key}'] must be a non-empty array of finite numbers, one input per row "
                            f"(got shape {a.shape}, dtype {a.dtype})")
        return np.ascontiguousarray(a, dtype=np.float32)

    calibration = array("calibration")
    held_out = array("held_out") if data.get("held_out") is not None else None
    if held_out is not None and held_out.shape[1:] != calibration.shape[1:]:
        raise UserError(f"{origin}: 'held_out' rows are {held_out.shape[1:]}, 'calibration' rows "
                        f"{calibration.shape[1:]}; both must be the model's input without its batch dimension")
    classes = data.get("classes")
    if classes is not None:
        if isinstance(classes, (str, bytes)) or not hasattr(classes, "__len__") or len(classes) < 2:
            raise UserError(f"{origin}['classes'] must list the class names in output order (at least two)")
        classes = tuple(str(c) for c in classes)
    h = hashlib.sha256()
    for a in (calibration, held_out):
        h.update(b"none" if a is None else repr(a.shape).encode() + a.tobytes())
    h.update(repr(classes).encode())
    return ModelData(origin, calibration, held_out, classes, h.hexdigest()[:16])


@dataclass(frozen=True)
class Calibration:
    """The calibration of one spec's int8 parts: where the inputs come from and which rows."""

    source: str  # MODEL_DATA or SEEDED_RANDOM
    samples: int  # inputs actually used
    seed: int
    data: ModelData | None = None
    rows: tuple[int, ...] = ()  # the rows of data.calibration used (model data)

    @property
    def classifier(self) -> bool:
        """The model module named its classes (see the module's docstring)."""
        return self.data is not None and self.data.classes is not None

    def identity(self) -> dict[str, Any]:
        """What the cache key holds of it."""
        return {"source": self.source, "samples": self.samples, "seed": self.seed,
                "data": None if self.data is None else [self.data.origin, self.data.sha256]}

    def describe(self) -> str:
        if self.data is not None:
            return (f"{MODEL_DATA}: {self.samples} of the {self.data.calibration.shape[0]} 'calibration' rows of "
                    f"{self.data.origin}, drawn with seed {self.seed}")
        return f"{SEEDED_RANDOM}: {self.samples} standard normal inputs, seed {self.seed}"

    def to_dict(self) -> dict[str, Any]:
        d = {**self.identity(), "description": self.describe()}
        d["data"] = None if self.data is None else {"origin": self.data.origin, "sha256": self.data.sha256,
                                                    "classes": list(self.data.classes or ()) or None}
        return d

    def check_shape(self, example: "torch.Tensor") -> None:
        """The data's rows must be the model's input without its batch dimension: one line otherwise."""
        if self.data is not None and tuple(self.data.calibration.shape[1:]) != tuple(example.shape[1:]):
            raise UserError(f"{self.data.origin}: 'calibration' rows are {tuple(self.data.calibration.shape[1:])}, "
                            f"the model's input is {tuple(example.shape)}: each row must be one input without "
                            "its batch dimension")

    def inputs(self, example: "torch.Tensor") -> list["torch.Tensor"]:
        """The calibration inputs, batch 1 each, in the example's dtype."""
        import torch

        if self.data is not None:
            batch = torch.from_numpy(self.data.calibration[list(self.rows)]).to(example.dtype)
        else:
            batch = calibration_batch(example, self.samples, self.seed)
        return [batch[i:i + 1].contiguous() for i in range(batch.shape[0])]

    def verify_input(self) -> tuple["np.ndarray", str] | None:
        """An input from the calibration's own distribution, and which one; None for seeded random calibration
        (the float32 verification input, a seeded standard normal tensor, is in its distribution)."""
        if self.data is None:
            return None
        if self.data.held_out is not None:
            return self.data.held_out[:1].copy(), f"row 0 of 'held_out' of {self.data.origin}"
        unused = sorted(set(range(self.data.calibration.shape[0])) - set(self.rows))
        row = unused[0] if unused else self.rows[0]
        where = "not in the calibration set" if unused else "IN the calibration set (the data has no other row)"
        return self.data.calibration[row:row + 1].copy(), f"row {row} of 'calibration' of {self.data.origin}, {where}"

    def held_out(self) -> "np.ndarray | None":
        """The held-out inputs the top-1 agreement is measured on (the first TOP1_HELD_OUT_MAX)."""
        if self.data is None or self.data.held_out is None:
            return None
        return self.data.held_out[:TOP1_HELD_OUT_MAX]


def calibration_for(spec: Spec) -> Calibration:
    """The spec's calibration: its model module's data when it offers some, else seeded random inputs."""
    import numpy as np

    samples, seed = spec.export.calibration_samples, spec.export.calibration_seed
    data = model_data(spec)
    if data is None:
        return Calibration(SEEDED_RANDOM, samples, seed)
    n = data.calibration.shape[0]
    rows = np.sort(np.random.default_rng(seed).choice(n, size=min(samples, n), replace=False))
    return Calibration(MODEL_DATA, len(rows), seed, data, tuple(int(r) for r in rows))
