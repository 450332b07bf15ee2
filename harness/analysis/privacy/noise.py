"""The noise of DPFE's Procedure 2: Gaussian noise with covariance ``r x Cov(features)``.

After training, the covariance ``C`` of the uploaded feature is estimated on the training
features; for each ratio ``r`` the feature becomes ``f + n`` with ``n ~ N(0, r C)``, and both the
primary accuracy and the privacy are measured on the noisy features (one point of the
accuracy-privacy curve per ratio). For a reduced embedding the noise is added after the PCA
projection, to the k numbers actually uploaded.

Sampling: with the centred training features ``Xc`` (n x d) and their economy SVD
``Xc = U S V^T``, ``C = Xc^T Xc / (n - 1) = (S V^T)^T (S V^T) / (n - 1)``, so ``z @ S V^T / sqrt(n - 1)``
with ``z ~ N(0, I)`` of width ``min(n, d)`` is an exact draw from ``N(0, C)``. No d x d matrix is ever
formed (a VGG-16 conv5 feature has d = 100,352), a singular covariance (dead ReLU channels, more
dimensions than samples) needs no jitter, and noise never enters a direction the features never
vary in (round-off singular values are dropped, constant dimensions get exactly none). One
standard normal draw ``Z`` per feature set is scaled by ``sqrt(r)`` for every ratio (common random
numbers): the curves then move with ``r`` alone, not with a new draw at each point.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

from harness.core.errors import UserError

#: The ratios of DPFE's Procedure 2 (aliosia/DPFE ``PrivacyAnalyzer.scales``).
PAPER_RATIOS: tuple[float, ...] = (0.0, 0.01, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5, 4.0, 6.0, 8.0)
_SV_RTOL = 1e-9  # singular values; 1e-9 of the largest is 1e-18 in variance, as before


def check_ratios(ratios: Iterable[float]) -> tuple[float, ...]:
    """The ratios as floats, refusing negative, non-finite or empty lists."""
    out = tuple(float(r) for r in ratios)
    if not out:
        raise UserError("ratios: give at least one noise ratio (0 means no noise)")
    bad = [r for r in out if not (np.isfinite(r) and r >= 0)]
    if bad:
        raise UserError(f"ratios: a noise ratio must be a finite number >= 0, got {bad[0]!r}")
    return out


@dataclass(frozen=True)
class FeatureNoise:
    """Gaussian noise shaped like the features' covariance: ``sample(Z, r) = sqrt(r) Z S`` with ``S^T S = C``."""

    scale: np.ndarray  # (r, d) with r = min(n, d): S V^T / sqrt(n - 1), so z @ scale ~ N(0, C)

    @classmethod
    def fit(cls, train_features: np.ndarray) -> "FeatureNoise":
        """Estimate ``C`` on the (N, ...) training features (flattened) and factor it once."""
        x = np.asarray(train_features, dtype=np.float64).reshape(len(train_features), -1)
        if x.shape[0] < 2:
            raise UserError("noise: the covariance needs at least 2 training features")
        xc = x - x.mean(axis=0)
        _, sv, vt = np.linalg.svd(xc, full_matrices=False)
        keep = sv > _SV_RTOL * max(float(sv.max()), 0.0)  # round-off directions carry no variance
        scale = (sv[keep, None] * vt[keep]) / np.sqrt(x.shape[0] - 1)
        # Dimensions that never vary (dead ReLU channels) get exactly no noise: singular vectors leak
        # ~1e-9 into them otherwise, which standardisation would blow up into unit-variance noise.
        scale[:, ~xc.any(axis=0)] = 0.0
        return cls(scale=scale)

    @property
    def dim(self) -> int:
        """The features' dimension d."""
        return self.scale.shape[1]

    def standard_draw(self, n: int, seed: Any) -> np.ndarray:
        """The (n, r) standard normal draw shared by every ratio (``seed``: anything numpy seeds with)."""
        return np.random.default_rng(seed).standard_normal((n, self.scale.shape[0]))

    def noise(self, z: np.ndarray, ratio: float) -> np.ndarray:
        """The noise for a standard draw ``z`` at ``ratio``: covariance ``ratio x C``."""
        if ratio == 0:
            return np.zeros_like(z)
        return np.sqrt(ratio) * (z @ self.scale)

    def add(self, features: np.ndarray, z: np.ndarray, ratio: float) -> np.ndarray:
        """``features + noise`` in the features' own shape and dtype; ratio 0 returns an exact copy."""
        flat = np.asarray(features).reshape(len(features), -1)
        if flat.shape[1] != self.dim:
            raise UserError(f"noise: features of dimension {flat.shape[1]}, covariance of {self.dim}")
        if ratio == 0:
            return np.array(features, copy=True)
        noisy = flat.astype(np.float64) + self.noise(z, ratio)
        return noisy.astype(np.asarray(features).dtype, copy=False).reshape(np.shape(features))
