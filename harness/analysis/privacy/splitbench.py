"""The ``splitbench`` estimator (the default): rank, log-rank and attacker scores that work in d = 512.

The attacker of the papers knows labelled training features and ranks the K sensitive classes of a
new feature ``z`` by a posterior estimated with one kernel density per class (Osia et al., "rank
privacy"; DPFE, Def. 10 "log-rank privacy"). With ``f_j`` the (standardised) training features of
class ``s``, ``n_s`` their number and ``N`` the training-set size::

    P(z | s)  = 1/n_s * sum_{j in s} N(z; f_j, h^2 I)          (Gaussian kernel density)
    P(s | z) ∝ P(z | s) * n_s / N                               (Bayes, class priors n_s / N)
    rank_i    = position of the true class s_i when P(. | z_i) is sorted descending (1 = first)

    rank_privacy      = 1/N_test * sum_i rank_i / K              (Osia; 1/K when always found first)
    log_rank_privacy  = 1/(N_test log K) * sum_i log rank_i      (DPFE; 0 when always found first)
    bayes_error       = share of test features whose true class is not ranked first

Everything is computed in log space: ``log P(z|s) = logsumexp_j(-||z - f_j||^2 / 2h^2) - log n_s
- d/2 log(2 pi h^2)``, so nothing underflows in d = 512 even when the features are far apart. The
squared distances use ``||z||^2 - 2 z.f + ||f||^2`` in float64, chunked over the test rows.

It is a documented variant of the papers' estimators (:mod:`harness.analysis.privacy.dpfe` is the DPFE
public code's computation, :mod:`harness.analysis.privacy.osia` Osia et al.'s). Its decisions, each one
documented where it is made, and why:

* Features are standardised per dimension with the training mean and std (constant dimensions
  keep scale 1) before the density, the 1-NN and the attackers, so no dimension dominates by its
  units alone. This is the diagonal analogue of scipy's ``gaussian_kde`` (which whitens with the
  full class covariance, as the DPFE code does); the full covariance is singular for a class of 50
  features in d = 512, where ``gaussian_kde`` cannot run at all.
* One bandwidth ``h`` shared by every class, so the kernel normalisation cancels in the posterior
  and classes are ranked by their kernel sums alone (one covariance per class needs more features
  per class than dimensions). Default Scott's rule as scipy uses it:
  ``h = sigma_w * n^(-1/(d+4))`` with ``sigma_w`` the pooled within-class standard deviation
  (root mean over dimensions of the within-class variance) and ``n`` the mean class size;
  ``"silverman"`` uses ``(n (d+2) / 4)^(-1/(d+4))``; a float is taken as ``h`` itself.
* Ties are broken uniformly at random, in expectation: a true class tied with ``e - 1`` others
  after ``g`` strictly better classes has every rank in ``g+1 .. g+e`` with probability ``1/e``.
  Scores use the exact expectation over that choice (e.g. ``E[log rank] = mean(log(g+1..g+e))``),
  so features carrying nothing (all posteriors equal) give exactly the uniform-guessing values:
  log-rank privacy ``mean(log 1..K) / log K`` and Bayes error ``1 - 1/K``. The DPFE public code
  uses average ranks (``rankdata``), which agrees on the mean rank but not on the log-rank, and
  counts a tie for first as not first.
* Classes are ranked by their posterior (Bayes with priors ``n_s / N``, as Osia et al. write it);
  the DPFE code ranks the class densities ``P(z | s)`` without the prior. Equal for balanced classes.
* ``rank_mean`` and ``rank_std`` are the mean and standard deviation of ``(rank - 1) / (K - 1)``,
  which is 0 when the true class is always first and 1 when always last; under uniform guessing
  its mean is exactly 0.5 and its std ``sqrt((K+1) / (12 (K-1)))`` (0.289 for large K, 0.319 at
  K = 10), the "0.5 and 0.28" of DPFE's Fig. 9. The std includes the tie-breaking randomness.
  ``log_rank_std`` is the standard deviation of ``log rank / log K``. The unnormalised
  ``mean_rank``, ``std_rank``, ``mean_log_rank``, ``std_log_rank`` are the same expectations.

Besides the density attacker, two trained attackers: the 1-NN misclassification rate of the
sensitive label (DPFE's second measure, here on the standardised features) and the test accuracy
of a multinomial logistic regression fitted on the training features (FaceMix's "attack success
rate"). Higher ``attacker_accuracy`` means less privacy; chance level is about ``1/K``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.core.errors import UserError
from harness.analysis.privacy.scores import PrivacyScores, rank_columns, sq_distances, validate

NAME = "splitbench"
BANDWIDTH_RULES = ("scott", "silverman")
_TIE_RTOL = 1e-9  # log-posteriors this close (relative) are one tie: float noise must not order them
_ATTACKER_MAX_ITER = 300


# --------------------------------------------------------------------------------------------------
# The density attacker


def standardize(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Centre and scale every array with the training mean and std per dimension (constant dims: 1)."""
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    # (Near-)constant dimensions keep scale 1: dividing round-off by round-off would make noise.
    std[std <= 1e-8 * max(float(std.max()), 1e-300)] = 1.0
    return [(a - mean) / std for a in (train, *others)]


def bandwidth_for(train: np.ndarray, labels: np.ndarray, rule: str | float = "scott") -> float:
    """The shared kernel bandwidth ``h`` (see the module docstring for the rules)."""
    if not isinstance(rule, str):
        h = float(rule)
        if not (h > 0 and math.isfinite(h)):
            raise UserError(f"bandwidth: must be a positive number or one of {BANDWIDTH_RULES}, got {rule!r}")
        return h
    if rule not in BANDWIDTH_RULES:
        raise UserError(f"bandwidth: unknown rule {rule!r}; use one of {', '.join(BANDWIDTH_RULES)} or a number")
    n, d = train.shape
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    k = classes.size
    means = np.zeros((k, d))
    np.add.at(means, inverse, train)
    means /= counts[:, None]
    ss = float(((train - means[inverse]) ** 2).sum())
    sigma_w = math.sqrt(ss / (max(n - k, 1) * d))
    if sigma_w <= 1e-12:  # every class a single point: fall back to the overall spread
        sigma_w = float(train.std()) or 1.0
    n_mean = n / k
    factor = n_mean ** (-1.0 / (d + 4)) if rule == "scott" else (n_mean * (d + 2) / 4.0) ** (-1.0 / (d + 4))
    return sigma_w * factor


def log_posterior(train: np.ndarray, labels: np.ndarray, test: np.ndarray, h: float, *,
                  chunk_rows: int = 512) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``log P(s | z)`` for every test row and class, and the 1-NN label, from the same distances.

    Returns ``(classes, log_post, nn1_label)`` where ``log_post`` has shape (n_test, K) and rows
    that logsumexp to 0. The features are used as given (standardise them first).
    """
    from scipy.special import logsumexp

    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    order = np.argsort(inverse, kind="stable")  # group the training columns by class
    train_sorted = np.ascontiguousarray(train[order])
    bounds = np.concatenate([[0], np.cumsum(counts)])
    b_sq = (train_sorted * train_sorted).sum(axis=1)
    n_test, d = test.shape
    # log P(z|s) + log P(s) = logsumexp_j(-D/2h^2) - log n_s - d/2 log(2 pi h^2) + log(n_s / N):
    # the class sizes cancel; the constant is kept so log_post is a true log posterior after norming.
    const = -0.5 * d * math.log(2 * math.pi * h * h) - math.log(train.shape[0])
    log_joint = np.empty((n_test, classes.size))
    nn1 = np.empty(n_test, dtype=np.int64)
    for start in range(0, n_test, chunk_rows):
        rows = slice(start, min(start + chunk_rows, n_test))
        dist = sq_distances(test[rows], train_sorted, b_sq)
        nn1[rows] = np.argmin(dist, axis=1)
        dist *= -0.5 / (h * h)
        for c in range(classes.size):
            log_joint[rows, c] = logsumexp(dist[:, bounds[c]:bounds[c + 1]], axis=1)
    log_joint += const
    log_post = log_joint - logsumexp(log_joint, axis=1, keepdims=True)
    sorted_labels = inverse[order]
    return classes, log_post, classes[sorted_labels[nn1]]


@dataclass(frozen=True)
class RankStats:
    """Per-sample expectations over random tie-breaking (see the module docstring)."""

    rank: np.ndarray  # E[rank]
    rank_sq: np.ndarray  # E[rank^2]
    log_rank: np.ndarray  # E[log rank]
    log_rank_sq: np.ndarray  # E[(log rank)^2]
    p_first: np.ndarray  # P(rank == 1)


def true_class_ranks(scores: np.ndarray, true_index: np.ndarray) -> RankStats:
    """Ranks (1 = most likely) of ``scores[i, true_index[i]]`` within each row, ties broken at random.

    ``scores`` are log-posteriors (any monotone score works); values within a relative 1e-9 of the
    true class's are a tie. Returns the exact per-row expectations over the random tie-break.
    """
    n, k = scores.shape
    own = scores[np.arange(n), true_index][:, None]
    tol = _TIE_RTOL * np.maximum(1.0, np.abs(own))
    greater = (scores > own + tol).sum(axis=1)  # g: classes strictly ahead
    tied = (np.abs(scores - own) <= tol).sum(axis=1)  # e >= 1: the true class and its ties
    r = np.arange(0, k + 1, dtype=np.float64)
    logs = np.log(np.maximum(r, 1.0))
    prefix = {name: np.concatenate([[0.0], np.cumsum(v[1:])]) for name, v in
              (("r", r), ("r2", r * r), ("l", logs), ("l2", logs * logs))}

    def block_mean(name: str) -> np.ndarray:  # mean over ranks g+1 .. g+e
        p = prefix[name]
        return (p[greater + tied] - p[greater]) / tied

    return RankStats(rank=block_mean("r"), rank_sq=block_mean("r2"), log_rank=block_mean("l"),
                     log_rank_sq=block_mean("l2"), p_first=np.where(greater == 0, 1.0 / tied, 0.0))


def rank_scores(stats: RankStats, k: int) -> dict[str, float]:
    """The rank, log-rank and Bayes-error scores of :class:`RankStats` for K classes."""
    mean_r = float(stats.rank.mean())
    var_r = max(float(stats.rank_sq.mean()) - mean_r ** 2, 0.0)
    mean_l = float(stats.log_rank.mean())
    var_l = max(float(stats.log_rank_sq.mean()) - mean_l ** 2, 0.0)
    return rank_columns(k, mean_r, math.sqrt(var_r), mean_l, math.sqrt(var_l), float(stats.p_first.mean()))


# --------------------------------------------------------------------------------------------------
# Trained attackers


def _classifier_accuracy(xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, yte: np.ndarray, seed: int,
                         what: str, notes: list[str]) -> float:
    """Test accuracy of a multinomial logistic regression (L2, C = 1) fitted on the train rows."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=1.0, max_iter=_ATTACKER_MAX_ITER, random_state=seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        clf.fit(xtr, ytr)
    if any(issubclass(w.category, ConvergenceWarning) for w in caught):
        notes.append(f"{what} classifier stopped at {_ATTACKER_MAX_ITER} iterations before converging; "
                     "its accuracy may be a little low")
    return float((clf.predict(xte) == yte).mean())


# --------------------------------------------------------------------------------------------------
# Public entry points


def score(train_features: Any, train_sensitive: Any, test_features: Any, test_sensitive: Any, *,
          train_primary: Any = None, test_primary: Any = None, seed: int = 0,
          bandwidth: str | float = "scott", standardized: bool = True, attacker: bool = True,
          split: str = "given") -> PrivacyScores:
    """The ``splitbench`` estimator: the privacy of ``test_features`` about ``test_sensitive`` against an
    attacker trained on the train set.

    Parameters
    ----------
    train_features, test_features : array (N, ...)
        Features as uploaded (flattened to (N, d)). The attacker knows the training ones with
        their labels.
    train_sensitive, test_sensitive : array (N,)
        The sensitive labels (any hashable dtype). Every test class must occur in the train set.
    train_primary, test_primary : array (N,), optional
        Primary-task labels: ``primary_accuracy`` is then the test accuracy of the same kind of
        classifier on them (a proxy; the noise sweep runs the real rest of the network instead).
    seed : int
        Seed of the trained attacker. The scores are deterministic for a seed.
    bandwidth : "scott", "silverman" or float
        The kernel bandwidth rule, or ``h`` itself in the standardised space.
    standardized : bool
        Standardise every dimension with the training mean and std first (default True).
    attacker : bool
        Fit the logistic-regression attacker (the slowest part); ``attacker_accuracy`` is None
        when False.
    split : str
        How the pair was made (recorded in the result; see :data:`harness.analysis.privacy.SPLITS`).

    Returns
    -------
    PrivacyScores

    Raises
    ------
    UserError
        Mismatched lengths or dimensions, NaN or inf, fewer than 2 sensitive classes, or test
        classes absent from the train set; the message names the offending array.
    """
    xtr, ytr, xte, yte, ptr, pte, classes = validate(train_features, train_sensitive, test_features,
                                                     test_sensitive, train_primary, test_primary)
    if standardized:
        xtr, xte = standardize(xtr, xte)
    notes: list[str] = []
    counts = np.unique(ytr, return_counts=True)[1]
    if counts.min() < 2:
        notes.append(f"{int((counts < 2).sum())} sensitive class(es) have a single training feature; "
                     "their density is one kernel: give more training features per class")
    h = bandwidth_for(xtr, ytr, bandwidth)
    classes, log_post, nn1_label = log_posterior(xtr, ytr, xte, h)
    true_index = np.searchsorted(classes, yte)
    scores = rank_scores(true_class_ranks(log_post, true_index), classes.size)
    attacker_acc = _classifier_accuracy(xtr, ytr, xte, yte, seed, "attacker", notes) if attacker else None
    primary_acc = None
    if ptr is not None:
        primary_acc = _classifier_accuracy(xtr, ptr, xte, pte, seed, "primary", notes)
    return PrivacyScores(
        estimator=NAME, n_classes=int(classes.size), **scores, nn1_error=float((nn1_label != yte).mean()),
        attacker_accuracy=attacker_acc, primary_accuracy=primary_acc, n_train=int(xtr.shape[0]),
        n_test=int(xte.shape[0]), dim=int(xtr.shape[1]), bandwidth=float(h), split=split, warnings=tuple(notes))
