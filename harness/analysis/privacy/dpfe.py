"""The ``dpfe`` estimator: the computation of the DPFE authors' public code, exactly.

Read from aliosia/DPFE, ``code/06_accuracy_privacy.py``, class ``PrivacyAnalyzer`` (commit af43544):

* ``train_test`` (lines 213-229), used by :func:`split`: the sensitive classes with 18 or fewer
  features are dropped (``counts > 18`` keeps a class; the comment above it says "less than 10"),
  the rest is split by ``train_test_split(x, y, test_size=0.1, random_state=14)`` (shuffled, not
  stratified), then the test rows whose class has no training row are dropped.
* ``knn_privacy`` (239-243): a 1-nearest-neighbour classifier (scikit-learn's
  ``KNeighborsClassifier(n_neighbors=1)``, Euclidean) fitted on the raw training features; the
  score is its test misclassification rate.
* ``create_kdes`` and ``kde_privacy`` (246-278): one ``scipy.stats.gaussian_kde`` per training
  class, on that class's features as given (Scott's rule, so the kernel covariance is
  ``n_s^(-2/(d+4))`` times the class's full sample covariance); every test feature is evaluated
  under every class density; each test column is divided by its largest density; the ranks are
  ``1 + K - rankdata(probs, axis 0)`` with ``scipy.stats.mstats.rankdata`` (average ranks for ties,
  1 = most likely); the score list is ``[K, 1 - share of true ranks equal to 1, mean rank, std
  rank, mean log rank, std log rank]`` (numpy means and population standard deviations).
* ``privacy`` (231-236) puts the 1-NN error in front of that list.

So, unlike :mod:`harness.analysis.privacy.splitbench`: the features are not standardised, each class has
its own full-covariance bandwidth (singular, so impossible, when a class has no more features than
dimensions), classes are ranked by their densities ``p(z | s)`` without the class prior, a tie
takes the average rank (a tie for first counts as not first), densities are not taken in log space
(they can underflow to 0 in high dimensions), and the 1-NN runs on the raw features.

Two places where the published file is not runnable as printed; we follow what it evidently meant:
``from __future__ import division`` stands on line 18, after other statements, where Python rejects
it; ``opt_bayes`` (line 275) is only meaningful with true division, which is what is computed here.
And where the DPFE code would silently rank classes in table order (every density of a test feature
underflowing to 0 makes its column 0/0 = NaN) or crash (singular covariance), this module stops with
one :class:`UserError` line saying what to do instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from harness.core.errors import UserError
from harness.analysis.privacy.scores import PrivacyScores, as_features, as_labels, rank_columns_of, validate

NAME = "dpfe"
MAX_DROPPED_CLASS_SIZE = 18  # DPFE keeps the classes with more than 18 features
TEST_SIZE = 0.1
RANDOM_STATE = 14
_WHAT_TO_DO = ("reduce the dimension first (the papers project onto 4-10 PCA components: the reduced "
               "embedding) or use the splitbench estimator (the default)")


def _show(label: Any) -> str:
    """A label as the user wrote it (``3``, ``'alice'``), not as numpy prints its scalars."""
    return repr(label.item() if isinstance(label, np.generic) else label)


def split_indices(labels: Any) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """DPFE's train/test split of one labelled set, as row indices in DPFE's order, and what it dropped.

    The indices follow ``train_test_split``'s shuffled order (not sorted), so the training rows
    reach ``gaussian_kde`` in the order the DPFE code gives them. Returns ``(train, test, notes)``.
    """
    from sklearn.model_selection import train_test_split

    y = np.asarray(labels).reshape(-1)
    values, counts = np.unique(y, return_counts=True)
    kept_classes = values[counts > MAX_DROPPED_CLASS_SIZE]
    kept = np.flatnonzero(np.isin(y, kept_classes))
    notes = []
    if kept_classes.size < values.size:
        notes.append(f"dpfe split: {values.size - kept_classes.size} of {values.size} sensitive classes have "
                     f"{MAX_DROPPED_CLASS_SIZE} or fewer features and were dropped ({y.size - kept.size} features)")
    if kept_classes.size < 2:
        raise UserError(f"sensitive: the DPFE split keeps only classes with more than {MAX_DROPPED_CLASS_SIZE} "
                        f"features, and {kept_classes.size} of {values.size} have that many; give more features "
                        "per class or a train/test pair of your own (without --split)")
    # Splitting the row indices shuffles exactly as splitting (x, y) does: the same permutation of rows.
    train, test = train_test_split(kept, test_size=TEST_SIZE, random_state=RANDOM_STATE)
    seen = np.isin(y[test], y[train])
    if not seen.all():
        notes.append(f"dpfe split: {int((~seen).sum())} test features of classes absent from the training part "
                     "were dropped")
    return train, test[seen], notes


def split(features: Any, labels: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """``(x_train, x_test, y_train, y_test, notes)`` of one labelled set by DPFE's split (features as given)."""
    x = as_features(features, "features", keep_float_dtype=True)
    y = as_labels(labels, "sensitive", x.shape[0], "features")
    train, test, notes = split_indices(y)
    return x[train], x[test], y[train], y[test], notes


def _class_densities(xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """``p[i, j]``: the density of test feature j under class i's ``gaussian_kde`` (DPFE's ``p_vals``)."""
    from scipy.stats import gaussian_kde

    d = xtr.shape[1]
    counts = np.array([(ytr == c).sum() for c in classes])
    small = np.flatnonzero(counts <= d)
    if small.size:
        c = small[np.argmin(counts[small])]
        raise UserError(f"the dpfe estimator cannot run: {small.size} of {classes.size} sensitive classes have no "
                        f"more training features than dimensions (class {_show(classes[c])}: {counts[c]} in d = {d}), "
                        "so their covariance is singular and scipy's gaussian_kde, which the DPFE code fits per "
                        f"class, cannot use it; {_WHAT_TO_DO}")
    densities = []
    for c in classes:
        try:
            kde = gaussian_kde(xtr[ytr == c].T)
        except (np.linalg.LinAlgError, ValueError):
            raise UserError(f"the dpfe estimator cannot run: the training features of sensitive class {_show(c)} "
                            "lie in a lower-dimensional subspace (e.g. a constant dimension such as a dead ReLU "
                            "channel), so their covariance is singular and scipy's gaussian_kde, which the DPFE code "
                            f"fits per class, cannot use it; {_WHAT_TO_DO}") from None
        densities.append(kde.evaluate(xte.T))
    return np.asarray(densities)


def true_class_ranks(densities: np.ndarray, true_row: np.ndarray) -> np.ndarray:
    """DPFE's rank of the true class of each test column (average ranks, 1 = the largest density)."""
    from scipy.stats.mstats import rankdata

    k, n = densities.shape
    top = densities.max(axis=0)
    underflow = ~(np.isfinite(top) & (top > 0))
    if underflow.any():
        raise UserError(f"the dpfe estimator cannot rank {int(underflow.sum())} of {n} test features: every class "
                        "density underflows to 0 there (gaussian_kde returns densities, not their logarithms), and "
                        "the DPFE code would then rank their classes in table order; reduce the dimension or use "
                        "the splitbench estimator (the default), which works in log space")
    probs = densities / top
    ranks = 1 + k - np.asarray(rankdata(probs, 0), dtype=np.float64)
    return ranks[true_row, np.arange(n)]


def score(train_features: Any, train_sensitive: Any, test_features: Any, test_sensitive: Any, *,
          train_primary: Any = None, test_primary: Any = None, split: str = "given",
          notes: tuple[str, ...] | list[str] = ()) -> PrivacyScores:
    """The ``dpfe`` estimator on a train/test pair: the DPFE code's numbers (see the module docstring).

    The features are used as given (a float32 file stays float32, as DPFE's Caffe blobs were). No
    primary accuracy and no trained attacker: the DPFE code computes neither (``primary_accuracy``
    and ``attacker_accuracy`` are None, ``bandwidth`` too: each class has its own).

    Raises
    ------
    UserError
        As :func:`harness.analysis.privacy.splitbench.score` for bad inputs; and one line saying what to do
        where the DPFE computation cannot run (a singular class covariance, or every class density of
        a test feature underflowing to 0).
    """
    from sklearn.metrics import accuracy_score
    from sklearn.neighbors import KNeighborsClassifier

    xtr, ytr, xte, yte, ptr, _, classes = validate(train_features, train_sensitive, test_features, test_sensitive,
                                                   train_primary, test_primary, keep_float_dtype=True)
    notes = list(notes)
    if ptr is not None:
        notes.append("primary labels ignored: the dpfe estimator computes no primary accuracy (DPFE measures it "
                     "with the rest of the network)")
    knn = KNeighborsClassifier(n_neighbors=1).fit(xtr, ytr)
    nn1_error = 1 - accuracy_score(yte, knn.predict(xte))
    ranks = true_class_ranks(_class_densities(xtr, ytr, xte, classes), np.searchsorted(classes, yte))
    n_test = yte.shape[0]
    # The DPFE code's numpy means and stds; opt_bayes = 1 - sum(trueranks == 1) / num_test is bayes_error.
    columns = rank_columns_of(int(classes.size), ranks)
    return PrivacyScores(
        estimator=NAME, n_classes=int(classes.size), **columns, nn1_error=float(nn1_error), attacker_accuracy=None,
        primary_accuracy=None, n_train=int(xtr.shape[0]), n_test=int(n_test), dim=int(xtr.shape[1]), bandwidth=None,
        split=split, warnings=tuple(notes))
