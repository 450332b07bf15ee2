"""The ``privacy-score`` command: score the features of an ``.npz`` with a named estimator.

Two layouts. A train/test pair (``train_features``, ``train_sensitive``, ``test_features``,
``test_sensitive``, optionally ``train_primary`` and ``test_primary``), scored as given. Or one
feature set (``features``, ``sensitive``, optionally ``primary``): split as the DPFE code splits it
(``split="dpfe"``), or, for the ``osia`` estimator, scored against itself after seeded isotropic
noise of variance ``noise_var`` (Osia et al.'s measure needs the noise it is about).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from harness.core.errors import UserError
from harness.analysis.privacy.scores import DEFAULT_ESTIMATOR, as_labels, check_estimator

FILE_KEYS = ("train_features", "train_sensitive", "test_features", "test_sensitive")
OPTIONAL_FILE_KEYS = ("train_primary", "test_primary")
SET_KEYS = ("features", "sensitive")
OPTIONAL_SET_KEYS = ("primary",)
FILE_SPLITS = ("given", "dpfe")  # what `privacy-score --split` accepts


def open_npz(path: Path, keys: Iterable[str]) -> Any:
    """Open an .npz for reading (no pickles); a missing or unreadable file is one UserError line."""
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        npz = np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise UserError(f"{path}: not a readable .npz ({type(exc).__name__}: {exc})") from None
    if not hasattr(npz, "files"):
        raise UserError(f"{path}: a single array, not an .npz with keys {', '.join(keys)}")
    return npz


def _layout(path: Path, files: list[str], estimator: str, split: str) -> tuple[str, ...]:
    """The keys the estimator and split need from this file; one UserError line when it has others."""
    has = ", ".join(files) or "none"
    pair = all(k in files for k in FILE_KEYS)
    one = all(k in files for k in SET_KEYS)
    if estimator == "osia":
        if split != "given":
            raise UserError("--split does not apply to the osia estimator: it scores one feature set against itself")
        if not one:
            raise UserError(f"{path}: the osia estimator scores one feature set and needs keys "
                            f"{', '.join(SET_KEYS)} (it has {has})")
        return (*SET_KEYS, *OPTIONAL_SET_KEYS)
    if split == "dpfe":
        if not one:
            hint = "; it holds a train/test pair already: drop --split" if pair else ""
            raise UserError(f"{path}: --split dpfe splits one feature set and needs keys {', '.join(SET_KEYS)} "
                            f"(it has {has}){hint}")
        return (*SET_KEYS, *OPTIONAL_SET_KEYS)
    if not pair and one:
        raise UserError(f"{path}: holds one feature set ({', '.join(SET_KEYS)}), not a train/test pair: give "
                        "--split dpfe to split it as the DPFE code does")
    missing = [k for k in FILE_KEYS if k not in files]
    if missing:
        raise UserError(f"{path}: missing key {missing[0]!r} (an .npz needs {', '.join(FILE_KEYS)}, or "
                        f"{', '.join(SET_KEYS)} with --split dpfe; it has {has})")
    return (*FILE_KEYS, *OPTIONAL_FILE_KEYS)


def score_file(path: str | Path, seed: int = 0, *, estimator: str = DEFAULT_ESTIMATOR, split: str = "given",
               noise_var: float | None = None) -> dict[str, Any]:
    """Score an ``.npz`` with one estimator (the ``privacy-score`` command): a flat dict of PrivacyScores.

    ``split``: ``"given"`` (the file's train/test pair) or ``"dpfe"`` (one set, split as the DPFE
    code does). ``noise_var``: the isotropic noise variance of the ``osia`` estimator (required
    there, refused elsewhere). Any problem is one :class:`UserError` line naming the file.
    """
    from harness.analysis.privacy import dpfe, osia
    from harness.analysis.privacy.estimators import score as score_pair

    path = Path(path)
    check_estimator(estimator)
    if split not in FILE_SPLITS:
        raise UserError(f"--split: unknown split {split!r}; use {' or '.join(FILE_SPLITS)}")
    if estimator == "osia" and noise_var is None:
        raise UserError("the osia estimator needs --noise-var: the variance of the isotropic Gaussian noise added to "
                        "the features (its kernel is that noise's density, as in Osia et al.)")
    if estimator != "osia" and noise_var is not None:
        raise UserError(f"--noise-var is for the osia estimator; the {estimator} estimator scores the features "
                        "as given")
    npz = open_npz(path, FILE_KEYS)
    with npz:
        keys = _layout(path, list(npz.files), estimator, split)
        try:
            arrays = {k: npz[k] for k in keys if k in npz.files}
        except ValueError as exc:  # object arrays need pickle, refused on purpose
            raise UserError(f"{path}: {exc}; save labels as numbers or fixed-width strings") from None
    try:
        if estimator == "osia":
            noisy = osia.add_isotropic_noise(arrays["features"], noise_var, seed)
            return osia.score(arrays["features"], arrays["sensitive"], noisy, noise_var=noise_var).to_dict()
        if split == "given":
            return score_pair(arrays["train_features"], arrays["train_sensitive"], arrays["test_features"],
                              arrays["test_sensitive"], train_primary=arrays.get("train_primary"),
                              test_primary=arrays.get("test_primary"), seed=seed, estimator=estimator).to_dict()
        x = np.asarray(arrays["features"])
        y = as_labels(arrays["sensitive"], "sensitive", x.shape[0], "features")
        train, test, notes = dpfe.split_indices(y)
        primary = arrays.get("primary")
        if primary is not None:
            primary = as_labels(primary, "primary", x.shape[0], "features")
        result = score_pair(x[train], y[train], x[test], y[test], seed=seed, estimator=estimator, split="dpfe",
                            train_primary=None if primary is None else primary[train],
                            test_primary=None if primary is None else primary[test])
        return dataclasses.replace(result, warnings=(*notes, *result.warnings)).to_dict()
    except UserError as exc:
        raise UserError(f"{path}: {exc}") from None
