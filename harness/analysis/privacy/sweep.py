"""The accuracy-privacy sweep of a split network (DPFE's Procedure 2), with any named estimator.

:func:`privacy_sweep` runs DPFE's Procedure 2 for every (cut, embedding, noise ratio) of a
network: the phone part gives the feature, Gaussian noise of covariance ``r x Cov`` is added (after
the PCA projection for the reduced embedding), the rest of the network runs on the noisy feature
for the primary accuracy, and each requested estimator (:mod:`harness.analysis.privacy`) says how well the
sensitive label can still be recovered: one row per estimator, named in its ``estimator`` column.
Any module ``harness.split.configurations.split_at`` can cut works, with the user's own inputs and labels
(:func:`load_inputs_npz`) and weights (:func:`sweep_from_spec`).

Data layout: the held-out inputs are split into the attacker's training part and its test part,
either stratified by the sensitive label (``split="stratified"``, ``1 - test_size`` for training;
that part also fits the PCA of the reduced embedding and the noise covariance) or as the DPFE code
splits (``split="dpfe"``: classes of 18 or fewer inputs dropped, 10% test, seed 14; the noise
covariance is then fitted on every held-out feature, as the DPFE code does). The ``osia`` estimator
uses no split: it ranks every noisy held-out feature against the clean ones. The primary accuracy is
measured on every held-out input with the noisy features. Every estimator of one (cut, embedding,
ratio) scores the very same noisy features.

An estimator that cannot run on a feature set (the dpfe estimator on a feature with more
dimensions than inputs per class) gives a row with its ``warnings`` saying why and what to do, and
no scores (empty, never filled in); the sweep goes on.

Precisions (``precisions``, column ``precision``): a ``float32`` row scores the feature the float32
phone part uploads; an ``int8`` row scores the feature the static int8 phone part uploads, computed
by that quantized part itself (:mod:`harness.analysis.privacy.quantized`: the PT2E recipe of the
LiteRT and ExecuTorch exports, calibrated as the export calibrates). The noise is fitted on and added
to the uploaded int8 feature (the standard draw of the same seed as float32's; the noise vectors still
differ, since the covariance factor of the int8 feature is not float32's), and the primary accuracy is
the float32 cloud part's on it, as a deployment computes it. The PCA of a reduced
int8 part is float32's, quantized with the rest of the phone part. An int8 whole model is not any
cut's int8 phone part with a float32 cloud part, so its accuracy gets a row of its own (cut and
embedding ``full``, noise ratio 0, no privacy: nothing is uploaded), one per estimator; float32 needs
none (a noise-free simple cut computes the whole float32 model). A part that cannot be quantized
gives rows with the reason in ``warnings`` and no numbers; the sweep goes on.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

import numpy as np

from harness.config.spec import FULL
from harness.core.errors import UserError
from harness.analysis.privacy.estimators import score
from harness.analysis.privacy.noise import PAPER_RATIOS, FeatureNoise, check_ratios
from harness.analysis.privacy.quantized import FLOAT32, INT8, RECIPE, Calibration, check_precisions
from harness.analysis.privacy.scores import DEFAULT_ESTIMATOR, check_estimator

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    import torch

#: The privacy.csv columns, in order.
COLUMNS = ("model", "cut", "embedding", "precision", "reduced_dim", "noise_ratio", "estimator", "primary_accuracy",
           "rank_privacy", "log_rank_privacy", "bayes_error", "rank_mean", "rank_std", "log_rank_std", "nn1_error",
           "attacker_accuracy", "n_classes", "log_rank_privacy_uniform", "mean_rank", "std_rank", "mean_log_rank",
           "std_log_rank", "dim", "n_train", "n_test", "bandwidth", "split", "explained_variance", "calibration",
           "warnings")
EMBEDDINGS = ("simple", "reduced")
SWEEP_SPLITS = ("stratified", "dpfe")


def _primary_predictions(logits: "torch.Tensor") -> np.ndarray:
    """Class indices from the network output: argmax, or ``> 0`` for a single logit."""
    out = logits.reshape(logits.shape[0], -1)
    if out.shape[1] == 1:
        return (out[:, 0] > 0).long().numpy()
    return out.argmax(dim=1).numpy()


def _dims_for(cut: str, dims: int | Mapping[str, int] | None) -> int:
    k = dims.get(cut) if isinstance(dims, Mapping) else dims
    if k is None:
        raise UserError(f"dims: the reduced embedding needs k for cut {cut!r} (an int, or a dict cut -> k)")
    if int(k) < 1:
        raise UserError(f"dims: k must be at least 1, got {k} for cut {cut!r}")
    return int(k)


def _check_inputs(inputs: Any, primary: Any, sensitive: Any) -> tuple["torch.Tensor", np.ndarray, np.ndarray]:
    import torch

    x = inputs if isinstance(inputs, torch.Tensor) else torch.as_tensor(np.asarray(inputs))
    # The network's parameters are float32 (as on a phone): integer pixels or float64 arrays are cast.
    if x.dtype != torch.float32:
        x = x.float()
    p = np.asarray(primary).reshape(-1)
    s = np.asarray(sensitive).reshape(-1)
    for name, arr in (("primary", p), ("sensitive", s)):
        if arr.shape[0] != x.shape[0]:
            raise UserError(f"{name}: has {arr.shape[0]} labels but inputs has {x.shape[0]} rows")
    if not torch.isfinite(x).all():
        raise UserError("inputs: contains NaN or inf")
    classes, counts = np.unique(s, return_counts=True)
    if classes.size < 2:
        raise UserError(f"sensitive: needs at least 2 classes, found {classes.size}")
    if counts.min() < 2:
        raise UserError(f"sensitive: class {classes[counts.argmin()]!r} has a single input; the attacker's "
                        "train/test split needs at least 2 per class: drop it or add inputs")
    return x, p, s


def _split(s: np.ndarray, split: str, test_size: float, seed: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The attacker's train and test rows of the held-out set (see the module docstring)."""
    from sklearn.model_selection import train_test_split

    if split == "dpfe":
        from harness.analysis.privacy.dpfe import split_indices

        return split_indices(s)  # DPFE's shuffled order, kept: the DPFE code fits its KDEs in that order
    try:
        tr, te = train_test_split(np.arange(s.shape[0]), test_size=test_size, random_state=seed, stratify=s)
    except ValueError as exc:
        raise UserError(f"sensitive: cannot split {s.shape[0]} inputs into attacker train/test by class "
                        f"({exc})") from None
    return np.sort(tr), np.sort(te), []


def _scores(estimator: str, flat: np.ndarray, noisy: np.ndarray, s: np.ndarray, tr: np.ndarray, te: np.ndarray,
            noise: FeatureNoise, ratio: float, *, split: str, notes: list[str], seed: int,
            attacker: bool) -> dict[str, Any]:
    """One estimator's columns for one noisy feature set; an estimator that cannot run gives its reason only."""
    from harness.analysis.privacy import osia

    try:
        if estimator == "osia":
            result = osia.score(flat, s, noisy, noise=noise, ratio=ratio)
        else:
            result = score(noisy[tr], s[tr], noisy[te], s[te], estimator=estimator, seed=seed, attacker=attacker,
                           split=split)
    except UserError as exc:  # e.g. dpfe on d > features per class: a row that says so, the sweep goes on
        return {"estimator": estimator, "split": split, "warnings": str(exc)}
    scores = result.to_dict()
    scores.pop("primary_accuracy")  # the classifier proxy; the network's accuracy is used
    if notes and estimator != "osia":
        scores["warnings"] = "; ".join([*notes, *([scores["warnings"]] if scores["warnings"] else [])])
    return scores


def _noise_rows(feats: "torch.Tensor", rest: "torch.nn.Module", p: np.ndarray, s: np.ndarray, tr: np.ndarray,
                te: np.ndarray, ratios: tuple[float, ...], estimators: tuple[str, ...], *, split: str,
                notes: list[str], seed: int, attacker: bool, draw_key: str) -> list[dict[str, Any]]:
    """Procedure 2 on one uploaded feature set: one row (without its key) per ratio and estimator."""
    import torch

    n, shape = feats.shape[0], feats.shape
    flat = feats.reshape(n, -1).double().numpy()
    # The DPFE code fits the noise covariance on every feature, before its split.
    noise = FeatureNoise.fit(flat if split == "dpfe" else flat[tr])
    # One standard draw per (cut, embedding), scaled by sqrt(r): the curve moves with r alone. Every precision
    # of a configuration draws with the same seed (the noise itself differs: it is shaped by each feature's own
    # covariance factor, whose singular vectors move with the quantization).
    z = noise.standard_draw(n, (seed, zlib.crc32(draw_key.encode())))
    rows = []
    for r in ratios:
        noisy = noise.add(flat, z, r)
        with torch.no_grad():
            logits = rest(torch.from_numpy(noisy).to(feats.dtype).reshape(shape))
        acc = float((_primary_predictions(logits) == p).mean())
        for est in estimators:
            scores = _scores(est, flat, noisy, s, tr, te, noise, r, split=split, notes=notes, seed=seed,
                             attacker=attacker)
            rows.append({"noise_ratio": r, "primary_accuracy": acc, **scores})
    return rows


def _failed_rows(ratios: tuple[float, ...], estimators: tuple[str, ...], split: str, why: str) -> list[dict[str, Any]]:
    """The rows of a part that could not be quantized: its reason, no numbers."""
    return [{"noise_ratio": r, "estimator": est, "split": split, "warnings": why} for r in ratios for est in estimators]


def privacy_sweep(module: "torch.nn.Module", cuts: Iterable[str], inputs: Any, primary: Any, sensitive: Any, *,
                  embeddings: Iterable[str] = EMBEDDINGS, dims: int | Mapping[str, int] | None = None,
                  ratios: Iterable[float] = PAPER_RATIOS, seed: int = 0, test_size: float = 0.3,
                  model_name: str = "model", attacker: bool = True,
                  estimators: Iterable[str] = (DEFAULT_ESTIMATOR,), split: str = "stratified",
                  precisions: Iterable[str] = (FLOAT32,), calibration: Calibration | None = None) -> "pd.DataFrame":
    """Primary accuracy and privacy for every (cut, embedding, precision, noise ratio, estimator): DPFE's
    Procedure 2.

    Parameters
    ----------
    module : torch.nn.Module
        The trained network (eval mode is set); its output is primary-task logits.
    cuts : names of modules to cut after (see :func:`harness.split.configurations.split_at`).
    inputs : array or tensor (N, ...)
        Held-out inputs (not used to train ``module``).
    primary, sensitive : arrays (N,)
        Primary-task class indices (compared with the argmax of the output) and sensitive labels.
    embeddings : "simple" and/or "reduced"
        The feature as it is, or its PCA projection to ``dims`` numbers (fitted on the attacker's
        training part).
    dims : int or dict cut -> int
        k of the reduced embedding.
    ratios : noise ratios r (noise covariance r x Cov of the attacker's training features).
    seed : int
        Seeds the attacker split, the PCA, the noise draw and the attacker: same seed, same table.
    test_size : float
        Share of the held-out inputs the attacker is scored on (stratified split).
    estimators : names from :data:`harness.analysis.privacy.ESTIMATORS`
        One row per estimator for every (cut, embedding, ratio), on the same noisy features.
    split : "stratified" or "dpfe"
        How the held-out inputs are split for the attacker (see the module docstring).
    precisions : "float32" and/or "int8"
        Whose uploaded feature is scored: the float32 phone part's, or the static int8 part's
        (see the module docstring). The default keeps the float32 rows only.
    calibration : Calibration (or the export's calibration object: ``inputs(example)``, ``describe()``)
        How int8 parts are calibrated (default: 32 seeded random inputs, seed 0, as the export
        without model data); give the model's own inputs where it has them, as the export does.

    Returns
    -------
    pandas.DataFrame
        One row per (cut, embedding, precision, ratio, estimator) with the columns of :data:`COLUMNS`,
        plus one ``full`` row per estimator for each precision other than float32.
    """
    import pandas as pd
    import torch

    from harness.analysis.privacy.quantized import quantize_phone, uploaded_features
    from harness.split.configurations import reduce_with_pca, split_at

    x, p, s = _check_inputs(inputs, primary, sensitive)
    cuts = tuple(cuts)
    embeddings = tuple(embeddings)
    ratios = check_ratios(ratios)
    estimators = tuple(check_estimator(e) for e in estimators)
    precisions = check_precisions(precisions)
    for emb in embeddings:
        if emb not in EMBEDDINGS:
            raise UserError(f"embeddings: unknown embedding {emb!r}; use {', '.join(EMBEDDINGS)}")
    if not cuts:
        raise UserError("cuts: give at least one cut")
    if not estimators or len(set(estimators)) != len(estimators):
        raise UserError(f"estimators: give each estimator once, got {estimators!r}")
    if split not in SWEEP_SPLITS:
        raise UserError(f"split: unknown split {split!r}; use {' or '.join(SWEEP_SPLITS)}")
    if not 0 < test_size < 1:
        raise UserError(f"test_size: must be between 0 and 1, got {test_size}")
    calib, calib_text = (None, None)
    if INT8 in precisions:
        calibration = calibration or Calibration()
        calib, calib_text = calibration.inputs(x[:1].clone()), calibration.describe()
    tr, te, notes = _split(s, split, test_size, seed)
    module.eval()
    common = {"split": split, "notes": notes, "seed": seed, "attacker": attacker}
    rows: list[dict[str, Any]] = []
    for cut in cuts:
        phone, rest = split_at(module, cut)
        for emb in embeddings:
            extra: dict[str, Any] = {"reduced_dim": None, "explained_variance": None}
            if emb == "reduced":
                k = _dims_for(cut, dims)
                phone_e, rest_e, info = reduce_with_pca(phone, rest, x[torch.as_tensor(np.sort(tr))], k, seed)
                extra = {"reduced_dim": k, "explained_variance": info["explained_variance_ratio"]}
            else:
                phone_e, rest_e = phone, rest
            for precision in precisions:
                key = {"model": model_name, "cut": cut, "embedding": emb, "precision": precision, **extra}
                if precision == FLOAT32:
                    with torch.no_grad():
                        feats = phone_e(x)
                else:
                    key["calibration"] = calib_text
                    try:
                        feats = uploaded_features(quantize_phone(phone_e, calib), x)
                    except UserError as exc:  # this part's rows say why; the sweep goes on
                        rows += [{**key, **r} for r in _failed_rows(ratios, estimators, split, str(exc))]
                        continue
                rows += [{**key, **r} for r in _noise_rows(feats, rest_e, p, s, tr, te, ratios, estimators,
                                                           draw_key=f"{cut}/{emb}", **common)]
    for precision in precisions:
        if precision != FLOAT32:
            rows += _whole_model_rows(module, x, p, precision, calib, calib_text, model_name, estimators, split)
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    # Counts stay integers (10, not 10.0) when a row of an estimator that could not run has none.
    return table.astype({c: "Int64" for c in ("n_classes", "dim", "n_train", "n_test")})


def _whole_model_rows(module: "torch.nn.Module", x: "torch.Tensor", p: np.ndarray, precision: str,
                      calib: list["torch.Tensor"] | None, calib_text: str | None, model_name: str,
                      estimators: tuple[str, ...], split: str) -> list[dict[str, Any]]:
    """The whole model quantized (the on-premise int8 artifact): its primary accuracy, nothing uploaded."""
    from harness.analysis.privacy.quantized import quantize_phone, uploaded_features

    key = {"model": model_name, "cut": FULL, "embedding": FULL, "precision": precision, "noise_ratio": 0.0,
           "calibration": calib_text, "split": split}
    try:
        logits = uploaded_features(quantize_phone(module, calib), x)
    except UserError as exc:
        return [{**key, "estimator": est, "warnings": str(exc)} for est in estimators]
    acc = float((_primary_predictions(logits) == p).mean())
    why = f"on-premise {precision} ({RECIPE}): nothing is uploaded, so there is no privacy to score"
    return [{**key, "estimator": est, "primary_accuracy": acc, "warnings": why} for est in estimators]


# --------------------------------------------------------------------------------------------------
# The user's own data and model


def load_inputs_npz(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read ``inputs``, ``primary`` and ``sensitive`` from an .npz (UserError naming a missing key)."""
    from harness.analysis.privacy.files import open_npz

    path = Path(path)
    with open_npz(path, ("inputs", "primary", "sensitive")) as npz:
        for key in ("inputs", "primary", "sensitive"):
            if key not in npz.files:
                raise UserError(f"{path}: missing key {key!r} (an .npz of inputs needs inputs, primary, sensitive)")
        return npz["inputs"], npz["primary"], npz["sensitive"]


def sweep_from_spec(spec: Any, data: str | Path, *, ratios: Iterable[float] = PAPER_RATIOS, seed: int = 0,
                    test_size: float = 0.3, estimators: Iterable[str] | None = None,
                    split: str | None = None, calibration: Any = None) -> "pd.DataFrame":
    """:func:`privacy_sweep` for a spec's model (its source or zoo entry and weights) on an .npz of inputs.

    The estimator and split are the spec's ``[privacy] estimator`` and ``split`` (default
    ``splitbench``, ``stratified``) unless given here. Every precision of ``[export] precisions`` is
    scored; int8 parts are calibrated by ``calibration`` (the export's calibration of this spec, so that
    the scored part is the exported one), by default ``[export] calibration_samples`` seeded random
    inputs of ``[export] calibration_seed``.
    """
    from harness.split.configurations import load_model

    if estimators is None:
        estimators = (spec.privacy.get("estimator", DEFAULT_ESTIMATOR),)
    if split is None:
        split = spec.privacy.get("split", "stratified")
    loaded = load_model(spec)
    inputs, primary, sensitive = load_inputs_npz(data)
    dims = dict(spec.split.reduced_dims) if spec.split.reduced_dims else None
    if "reduced" in spec.split.embeddings and dims is None:
        import models

        dims = dict(models.get(spec.model.zoo).reduced_dims) if spec.model.zoo else None
    if calibration is None:
        calibration = Calibration(samples=spec.export.calibration_samples, seed=spec.export.calibration_seed)
    return privacy_sweep(loaded.module, loaded.cuts, inputs, primary, sensitive, embeddings=spec.split.embeddings,
                         dims=dims, ratios=ratios, seed=seed, test_size=test_size, model_name=loaded.name,
                         estimators=estimators, split=split, precisions=spec.export.precisions,
                         calibration=calibration)


def noise_sweep(train_features: np.ndarray, train_sensitive: np.ndarray, test_features: np.ndarray,
                test_sensitive: np.ndarray, *, ratios: Iterable[float] = PAPER_RATIOS, seed: int = 0,
                primary_accuracy: Callable[[np.ndarray], float] | None = None, attacker: bool = True,
                estimator: str = "splitbench") -> list[dict[str, Any]]:
    """Procedure 2 on one feature set: the privacy (and primary accuracy) of the noisy features per ratio.

    The covariance is estimated on ``train_features``; train and test features both get noise (the
    attacker only ever sees noisy uploads). ``primary_accuracy(noisy_test_features)``, when given,
    returns the primary-task accuracy of the rest of the network on them. ``estimator``: ``splitbench``
    or ``dpfe`` (see :mod:`harness.analysis.privacy`; ``osia`` scores one set, see
    :func:`harness.analysis.privacy.sweep.privacy_sweep`). Returns one flat dict per ratio: ``noise_ratio``,
    ``primary_accuracy`` and the :class:`~harness.analysis.privacy.PrivacyScores` (with its ``estimator``).
    """
    ratios = check_ratios(ratios)
    noise = FeatureNoise.fit(train_features)
    z_train = noise.standard_draw(len(train_features), (seed, 0))
    z_test = noise.standard_draw(len(test_features), (seed, 1))
    rows = []
    for r in ratios:
        noisy_train = noise.add(train_features, z_train, r)
        noisy_test = noise.add(test_features, z_test, r)
        scores = score(noisy_train, train_sensitive, noisy_test, test_sensitive, seed=seed, attacker=attacker,
                       estimator=estimator)
        row = {"noise_ratio": r, **scores.to_dict()}
        # The rest of the network on the noisy feature, not the score's classifier proxy.
        row["primary_accuracy"] = primary_accuracy(noisy_test) if primary_accuracy is not None else None
        rows.append(row)
    return rows
