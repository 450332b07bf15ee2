"""How much an uploaded feature gives away of a sensitive label, by a named estimator.

Every estimator ranks the sensitive classes of each scored feature under an attacker's estimated
posterior and reports the same columns (:mod:`harness.analysis.privacy.scores`), together with its name:

``splitbench`` (the default, :mod:`harness.analysis.privacy.splitbench`)
    One isotropic kernel bandwidth shared by all classes on features standardised per dimension,
    log-space sums, expected ranks under ties, 1-NN on the standardised features, plus a trained
    (logistic-regression) attacker. Chosen so that it runs where the papers' estimators cannot:
    d = 512 with 50 features per class (a class covariance is singular there) and features so far
    apart that densities underflow. Use it to compare configurations of your own network.
``dpfe`` (:mod:`harness.analysis.privacy.dpfe`)
    Exactly the DPFE authors' public code: one ``scipy.stats.gaussian_kde`` per class on the
    features as given, average ranks, 1-NN on the raw features, and optionally DPFE's own split.
    Use it to put numbers beside the DPFE paper's; it needs more features per class than
    dimensions (reduce with PCA first, as the papers did).
``osia`` (:mod:`harness.analysis.privacy.osia`)
    Osia et al.'s rank privacy: the kernel is the known noise density, each noisy feature is ranked
    against the clean features of the same set. Only defined for noisy uploads.

Numbers of different estimators are never merged, compared or plotted as one series.
"""

from __future__ import annotations

from typing import Any

from harness.core.errors import UserError
from harness.analysis.privacy.files import FILE_KEYS, OPTIONAL_FILE_KEYS, SET_KEYS, open_npz, score_file
from harness.analysis.privacy.scores import DEFAULT_ESTIMATOR, ESTIMATORS, SPLITS, PrivacyScores, check_estimator
from harness.analysis.privacy.splitbench import (BANDWIDTH_RULES, RankStats, bandwidth_for, log_posterior, rank_scores,
                                        standardize, true_class_ranks)

__all__ = ["BANDWIDTH_RULES", "DEFAULT_ESTIMATOR", "ESTIMATORS", "FILE_KEYS", "OPTIONAL_FILE_KEYS", "SET_KEYS",
           "SPLITS", "PrivacyScores", "RankStats", "bandwidth_for", "check_estimator", "log_posterior", "open_npz",
           "rank_scores", "score", "score_file", "standardize", "true_class_ranks"]


def score(train_features: Any, train_sensitive: Any, test_features: Any, test_sensitive: Any, *,
          estimator: str = DEFAULT_ESTIMATOR, train_primary: Any = None, test_primary: Any = None, seed: int = 0,
          bandwidth: str | float = "scott", standardized: bool = True, attacker: bool = True,
          split: str = "given") -> PrivacyScores:
    """Score a train/test pair with the named estimator (``splitbench`` or ``dpfe``).

    ``bandwidth``, ``standardized``, ``attacker`` and ``seed`` are the splitbench estimator's options
    (see :func:`harness.analysis.privacy.splitbench.score`); the dpfe estimator has none and is deterministic.
    ``split`` records how the pair was made. The ``osia`` estimator scores one noisy set against its
    clean version, not a pair: call :func:`harness.analysis.privacy.osia.score`.
    """
    from harness.analysis.privacy import dpfe, splitbench

    check_estimator(estimator)
    if estimator == "splitbench":
        return splitbench.score(train_features, train_sensitive, test_features, test_sensitive,
                                train_primary=train_primary, test_primary=test_primary, seed=seed,
                                bandwidth=bandwidth, standardized=standardized, attacker=attacker, split=split)
    if estimator == "dpfe":
        if bandwidth != "scott" or not standardized:
            raise UserError("bandwidth and standardized are options of the splitbench estimator; the dpfe estimator "
                            "fits scipy's gaussian_kde (Scott's rule) per class on the features as given")
        return dpfe.score(train_features, train_sensitive, test_features, test_sensitive, train_primary=train_primary,
                          test_primary=test_primary, split=split)
    raise UserError("the osia estimator ranks each noisy feature against the clean features of the same set, not a "
                    "train/test pair: use harness.analysis.privacy.osia.score (privacy-score --estimator osia --noise-var V)")
