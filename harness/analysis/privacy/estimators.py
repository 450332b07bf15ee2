"""The ``score`` dispatcher: a train/test pair scored by the estimator named (``splitbench`` or ``dpfe``)."""

from __future__ import annotations

from typing import Any

from harness.analysis.privacy import dpfe, splitbench
from harness.analysis.privacy.scores import DEFAULT_ESTIMATOR, PrivacyScores, check_estimator
from harness.core.errors import UserError


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
