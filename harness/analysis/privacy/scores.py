"""The record every privacy estimator returns, the estimator names, and the checks of their inputs.

Every estimator ranks the K sensitive classes of each scored feature (1 = most likely) and reports
the same columns, each the same formula of its ranks, so a column means one thing whatever the
estimator. The ``estimator`` field says which computation produced the ranks; numbers of different
estimators are never merged, compared or plotted as one series (see :mod:`harness.analysis.table`).

With ``rank_i`` the rank of the true class of scored feature ``i`` (``N_test`` of them)::

    mean_rank, std_rank           = mean and std (ddof 0) of rank_i          (1 .. K, unnormalised)
    mean_log_rank, std_log_rank   = mean and std (ddof 0) of log rank_i      (natural log, unnormalised)
    rank_privacy      = mean_rank / K                      (Osia et al.'s privacy, 1/K when always first)
    log_rank_privacy  = mean_log_rank / log K              (DPFE Def. 10, 0 when always first)
    log_rank_std      = std_log_rank / log K
    rank_mean         = (mean_rank - 1) / (K - 1)           (0 always first, 1 always last)
    rank_std          = std_rank / (K - 1)
    bayes_error       = share of features whose true class is not ranked 1 (the optimal-Bayes error
                        of the estimated posterior: DPFE's ``opt_bayes``)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from harness.core.errors import UserError

#: The estimators by name (see :mod:`harness.analysis.privacy`); the first is the default.
ESTIMATORS = ("splitbench", "dpfe", "osia")
DEFAULT_ESTIMATOR = "splitbench"
#: How the scored features were chosen: a train/test pair as given, DPFE's split, the sweep's
#: stratified split, or no split at all (Osia's measure scores a set against itself).
SPLITS = ("given", "dpfe", "stratified", "none")


def check_estimator(name: str) -> str:
    """``name`` if it is a known estimator, else one UserError line listing them."""
    if name not in ESTIMATORS:
        raise UserError(f"estimator: unknown estimator {name!r}; use one of {', '.join(ESTIMATORS)}")
    return name


@dataclass(frozen=True)
class PrivacyScores:
    """The privacy of one feature set against one sensitive label (see the module docstring).

    Privacy measures grow with privacy (``rank_privacy``, ``log_rank_privacy``, ``bayes_error``,
    ``rank_mean``, ``nn1_error``); ``attacker_accuracy`` falls with it. None means the estimator
    does not compute that number (never a guess). ``primary_accuracy`` is the accuracy of a
    classifier on the primary label when one is given. ``warnings`` holds what makes a number less
    trustworthy, with what to try.
    """

    estimator: str
    n_classes: int
    rank_privacy: float
    log_rank_privacy: float
    bayes_error: float
    rank_mean: float
    rank_std: float
    log_rank_std: float
    nn1_error: float | None
    attacker_accuracy: float | None
    primary_accuracy: float | None
    log_rank_privacy_uniform: float  # the value of log_rank_privacy under uniform guessing
    n_train: int
    n_test: int
    dim: int
    bandwidth: float | None  # the splitbench estimator's shared h (standardised space); None otherwise
    mean_rank: float
    std_rank: float
    mean_log_rank: float
    std_log_rank: float
    split: str = "given"
    warnings: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """A flat dict (warnings joined by ``"; "``) for the CLI, CSV rows and JSON."""
        d = asdict(self)
        d["warnings"] = "; ".join(self.warnings)
        return d


def rank_columns(k: int, mean_rank: float, std_rank: float, mean_log_rank: float, std_log_rank: float,
                 share_first: float) -> dict[str, float]:
    """Every rank column of :class:`PrivacyScores` from the raw rank statistics of K classes."""
    log_k = math.log(k)
    return {
        "rank_privacy": mean_rank / k,
        "log_rank_privacy": mean_log_rank / log_k,
        "bayes_error": 1.0 - share_first,
        "rank_mean": (mean_rank - 1.0) / (k - 1),
        "rank_std": std_rank / (k - 1),
        "log_rank_std": std_log_rank / log_k,
        "log_rank_privacy_uniform": math.lgamma(k + 1) / k / log_k,
        "mean_rank": mean_rank,
        "std_rank": std_rank,
        "mean_log_rank": mean_log_rank,
        "std_log_rank": std_log_rank,
    }


def rank_columns_of(k: int, ranks: np.ndarray) -> dict[str, float]:
    """:func:`rank_columns` of one rank per scored feature (numpy means, population stds, share equal to 1)."""
    log_ranks = np.log(ranks)
    return rank_columns(k, float(np.mean(ranks)), float(np.std(ranks)), float(np.mean(log_ranks)),
                        float(np.std(log_ranks)), float(np.mean(ranks == 1)))


# --------------------------------------------------------------------------------------------------
# Computation and validation shared by the estimators


def sq_distances(a: np.ndarray, b: np.ndarray, b_sq: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances of a's rows to b's (``b_sq``: b's squared row norms), clamped at 0."""
    d = (a * a).sum(axis=1)[:, None] - 2.0 * (a @ b.T) + b_sq[None, :]
    np.maximum(d, 0.0, out=d)
    return d



def as_features(x: Any, name: str, *, keep_float_dtype: bool = False) -> np.ndarray:
    """(N, ...) numbers as a finite (N, d) array: float64, or the given float dtype when asked."""
    a = np.asarray(x)
    if a.dtype == object or not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
        raise UserError(f"{name}: features must be numbers, got dtype {a.dtype}")
    if a.ndim < 2:
        raise UserError(f"{name}: features must be an array of shape (N, d), got shape {a.shape}")
    a = a.reshape(a.shape[0], -1)
    if not (keep_float_dtype and np.issubdtype(a.dtype, np.floating)):
        a = a.astype(np.float64)
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise UserError(f"{name}: empty feature array of shape {a.shape}")
    if not np.isfinite(a).all():
        raise UserError(f"{name}: contains NaN or inf ({int((~np.isfinite(a)).sum())} values)")
    return a


def as_labels(y: Any, name: str, n: int, features_name: str) -> np.ndarray:
    """One label per feature row, one-dimensional (a (N, 1, 1, 1) Caffe label blob is flattened)."""
    a = np.asarray(y)
    if a.ndim != 1:
        a = a.reshape(-1) if a.size == n else a
    if a.ndim != 1:
        raise UserError(f"{name}: labels must be one-dimensional, got shape {a.shape}")
    if a.shape[0] != n:
        raise UserError(f"{name}: has {a.shape[0]} labels but {features_name} has {n} rows")
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise UserError(f"{name}: contains NaN or inf")
    return a


def validate(train_features, train_sensitive, test_features, test_sensitive, train_primary=None,
             test_primary=None, *, keep_float_dtype: bool = False):
    """The checked arrays ``(xtr, ytr, xte, yte, ptr, pte, classes)`` of a train/test pair."""
    xtr = as_features(train_features, "train_features", keep_float_dtype=keep_float_dtype)
    xte = as_features(test_features, "test_features", keep_float_dtype=keep_float_dtype)
    if xtr.shape[1] != xte.shape[1]:
        raise UserError(f"test_features: dimension {xte.shape[1]} differs from train_features' {xtr.shape[1]}")
    ytr = as_labels(train_sensitive, "train_sensitive", xtr.shape[0], "train_features")
    yte = as_labels(test_sensitive, "test_sensitive", xte.shape[0], "test_features")
    classes = np.unique(ytr)
    if classes.size < 2:
        raise UserError(f"train_sensitive: needs at least 2 classes, found {classes.size}")
    unseen = np.setdiff1d(np.unique(yte), classes)
    if unseen.size:
        shown = ", ".join(map(str, unseen[:5])) + (" ..." if unseen.size > 5 else "")
        raise UserError(f"test_sensitive: {unseen.size} class(es) never seen in train_sensitive ({shown}); "
                        "the attacker cannot rank a class it has no training feature of: drop those rows")
    if (train_primary is None) != (test_primary is None):
        missing = "test_primary" if test_primary is None else "train_primary"
        raise UserError(f"{missing}: missing (primary labels need both train_primary and test_primary)")
    ptr = pte = None
    if train_primary is not None:
        ptr = as_labels(train_primary, "train_primary", xtr.shape[0], "train_features")
        pte = as_labels(test_primary, "test_primary", xte.shape[0], "test_features")
        if np.unique(ptr).size < 2:
            raise UserError("train_primary: needs at least 2 classes")
    return xtr, ytr, xte, yte, ptr, pte, classes
