"""The ``osia`` estimator: Osia et al.'s rank privacy of noisy features, as their papers define it.

Read from Osia et al., hybrid privacy-preserving deep inference (``seeds/000_*`` Sec. 4.1, Eq. 2-7;
``seeds/001_*`` Sec. IV-C) and their public code, aliosia/DeepPrivInf2017,
``privacy_codes/siamese_privacy.py`` (``pirvacy_ek``, lines 95-115, called by ``test_network_pca``,
lines 203-238). Every feature ``f_i`` of one data set is uploaded with noise, ``z_i = f_i + n_i``, and::

    P(z_i | s)  = 1/N_s * sum_{f_j of class s} P(z_i | f_j)     (Eq. 4: P(z | f) is the noise density)
    P(s | z_i) ∝ P(z_i | s) * P(s)                              (Eq. 5, P(s) = N_s / N)
    rank_i      = 1 + number of classes with a higher posterior than the true class s_i
    privacy     = 1/N * sum_i rank_i / K                        (Eq. 6-7: ``rank_privacy``)

How that differs from DPFE's log-rank estimator (:mod:`harness.analysis.privacy.dpfe`):

* The kernel is the noise channel itself (the attacker knows how the phone adds noise); nothing is
  fitted, no bandwidth is chosen. The measure only exists for noisy features: at zero noise this
  module takes its limit (the class of the nearest clean feature, i.e. the feature's own).
* One set, no train/test split: each noisy feature is ranked against the clean features of the same
  set, its own clean feature among them.
* The papers' score is the rank divided by K (``rank_privacy``), not the log-rank; the other rank
  columns are the same formulas of the same ranks (see :mod:`harness.analysis.privacy.scores`).
* A tie is counted in the true class's favour (strictly higher classes only, the papers' wording);
  DPFE averages tied ranks.

The authors' code differs from their text: ``pirvacy_ek`` treats every record as its own class
(K = N: "which record did this noisy feature come from?"), evaluates ``multivariate_normal.pdf``
with the isotropic ``noise_var * I`` it added, averages tied ranks (``mstats.rankdata``) and divides
by N. That variant is this estimator with ``sensitive = np.arange(N)``, except for ties, which only
its underflowing densities create (everything here is computed in log space).

The papers add isotropic ("symmetric") Gaussian noise, ``noise_var * I``: :func:`score` with
``noise_var``. The noise sweep adds DPFE's ``r * Cov``: :func:`score` with ``noise`` and ``ratio``,
where the kernel is that (possibly singular) Gaussian, and a feature whose difference to a clean
feature leaves the noise's span has density 0 there (such a record is identified exactly).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.core.errors import UserError
from harness.analysis.privacy.scores import PrivacyScores, as_features, as_labels, rank_columns_of, sq_distances

if TYPE_CHECKING:  # pragma: no cover
    from harness.analysis.privacy.noise import FeatureNoise

NAME = "osia"
_TIE_RTOL = 1e-9  # log-posteriors this close (relative) are one tie
_SPAN_RTOL = 1e-10  # squared distance outside the noise's span, relative to the features' squared norm


def add_isotropic_noise(features: Any, noise_var: float, seed: Any = 0) -> np.ndarray:
    """``features + N(0, noise_var * I)`` (the papers' noise), flattened to (N, d) float64, seeded."""
    f = as_features(features, "features")
    _check_var(noise_var, "noise_var")
    if noise_var == 0:
        return f.copy()
    return f + math.sqrt(noise_var) * np.random.default_rng(seed).standard_normal(f.shape)


def _check_var(value: float, name: str) -> float:
    if value is None or not (math.isfinite(value) and value >= 0):
        raise UserError(f"{name}: the osia estimator needs a noise variance >= 0, got {value!r}")
    return float(value)


def class_scores(clean: np.ndarray, labels: np.ndarray, noisy: np.ndarray, variance: float, *,
                 outside: tuple[np.ndarray, np.ndarray, float] | None = None,
                 chunk_rows: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """``(classes, s)`` with ``s[i, c]`` the log posterior of class c for noisy row i, up to a constant per row.

    ``clean`` and ``noisy`` are in coordinates where the noise is ``N(0, variance * I)``. With
    ``outside = (clean_perp, noisy_perp, tol)``, the components outside the noise's span: a pair
    whose components differ there (squared distance above ``tol``) has density 0. At
    ``variance == 0`` the limit is returned instead: ``-min`` squared distance to the class's clean
    features (a monotone score, not a posterior).
    """
    from scipy.special import logsumexp

    classes, inverse = np.unique(labels, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(inverse, minlength=classes.size))])
    ref = clean[order]
    ref_sq = (ref * ref).sum(axis=1)
    ref_perp = outside[0][order] if outside is not None else None
    ref_perp_sq = (ref_perp * ref_perp).sum(axis=1) if outside is not None else None
    n = noisy.shape[0]
    # log P(z|s) + log P(s) = logsumexp_j(-D_ij / 2 var) - log N_s + const + log(N_s / N): the class
    # sizes cancel, the constant is the same for every class and is left out (ranks need no norming).
    out = np.empty((n, classes.size))
    for start in range(0, n, chunk_rows):
        rows = slice(start, min(start + chunk_rows, n))
        dist = sq_distances(noisy[rows], ref, ref_sq)
        if outside is not None:
            dist[sq_distances(outside[1][rows], ref_perp, ref_perp_sq) > outside[2]] = np.inf
        with np.errstate(divide="ignore", invalid="ignore"):
            for c in range(classes.size):
                block = dist[:, bounds[c]:bounds[c + 1]]
                out[rows, c] = (-block.min(axis=1) if variance == 0
                                else logsumexp(-block / (2.0 * variance), axis=1))
    return classes, out


def true_class_ranks(scores: np.ndarray, true_index: np.ndarray) -> np.ndarray:
    """1 + the number of classes scored strictly higher than the true one (ties within 1e-9 relative)."""
    n = scores.shape[0]
    own = scores[np.arange(n), true_index][:, None]
    tol = np.where(np.isfinite(own), _TIE_RTOL * np.maximum(1.0, np.abs(own)), 0.0)
    return 1 + (scores > own + tol).sum(axis=1)


def score(features: Any, sensitive: Any, noisy_features: Any, *, noise_var: float | None = None,
          noise: "FeatureNoise | None" = None, ratio: float | None = None) -> PrivacyScores:
    """Osia et al.'s rank privacy of ``noisy_features`` (the noisy uploads of ``features``, row by row).

    Give the noise that made them: ``noise_var`` (isotropic ``noise_var * I``, the papers'), or
    ``noise`` and ``ratio`` (the sweep's ``ratio * C`` with ``C`` factored by
    :class:`harness.analysis.privacy.noise.FeatureNoise`). ``n_train`` and ``n_test`` are both the set's size (no
    split); no 1-NN, trained attacker or primary accuracy (None): the papers' measure has none.
    """
    f = as_features(features, "features")
    z = as_features(noisy_features, "noisy_features")
    if z.shape != f.shape:
        raise UserError(f"noisy_features: shape {z.shape} differs from features' {f.shape} (one noisy row per feature)")
    y = as_labels(sensitive, "sensitive", f.shape[0], "features")
    classes = np.unique(y)
    if classes.size < 2:
        raise UserError(f"sensitive: needs at least 2 classes, found {classes.size}")
    if (noise_var is None) == (noise is None):
        raise UserError("osia: give the noise that was added, as noise_var (isotropic) or as noise and ratio")
    notes: list[str] = []
    outside = None
    rank_c = f.shape[1]
    if noise_var is not None:
        variance = _check_var(noise_var, "noise_var")
        fw, zw = f, z
    else:
        variance = _check_var(ratio, "ratio")
        if noise.dim != f.shape[1]:
            raise UserError(f"noise: covariance of dimension {noise.dim}, features of {f.shape[1]}")
        # Whiten with the pseudo-inverse of the noise factor: the noise is N(0, ratio * I) in its span.
        white = np.linalg.pinv(noise.scale)  # (d, m)
        fw, zw = f @ white, z @ white
        rank_c = int(np.linalg.matrix_rank(noise.scale))
        if rank_c < f.shape[1]:
            # Round-off leaves ~1e-16 |f| outside the span; a real difference there is far above 1e-10 |f|^2.
            tol = _SPAN_RTOL * max(float((f * f).sum(axis=1).max()), float((z * z).sum(axis=1).max()), 1e-300)
            outside = (f - fw @ noise.scale, z - zw @ noise.scale, tol)
    if variance == 0:
        notes.append("no noise: the osia kernel is the noise density, so the rank is its zero-noise limit (the "
                     "class of the nearest clean feature, the feature's own): privacy 1/K unless features repeat")
    classes, scores = class_scores(fw, y, zw, variance, outside=outside)
    ranks = true_class_ranks(scores, np.searchsorted(classes, y)).astype(np.float64)
    if outside is not None and variance > 0:
        found = int((ranks == 1).sum())
        notes.append(f"the noise covariance is singular (rank {rank_c} < d = "
                     f"{f.shape[1]}): differences of features outside its span have density 0, which identifies "
                     f"records exactly ({found} of {ranks.size} ranked first)")
    columns = rank_columns_of(int(classes.size), ranks)
    return PrivacyScores(
        estimator=NAME, n_classes=int(classes.size), **columns, nn1_error=None, attacker_accuracy=None,
        primary_accuracy=None, n_train=int(f.shape[0]), n_test=int(f.shape[0]), dim=int(f.shape[1]), bandwidth=None,
        split="none", warnings=tuple(notes))
