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

from harness.analysis.privacy.estimators import score
from harness.analysis.privacy.files import FILE_KEYS, OPTIONAL_FILE_KEYS, SET_KEYS, open_npz, score_file
from harness.analysis.privacy.scores import DEFAULT_ESTIMATOR, ESTIMATORS, SPLITS, PrivacyScores, check_estimator
from harness.analysis.privacy.splitbench import (BANDWIDTH_RULES, RankStats, bandwidth_for, log_posterior, rank_scores,
                                        standardize, true_class_ranks)

__all__ = ["BANDWIDTH_RULES", "DEFAULT_ESTIMATOR", "ESTIMATORS", "FILE_KEYS", "OPTIONAL_FILE_KEYS", "SET_KEYS",
           "SPLITS", "PrivacyScores", "RankStats", "bandwidth_for", "check_estimator", "log_posterior", "open_npz",
           "rank_scores", "score", "score_file", "standardize", "true_class_ranks"]
