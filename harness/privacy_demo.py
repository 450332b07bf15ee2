"""The accuracy-privacy sweep of a split network, and its demonstration on scikit-learn's digits.

:func:`privacy_sweep` runs DPFE's Procedure 2 for every (cut, embedding, noise ratio) of a
network: the phone part gives the feature, Gaussian noise of covariance ``r x Cov`` is added (after
the PCA projection for the reduced embedding), the rest of the network runs on the noisy feature
for the primary accuracy, and :func:`harness.privacy.score` says how well the sensitive label can
still be recovered. Any module ``harness.configurations.split_at`` can cut works, with the user's
own inputs and labels (:func:`load_inputs_npz`) and weights (:func:`sweep_from_spec`).

:func:`digits_demo` is one call of it on real data that ships with scikit-learn: the 8x8
handwritten digits (1797 images). A small CNN is trained in a few seconds on the primary task
"digit >= 5"; the digit itself (K = 10) is the sensitive label. The images are split in half,
stratified by digit: one half trains the CNN, the other is the held-out set of the sweep.

Data layout inside the sweep: the held-out inputs are split again, stratified by the sensitive
label, into the attacker's training part (``1 - test_size``; it also fits the PCA of the reduced
embedding and the noise covariance) and its test part. The primary accuracy is measured on every
held-out input (train and test parts) with the noisy features.
"""

from __future__ import annotations

import math
import time
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

import numpy as np

from harness.errors import UserError
from harness.noise import PAPER_RATIOS, FeatureNoise, check_ratios

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    import torch

#: The privacy.csv columns, in order (the scores' extra fields follow).
COLUMNS = ("model", "cut", "embedding", "reduced_dim", "noise_ratio", "primary_accuracy", "rank_privacy",
           "log_rank_privacy", "bayes_error", "rank_mean", "rank_std", "log_rank_std", "nn1_error",
           "attacker_accuracy", "n_classes", "log_rank_privacy_uniform", "dim", "n_train", "n_test",
           "bandwidth", "explained_variance", "warnings")
EMBEDDINGS = ("simple", "reduced")
DIGITS_CUTS = ("conv1", "conv2", "conv3", "fc1")
DIGITS_REDUCED_DIM = 8
#: The demo's default ratios: every ratio of the paper (the whole demo takes about 25 s on one core).
DIGITS_RATIOS = PAPER_RATIOS


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


def privacy_sweep(module: "torch.nn.Module", cuts: Iterable[str], inputs: Any, primary: Any, sensitive: Any, *,
                  embeddings: Iterable[str] = EMBEDDINGS, dims: int | Mapping[str, int] | None = None,
                  ratios: Iterable[float] = PAPER_RATIOS, seed: int = 0, test_size: float = 0.3,
                  model_name: str = "model", attacker: bool = True) -> "pd.DataFrame":
    """Primary accuracy and privacy for every (cut, embedding, noise ratio): DPFE's Procedure 2.

    Parameters
    ----------
    module : torch.nn.Module
        The trained network (eval mode is set); its output is primary-task logits.
    cuts : names of modules to cut after (see :func:`harness.configurations.split_at`).
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
        Share of the held-out inputs the attacker is scored on (stratified by sensitive label).

    Returns
    -------
    pandas.DataFrame
        One row per (cut, embedding, ratio) with the columns of :data:`COLUMNS`.
    """
    import pandas as pd
    import torch
    from sklearn.model_selection import train_test_split

    from harness.configurations import reduce_with_pca, split_at
    from harness.privacy import score

    x, p, s = _check_inputs(inputs, primary, sensitive)
    cuts = tuple(cuts)
    embeddings = tuple(embeddings)
    ratios = check_ratios(ratios)
    for emb in embeddings:
        if emb not in EMBEDDINGS:
            raise UserError(f"embeddings: unknown embedding {emb!r}; use {', '.join(EMBEDDINGS)}")
    if not cuts:
        raise UserError("cuts: give at least one cut")
    if not 0 < test_size < 1:
        raise UserError(f"test_size: must be between 0 and 1, got {test_size}")
    n = x.shape[0]
    try:
        tr, te = train_test_split(np.arange(n), test_size=test_size, random_state=seed, stratify=s)
    except ValueError as exc:
        raise UserError(f"sensitive: cannot split {n} inputs into attacker train/test by class ({exc})") from None
    tr, te = np.sort(tr), np.sort(te)
    module.eval()
    rows: list[dict[str, Any]] = []
    for cut in cuts:
        phone, rest = split_at(module, cut)
        for emb in embeddings:
            extra: dict[str, Any] = {"reduced_dim": None, "explained_variance": None}
            if emb == "reduced":
                k = _dims_for(cut, dims)
                phone_e, rest_e, info = reduce_with_pca(phone, rest, x[torch.as_tensor(tr)], k, seed)
                extra = {"reduced_dim": k, "explained_variance": info["explained_variance_ratio"]}
            else:
                phone_e, rest_e = phone, rest
            with torch.no_grad():
                feats = phone_e(x)
            shape = feats.shape
            flat = feats.reshape(n, -1).double().numpy()
            noise = FeatureNoise.fit(flat[tr])
            # One standard draw per (cut, embedding), scaled by sqrt(r): the curve moves with r alone.
            z = noise.standard_draw(n, (seed, zlib.crc32(f"{cut}/{emb}".encode())))
            for r in ratios:
                noisy = noise.add(flat, z, r)
                with torch.no_grad():
                    logits = rest_e(torch.from_numpy(noisy).to(feats.dtype).reshape(shape))
                acc = float((_primary_predictions(logits) == p).mean())
                scores = score(noisy[tr], s[tr], noisy[te], s[te], seed=seed, attacker=attacker).to_dict()
                scores.pop("primary_accuracy")  # the classifier proxy; the network's accuracy is used
                rows.append({"model": model_name, "cut": cut, "embedding": emb, "noise_ratio": r,
                             "primary_accuracy": acc, **extra, **scores})
    return pd.DataFrame(rows, columns=list(COLUMNS))


# --------------------------------------------------------------------------------------------------
# The user's own data and model


def load_inputs_npz(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read ``inputs``, ``primary`` and ``sensitive`` from an .npz (UserError naming a missing key)."""
    from harness.privacy import open_npz

    path = Path(path)
    with open_npz(path, ("inputs", "primary", "sensitive")) as npz:
        for key in ("inputs", "primary", "sensitive"):
            if key not in npz.files:
                raise UserError(f"{path}: missing key {key!r} (an .npz of inputs needs inputs, primary, sensitive)")
        return npz["inputs"], npz["primary"], npz["sensitive"]


def sweep_from_spec(spec: Any, data: str | Path, *, ratios: Iterable[float] = PAPER_RATIOS, seed: int = 0,
                    test_size: float = 0.3) -> "pd.DataFrame":
    """:func:`privacy_sweep` for a spec's model (its source or zoo entry and weights) on an .npz of inputs."""
    from harness.configurations import load_model

    loaded = load_model(spec)
    inputs, primary, sensitive = load_inputs_npz(data)
    dims = dict(spec.split.reduced_dims) if spec.split.reduced_dims else None
    if "reduced" in spec.split.embeddings and dims is None:
        import models

        dims = dict(models.get(spec.model.zoo).reduced_dims) if spec.model.zoo else None
    return privacy_sweep(loaded.module, loaded.cuts, inputs, primary, sensitive, embeddings=spec.split.embeddings,
                         dims=dims, ratios=ratios, seed=seed, test_size=test_size, model_name=loaded.name)


# --------------------------------------------------------------------------------------------------
# The digits demonstration


def digits_cnn() -> "torch.nn.Module":
    """A small CNN for 1x8x8 digits; its blocks ``conv1``, ``conv2``, ``conv3``, ``fc1`` are the cuts.

    Uploaded feature sizes: conv1 16x8x8 = 1024, conv2 32x4x4 = 512, conv3 32x2x2 = 128, fc1 32.
    """
    import torch.nn as nn

    class DigitsCNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU())
            self.conv2 = nn.Sequential(nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
            self.conv3 = nn.Sequential(nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
            self.fc1 = nn.Sequential(nn.Flatten(1), nn.Linear(128, 32), nn.ReLU())
            self.head = nn.Linear(32, 2)

        def forward(self, x):
            return self.head(self.fc1(self.conv3(self.conv2(self.conv1(x)))))

    return DigitsCNN()


def digits_data(seed: int = 0) -> dict[str, np.ndarray]:
    """scikit-learn's digits as (N, 1, 8, 8) float32 in [0, 1], split in half (stratified by digit).

    Returns ``train_x, train_digit, test_x, test_digit`` (the primary label is ``digit >= 5``).
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    y = digits.target.astype(np.int64)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.5, random_state=seed, stratify=y)
    return {"train_x": xtr, "train_digit": ytr, "test_x": xte, "test_digit": yte}


def train_digits_cnn(train_x: np.ndarray, train_primary: np.ndarray, *, seed: int = 0, epochs: int = 25,
                     batch_size: int = 64, lr: float = 3e-3) -> "torch.nn.Module":
    """Train :func:`digits_cnn` on the primary task with Adam (seeded, CPU, a few seconds)."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed)
    model = digits_cnn()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    xs = torch.from_numpy(train_x)
    ys = torch.from_numpy(np.asarray(train_primary, dtype=np.int64))
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(xs.shape[0], generator=gen)
        for start in range(0, xs.shape[0], batch_size):
            idx = order[start:start + batch_size]
            opt.zero_grad()
            F.cross_entropy(model(xs[idx]), ys[idx]).backward()
            opt.step()
    return model.eval()


def digits_demo(out: str | Path | None = None, *, ratios: Iterable[float] = DIGITS_RATIOS, seed: int = 0,
                cuts: Iterable[str] = DIGITS_CUTS, embeddings: Iterable[str] = EMBEDDINGS,
                reduced_dim: int = DIGITS_REDUCED_DIM, epochs: int = 25,
                weights: str | Path | None = None) -> "pd.DataFrame":
    """Train the digits CNN, sweep every cut x embedding x ratio, and write ``OUT/privacy.csv`` when ``out`` is given.

    ``weights``: where to save the trained CNN's state_dict (the demo measures that very network).

    Primary task "digit >= 5", sensitive label the digit (K = 10). The table's ``model`` is
    ``digits-cnn``; ``DataFrame.attrs`` holds the CNN's held-out accuracy without a cut
    (``full_accuracy``) and the seconds spent training and sweeping. Runs on one thread (torch and
    BLAS): about 25 s of one core with every paper ratio.
    """
    import torch
    from threadpoolctl import threadpool_limits

    # The CNN and the scores are tiny: one thread is the fastest (threads only spin on 8x8 images)
    # and leaves the other cores to whatever is being measured. The caller's settings come back.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            return _digits_demo(out, ratios=ratios, seed=seed, cuts=cuts, embeddings=embeddings,
                                reduced_dim=reduced_dim, epochs=epochs, weights=weights)
    finally:
        torch.set_num_threads(previous)


def _digits_demo(out, *, ratios, seed, cuts, embeddings, reduced_dim, epochs, weights) -> "pd.DataFrame":
    import torch

    t0 = time.perf_counter()
    data = digits_data(seed)
    model = train_digits_cnn(data["train_x"], data["train_digit"] >= 5, seed=seed, epochs=epochs)
    t_train = time.perf_counter() - t0
    if weights is not None:
        torch.save(model.state_dict(), weights)
    test_primary = (data["test_digit"] >= 5).astype(np.int64)
    with torch.no_grad():
        full_acc = float((model(torch.from_numpy(data["test_x"])).argmax(1).numpy() == test_primary).mean())
    table = privacy_sweep(model, cuts, data["test_x"], test_primary, data["test_digit"], embeddings=embeddings,
                          dims=reduced_dim, ratios=ratios, seed=seed, model_name="digits-cnn")
    table.attrs.update(full_accuracy=full_acc, train_s=t_train, sweep_s=time.perf_counter() - t0 - t_train)
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        table.to_csv(out / "privacy.csv", index=False)
    return table


def trend_summary(table: "pd.DataFrame") -> dict[str, Any]:
    """Whether the papers' trends show: privacy up with the cut (at r = 0) and with the noise ratio.

    Returns, per embedding, the log-rank privacy by cut at ratio 0 and, per (cut, embedding), the
    log-rank privacy and the primary accuracy by ratio, plus the Spearman correlation of each
    with the ratio. A reader checks the trends; nothing here tunes anything.
    """
    from scipy.stats import spearmanr

    out: dict[str, Any] = {"by_cut": {}, "by_ratio": {}}
    zero = table[table["noise_ratio"] == 0]
    for emb, g in zero.groupby("embedding", sort=False):
        out["by_cut"][emb] = dict(zip(g["cut"], g["log_rank_privacy"].round(3)))
    for (cut, emb), g in table.groupby(["cut", "embedding"], sort=False):
        rho_p = spearmanr(g["noise_ratio"], g["log_rank_privacy"])[0] if len(g) > 2 else math.nan
        rho_a = spearmanr(g["noise_ratio"], g["primary_accuracy"])[0] if len(g) > 2 else math.nan
        out["by_ratio"][f"{cut}-{emb}"] = {
            "log_rank_privacy": dict(zip(g["noise_ratio"], g["log_rank_privacy"].round(3))),
            "primary_accuracy": dict(zip(g["noise_ratio"], g["primary_accuracy"].round(3))),
            "spearman_privacy_vs_ratio": float(rho_p), "spearman_accuracy_vs_ratio": float(rho_a)}
    return out
