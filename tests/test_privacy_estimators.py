"""The papers' own privacy estimators beside splitbench's: dpfe and osia against scipy computed here,
the DPFE split, the two estimators side by side on the digits data (differences explained), errors
that say what to do, and one estimator per merged table, report and recommendation."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import gaussian_kde, multivariate_normal, rankdata

from harness.core.errors import UserError
from harness.analysis.privacy import dpfe, osia, score, score_file
from harness.analysis.privacy.splitbench import standardize, true_class_ranks


def clusters(k: int, n_per: int, d: int, sep: float, seed: int = 0, n_test_per: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)) * sep
    y = np.repeat(np.arange(k), n_per)
    yt = np.repeat(np.arange(k), n_test_per)
    return centres[y] + rng.normal(size=(y.size, d)), y, centres[yt] + rng.normal(size=(yt.size, d)), yt


def dpfe_by_hand(xtr, ytr, xte, yte) -> dict[str, float]:
    """The DPFE code's numbers, computed here from scipy and numpy alone (not through harness code)."""
    classes = np.unique(ytr)
    dens = np.array([gaussian_kde(xtr[ytr == c].T)(xte.T) for c in classes])  # (K, n_test)
    # Rank 1 = largest density, ties averaged: rankdata of the negated densities down each column.
    ranks = np.array([rankdata(-dens[:, j], method="average")[list(classes).index(yte[j])]
                      for j in range(len(yte))])
    dist = ((xte[:, None, :] - xtr[None, :, :]) ** 2).sum(axis=2)
    nn1 = float(np.mean(ytr[dist.argmin(axis=1)] != yte))
    k = classes.size
    return {"n_classes": k, "nn1_error": nn1, "bayes_error": 1 - np.mean(ranks == 1),
            "mean_rank": ranks.mean(), "std_rank": ranks.std(), "mean_log_rank": np.log(ranks).mean(),
            "std_log_rank": np.log(ranks).std(), "log_rank_privacy": np.log(ranks).mean() / math.log(k),
            "rank_privacy": ranks.mean() / k}


def dpfe_split_by_hand(x, y):
    """DPFE's train_test (06_accuracy_privacy.py lines 213-229), restated with today's scikit-learn."""
    from sklearn.model_selection import train_test_split

    u, counts = np.unique(y, return_counts=True)
    keep = np.isin(y, u[counts > 18])
    xtr, xte, ytr, yte = train_test_split(x[keep], y[keep], test_size=0.1, random_state=14)
    seen = np.isin(yte, ytr)
    return xtr, xte[seen], ytr, yte[seen]


def assert_matches(result: dict, expected: dict) -> None:
    for key, value in expected.items():
        assert result[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key


@pytest.fixture(scope="module")
def digits8():
    """scikit-learn's digits projected onto 8 PCA components, the digit as the sensitive label."""
    from sklearn.datasets import load_digits
    from sklearn.decomposition import PCA

    d = load_digits()
    return PCA(8, random_state=0).fit_transform(d.data), d.target


# --------------------------------------------------------------------------------------------------
# dpfe against scipy


def test_dpfe_matches_scipy_computed_independently():
    xtr, ytr, xte, yte = clusters(4, 25, 3, sep=1.2, seed=1, n_test_per=15)
    s = score(xtr, ytr, xte, yte, estimator="dpfe")
    assert s.estimator == "dpfe" and s.bandwidth is None and s.attacker_accuracy is None
    assert 0 < s.bayes_error < 0.75  # overlapping classes: a real test of the ranks, not all first
    assert_matches(s.to_dict(), dpfe_by_hand(xtr, ytr, xte, yte))
    k = 4
    assert s.rank_mean == pytest.approx((s.mean_rank - 1) / (k - 1))
    assert s.log_rank_std == pytest.approx(s.std_log_rank / math.log(k))


def test_dpfe_ranks_ties_by_their_average_as_the_dpfe_code():
    # Densities of 3 classes (rows) for 3 test features (columns); the true class is row 0 each time.
    dens = np.array([[1.0, 2.0, 0.5], [1.0, 1.0, 0.5], [0.5, 3.0, 0.5]])
    ranks = dpfe.true_class_ranks(dens, np.array([0, 0, 0]))
    assert ranks.tolist() == [1.5, 2.0, 2.0]  # tie for first -> 1.5 (not "first"); 3-way tie -> 2
    # Features that carry nothing tie every class: DPFE's average rank (K+1)/2 for all, splitbench's
    # expectation over a random tie-break. Same mean rank, different log-rank and Bayes error.
    k = 4
    flat = np.ones((k, 6))
    d_ranks = dpfe.true_class_ranks(flat, np.arange(6) % k)
    s_ranks = true_class_ranks(np.zeros((6, k)), np.arange(6) % k)
    assert d_ranks.mean() == pytest.approx(s_ranks.rank.mean()) == pytest.approx((k + 1) / 2)
    assert np.log(d_ranks).mean() == pytest.approx(math.log(2.5))
    assert s_ranks.log_rank.mean() == pytest.approx(math.lgamma(k + 1) / k)  # mean of log 1..K
    assert (d_ranks == 1).mean() == 0.0 and s_ranks.p_first.mean() == pytest.approx(1 / k)


def test_dpfe_split_is_the_dpfe_codes():
    rng = np.random.default_rng(2)
    y = np.concatenate([np.full(40, 7), np.full(19, 3), np.full(18, 5), np.full(4, 9)])  # 5 and 9: <= 18
    y = y[rng.permutation(y.size)]
    x = rng.normal(size=(y.size, 2))
    xtr, xte, ytr, yte, notes = dpfe.split(x, y)
    exp_tr, exp_te, exp_ytr, exp_yte = dpfe_split_by_hand(x, y)
    assert np.array_equal(xtr, exp_tr) and np.array_equal(xte, exp_te)  # same rows, same (shuffled) order
    assert np.array_equal(ytr, exp_ytr) and np.array_equal(yte, exp_yte)
    assert set(ytr) == {3, 7} and len(yte) == math.ceil(0.1 * 59)
    assert any("2 of 4 sensitive classes" in n and "22 features" in n for n in notes)


def test_cli_dpfe_reproduces_the_dpfe_computation_on_its_split(tmp_path, capsys, digits8):
    from harness.cli import main

    x, y = digits8
    one = tmp_path / "digits8.npz"
    np.savez(one, features=x, sensitive=y)
    xtr, xte, ytr, yte = dpfe_split_by_hand(x, y)
    expected = dpfe_by_hand(xtr, ytr, xte, yte)
    assert main(["privacy-score", str(one), "--estimator", "dpfe", "--split", "dpfe", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["estimator"] == "dpfe" and out["split"] == "dpfe" and out["n_test"] == len(yte) == 180
    assert_matches(out, expected)
    # The same split saved as a train/test pair gives the same numbers with the default --split given.
    pair = tmp_path / "pair.npz"
    np.savez(pair, train_features=xtr, train_sensitive=ytr, test_features=xte, test_sensitive=yte)
    assert main(["privacy-score", str(pair), "--estimator", "dpfe", "--json"]) == 0
    assert_matches(json.loads(capsys.readouterr().out), expected)
    # The default estimator's numbers on that pair are score()'s, unchanged, and say whose they are.
    assert main(["privacy-score", str(pair), "--json"]) == 0
    default = json.loads(capsys.readouterr().out)
    assert default == score(xtr, ytr, xte, yte).to_dict() and default["estimator"] == "splitbench"


def test_dpfe_keeps_the_features_dtype():
    xtr, ytr, xte, yte = clusters(3, 20, 2, sep=2.0, seed=3, n_test_per=5)
    s32 = score(xtr.astype(np.float32), ytr, xte.astype(np.float32), yte, estimator="dpfe")
    exp = dpfe_by_hand(xtr.astype(np.float32), ytr, xte.astype(np.float32), yte)
    assert s32.mean_log_rank == pytest.approx(exp["mean_log_rank"], rel=1e-12, abs=1e-12)


# --------------------------------------------------------------------------------------------------
# Where dpfe cannot run: one line that says what to do


@pytest.mark.parametrize("case, words", [
    ("d512", ("50 in d = 512", "reduce the dimension", "splitbench")),
    ("dead", ("lower-dimensional subspace", "reduce the dimension", "splitbench")),
    ("underflow", ("underflows to 0", "log space", "splitbench")),
])
def test_dpfe_cannot_run_says_what_to_do(case, words):
    rng = np.random.default_rng(4)
    if case == "d512":  # the size: 50 features per class in d = 512
        xtr, ytr, xte, yte = clusters(5, 50, 512, sep=0.3, seed=4, n_test_per=4)
    elif case == "dead":  # a constant dimension (a dead ReLU channel) makes every class covariance singular
        xtr, ytr, xte, yte = clusters(3, 20, 3, sep=1.0, seed=4, n_test_per=4)
        xtr[:, 2] = xte[:, 2] = 0.0
    else:  # tight classes, a test feature far from all of them: every density is exactly 0.0
        ytr = np.repeat([0, 1], 10)
        xtr = np.array([[0.0, 0.0], [1.0, 0.0]])[ytr] + 1e-3 * rng.normal(size=(20, 2))
        xte, yte = np.array([[0.5, 50.0], [0.0, 0.0]]), np.array([0, 0])
    with pytest.raises(UserError) as err:
        score(xtr, ytr, xte, yte, estimator="dpfe")
    message = str(err.value)
    assert "\n" not in message and all(w in message for w in words), message
    score(xtr, ytr, xte, yte, attacker=False)  # the default estimator runs on the same data


def test_cli_dpfe_error_is_one_line_without_traceback(tmp_path, capsys):
    from harness.cli import main

    xtr, ytr, xte, yte = clusters(5, 50, 512, sep=0.3, seed=4, n_test_per=4)
    path = tmp_path / "d512.npz"
    np.savez(path, train_features=xtr, train_sensitive=ytr, test_features=xte, test_sensitive=yte)
    assert main(["privacy-score", str(path), "--estimator", "dpfe"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err and str(path) in err


# --------------------------------------------------------------------------------------------------
# The two estimators side by side on the digits data


def test_estimators_side_by_side_on_digits(digits8):
    x, y = digits8
    xtr, xte, ytr, yte, _ = dpfe.split(x, y)
    sb = score(xtr, ytr, xte, yte, attacker=False)
    dp = score(xtr, ytr, xte, yte, estimator="dpfe")
    # The numbers: Bayes error 0.044 vs 0.039, log-rank 0.0144 vs 0.0117, 1-NN 0.056 vs 0.028.
    assert (sb.n_test, dp.n_test, sb.n_classes, dp.n_classes) == (180, 180, 10, 10)
    assert sb.bayes_error == pytest.approx(8 / 180) and dp.bayes_error == pytest.approx(7 / 180)
    assert sb.nn1_error == pytest.approx(10 / 180) and dp.nn1_error == pytest.approx(5 / 180)
    assert sb.log_rank_privacy == pytest.approx(0.0144, abs=5e-5)
    assert dp.log_rank_privacy == pytest.approx(0.0117, abs=5e-5)

    # 1. The 1-NN gap is the standardisation alone: dpfe's 1-NN on standardised features is splitbench's.
    ztr, zte = standardize(xtr, xte)
    dz = score(ztr, ytr, zte, yte, estimator="dpfe")
    assert dz.nn1_error == pytest.approx(sb.nn1_error)  # 1 - accuracy vs share of errors: rounding apart
    # ... while the per-class gaussian_kde is affine-invariant: standardising changes no dpfe rank.
    for key in ("mean_rank", "std_rank", "mean_log_rank", "std_log_rank", "bayes_error"):
        assert getattr(dz, key) == pytest.approx(getattr(dp, key), rel=1e-9, abs=1e-12), key

    # 2. The rank gap is the density, not the rank rule: splitbench's expected-rank rule applied to
    # dpfe's class densities gives dpfe's ranks exactly (continuous densities have no ties).
    classes = np.unique(ytr)
    log_dens = np.log(np.array([gaussian_kde(xtr[ytr == c].T)(xte.T) for c in classes]).T)
    stats = true_class_ranks(log_dens, np.searchsorted(classes, yte))
    assert stats.rank.mean() == pytest.approx(dp.mean_rank) and stats.log_rank.mean() == pytest.approx(dp.mean_log_rank)
    assert 1 - stats.p_first.mean() == pytest.approx(dp.bayes_error)


# --------------------------------------------------------------------------------------------------
# osia


def osia_by_hand(f, y, z, var):
    """Osia et al.'s Eq. 4-7 with scipy's pdf: class means of N(z; f_j, var I), prior N_s/N, strict rank."""
    classes, counts = np.unique(y, return_counts=True)
    pdf = np.array([[multivariate_normal.pdf(zi, mean=fj, cov=var * np.eye(f.shape[1])) for fj in f] for zi in z])
    post = np.stack([pdf[:, y == c].mean(axis=1) * n / len(y) for c, n in zip(classes, counts)], axis=1)
    own = post[np.arange(len(y)), np.searchsorted(classes, y)]
    ranks = 1 + (post > own[:, None]).sum(axis=1)
    return ranks


def test_osia_matches_the_papers_equations_with_scipy():
    f, y, _, _ = clusters(4, 12, 3, sep=1.0, seed=5)
    z = osia.add_isotropic_noise(f, 0.8, seed=1)
    ranks = osia_by_hand(f, y, z, 0.8)
    s = osia.score(f, y, z, noise_var=0.8)
    assert s.estimator == "osia" and s.split == "none" and s.n_train == s.n_test == 48 and s.nn1_error is None
    assert 0.25 < s.rank_privacy < 0.5  # a noisy, hard case: ranks spread
    assert s.rank_privacy == pytest.approx(ranks.mean() / 4)
    assert s.mean_log_rank == pytest.approx(np.log(ranks).mean())
    assert s.bayes_error == pytest.approx(np.mean(ranks != 1))


def test_osia_codes_record_variant_is_sensitive_equal_record():
    # aliosia/DeepPrivInf2017 pirvacy_ek: every record its own class, average ranks, mean rank / N.
    f, _, _, _ = clusters(1, 30, 4, sep=0.0, seed=6)
    z = osia.add_isotropic_noise(f, 0.5, seed=2)
    e = np.array([[multivariate_normal.pdf(fj - zi, cov=0.5 * np.eye(4)) for zi in z] for fj in f])  # (clean, noisy)
    code_ranks = np.diag(1 + len(f) - np.apply_along_axis(rankdata, 0, e / e.max(axis=0)))
    s = osia.score(f, np.arange(len(f)), z, noise_var=0.5)
    assert s.rank_privacy == pytest.approx(code_ranks.mean() / len(f))


def test_osia_with_the_sweeps_noise_and_at_zero_noise():
    from harness.analysis.privacy.noise import FeatureNoise

    f, y, _, _ = clusters(3, 15, 2, sep=1.0, seed=7)
    noise = FeatureNoise.fit(f)
    z = noise.add(f, noise.standard_draw(len(f), 0), 1.5)
    cov = 1.5 * np.cov(f, rowvar=False)
    classes = np.unique(y)
    pdf = np.array([[multivariate_normal.pdf(zi, mean=fj, cov=cov) for fj in f] for zi in z])
    post = np.stack([pdf[:, y == c].mean(axis=1) * (y == c).mean() for c in classes], axis=1)
    ranks = 1 + (post > post[np.arange(len(y)), y][:, None]).sum(axis=1)
    assert osia.score(f, y, z, noise=noise, ratio=1.5).rank_privacy == pytest.approx(ranks.mean() / 3)
    zero = osia.score(f, y, f, noise_var=0.0)
    assert zero.rank_privacy == pytest.approx(1 / 3) and "no noise" in zero.warnings[0]


def test_osia_singular_noise_identifies_features_off_its_span():
    from harness.analysis.privacy.noise import FeatureNoise

    rng = np.random.default_rng(8)
    f = np.zeros((40, 3))
    f[:, 0] = rng.normal(size=40)  # the noise is fitted where the features vary: dimension 0 only
    y = np.arange(40) % 4
    noise = FeatureNoise.fit(f)
    f2 = f.copy()
    f2[:, 1] = np.arange(40)  # features that differ where the noise never goes
    z = noise.add(f2, noise.standard_draw(40, 1), 5.0)
    s = osia.score(f2, y, z, noise=noise, ratio=5.0)
    assert s.bayes_error == 0.0 and any("singular" in w for w in s.warnings)


def test_osia_through_the_cli_and_its_errors(tmp_path, capsys):
    from harness.cli import main

    f, y, _, _ = clusters(3, 10, 2, sep=1.0, seed=9)
    one = tmp_path / "one.npz"
    np.savez(one, features=f, sensitive=y)
    assert main(["privacy-score", str(one), "--estimator", "osia", "--noise-var", "0.5", "--seed", "4", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == osia.score(f, y, osia.add_isotropic_noise(f, 0.5, 4), noise_var=0.5).to_dict()
    for args, words in (([], "--noise-var"), (["--noise-var", "-1"], "noise_var"),
                        (["--noise-var", "1", "--split", "dpfe"], "--split")):
        assert main(["privacy-score", str(one), "--estimator", "osia", *args]) == 1
        assert words in capsys.readouterr().err
    with pytest.raises(UserError, match="osia"):
        score(f, y, f, y, estimator="osia")


# --------------------------------------------------------------------------------------------------
# Files, splits and the spec


@pytest.mark.parametrize("keys, args, words", [
    ({"features", "sensitive"}, [], "--split dpfe"),
    ({"train_features", "train_sensitive", "test_features", "test_sensitive"}, ["--split", "dpfe"], "drop --split"),
    ({"train_features", "train_sensitive", "test_features", "test_sensitive"}, ["--noise-var", "1"], "osia"),
    ({"features", "sensitive"}, ["--split", "thirds"], "--split"),
    ({"features", "sensitive"}, ["--split", "dpfe", "--estimator", "bayes"], "unknown estimator"),
])
def test_privacy_score_layout_errors_are_one_line(tmp_path, keys, args, words):
    xtr, ytr, xte, yte = clusters(2, 25, 2, sep=1.0, seed=10, n_test_per=5)
    arrays = {"features": xtr, "sensitive": ytr, "train_features": xtr, "train_sensitive": ytr,
              "test_features": xte, "test_sensitive": yte}
    path = tmp_path / "f.npz"
    np.savez(path, **{k: v for k, v in arrays.items() if k in keys})
    kwargs = {"split": "given", "estimator": "splitbench", "noise_var": None}
    for flag, value in zip(args[::2], args[1::2]):
        kwargs[{"--split": "split", "--estimator": "estimator", "--noise-var": "noise_var"}[flag]] = (
            float(value) if flag == "--noise-var" else value)
    with pytest.raises(UserError) as err:
        score_file(path, **kwargs)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_splitbench_on_the_dpfe_split_notes_what_it_dropped(tmp_path):
    y = np.concatenate([np.repeat([0, 1, 2], 25), np.full(5, 3)])
    x = np.random.default_rng(11).normal(size=(y.size, 3)) + y[:, None]
    path = tmp_path / "one.npz"
    np.savez(path, features=x, sensitive=y, primary=y % 2)
    out = score_file(path, split="dpfe")
    assert out["estimator"] == "splitbench" and out["split"] == "dpfe" and out["n_classes"] == 3
    assert "1 of 4 sensitive classes" in out["warnings"] and out["primary_accuracy"] is not None


@pytest.mark.parametrize("table, key", [
    ('estimator = "bayes"\ndata = "d.npz"', "[privacy].estimator"),
    ('split = "dpfe"\ncsv = "p.csv"', "[privacy].split"),
    ('split = "halves"\ndata = "d.npz"', "[privacy].split"),
])
def test_spec_privacy_estimator_and_split_are_checked(tmp_path, table, key):
    import tomllib

    from harness.config.spec import parse_spec

    (tmp_path / "d.npz").write_bytes(b"")
    (tmp_path / "p.csv").write_text("")
    text = f'[model]\nzoo = "vgg16_gender"\n[privacy]\n{table}\n'
    with pytest.raises(UserError, match=key.replace("[", r"\[").replace("]", r"\]")):
        parse_spec(tomllib.loads(text), path=tmp_path / "s.toml")
    ok = parse_spec(tomllib.loads('[model]\nzoo = "vgg16_gender"\n[privacy]\nestimator = "dpfe"\nsplit = "dpfe"\n'
                                  'data = "d.npz"\n'), path=tmp_path / "s.toml")
    assert ok.privacy["estimator"] == "dpfe" and ok.privacy["split"] == "dpfe"


# --------------------------------------------------------------------------------------------------
# The sweep: every estimator on the same noisy features, a row that says why when one cannot run


def test_sweep_scores_every_estimator_on_the_same_noisy_features():
    import torch

    from harness.analysis.privacy.sweep import COLUMNS, privacy_sweep
    from models.digits import digits_data, train_digits_cnn

    data = digits_data(0)
    model = train_digits_cnn(data["train_x"], data["train_digit"] >= 5, epochs=2)
    torch.set_num_threads(1)
    args = (model, ["conv2", "fc1"], data["test_x"], data["test_digit"] >= 5, data["test_digit"])
    kw = dict(embeddings=("simple", "reduced"), dims=8, ratios=(0, 1.0), attacker=False)
    both = privacy_sweep(*args, **kw, estimators=("splitbench", "dpfe", "osia"))
    alone = privacy_sweep(*args, **kw)
    assert list(both.columns) == list(COLUMNS) and len(both) == 2 * 2 * 2 * 3
    sb = both[both["estimator"] == "splitbench"]
    # splitbench's rows, as stored in privacy.csv, do not depend on the other estimators of the sweep.
    assert sb.to_csv(index=False) == alone.to_csv(index=False)
    dp = both[both["estimator"] == "dpfe"]
    # conv2 simple (d = 512) cannot run with ~63 features per class: the row says why, with no score.
    bad = dp[(dp["cut"] == "conv2") & (dp["embedding"] == "simple")]
    assert bad["log_rank_privacy"].isna().all() and bad["warnings"].str.contains("reduce the dimension").all()
    good = dp[dp["embedding"] == "reduced"]
    assert good["log_rank_privacy"].between(0, 1).all() and (good["split"] == "stratified").all()
    os_rows = both[both["estimator"] == "osia"]
    assert os_rows["rank_privacy"].notna().all() and (os_rows["split"] == "none").all()
    # The primary accuracy is the network's on the same noisy features: equal for every estimator.
    assert both.groupby(["cut", "embedding", "noise_ratio"])["primary_accuracy"].nunique().eq(1).all()


# --------------------------------------------------------------------------------------------------
# One estimator per merged table, recommendation and report


def two_estimator_privacy():
    from test_recommend import privacy_rows

    a = pd.DataFrame(privacy_rows()).assign(estimator="splitbench")
    b = pd.DataFrame(privacy_rows()).assign(estimator="dpfe")
    b["log_rank_privacy"] = b["log_rank_privacy"] / 2
    return pd.concat([a, b], ignore_index=True)


def test_merge_selects_one_estimator():
    from harness.analysis.table import merge_privacy
    from test_recommend import summary_rows

    summary = pd.DataFrame(summary_rows())
    priv = two_estimator_privacy()
    default = merge_privacy(summary, priv)
    chosen = merge_privacy(summary, priv, "dpfe")
    cuts = ~default["on_premise"]
    assert set(default.loc[cuts, "estimator"]) == {"splitbench"}
    assert set(chosen.loc[~chosen["on_premise"], "estimator"]) == {"dpfe"}
    assert np.allclose(chosen.loc[cuts, "log_rank_privacy"], default.loc[cuts, "log_rank_privacy"] / 2)
    assert default.loc[~cuts, "estimator"].isna().all()  # on-premise has no score, so no estimator
    with pytest.raises(UserError, match="no scores of the osia estimator"):
        merge_privacy(summary, priv, "osia")
    no_default = priv.replace({"estimator": {"splitbench": "osia"}})
    with pytest.raises(UserError, match="2 estimators") as err:
        merge_privacy(summary, no_default)
    assert "--estimator" in str(err.value)
    assert set(merge_privacy(summary, no_default, preferred="dpfe")["estimator"].dropna()) == {"dpfe"}
    legacy = pd.DataFrame(summary_rows()), pd.DataFrame(priv[priv["estimator"] == "dpfe"]).drop(columns="estimator")
    assert set(merge_privacy(*legacy)["estimator"].dropna()) == {"unspecified"}


def test_recommend_and_report_name_the_estimator(tmp_path, capsys):
    from harness.cli import main
    from harness.report import build_report
    from test_recommend import write_run

    d = write_run(tmp_path / "run")
    two_estimator_privacy().to_csv(d / "privacy.csv", index=False)
    assert main(["recommend", str(d), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["estimator"] == "splitbench" and out["choice"]["estimator"] == "splitbench"
    assert main(["recommend", str(d), "--json", "--estimator", "dpfe"]) == 0
    dp = json.loads(capsys.readouterr().out)
    assert dp["estimator"] == "dpfe" and dp["choice"]["privacy"] <= out["choice"]["privacy"] / 2 + 1e-12
    assert main(["recommend", str(d)]) == 0
    assert "splitbench estimator" in capsys.readouterr().out
    paths = build_report(d)
    page = (d / "report.html").read_text()
    assert "computed by the <b>splitbench</b> estimator" in page and "also holds scores of the dpfe" in page
    names = {p.name for p in paths}
    assert {"accuracy_privacy_splitbench.png", "accuracy_privacy_dpfe.png"} <= names  # never one series


def test_the_specs_estimator_and_split_reach_the_sweep(tmp_path):
    from pathlib import Path

    from harness.analysis.privacy.sweep import sweep_from_spec
    from harness.config.spec import load_spec

    fixtures = Path(__file__).parent / "fixtures"
    rng = np.random.default_rng(0)
    sensitive = np.arange(120) % 3
    inputs = rng.standard_normal((120, 3, 32, 32)).astype(np.float32) + sensitive[:, None, None, None] * 0.5
    np.savez(tmp_path / "inputs.npz", inputs=inputs, primary=np.arange(120) % 2, sensitive=sensitive)
    (tmp_path / "tiny_model.py").write_text((fixtures / "tiny_model.py").read_text())
    text = (fixtures / "tiny.toml").read_text().replace('embeddings = ["simple"]', 'embeddings = ["simple", "reduced"]')
    text += ('\n[split.reduced_dims]\nconv1 = 4\nconv2 = 4\n'
             '[privacy]\ndata = "inputs.npz"\nratios = [0]\nestimator = "dpfe"\nsplit = "dpfe"\n')
    (tmp_path / "tiny.toml").write_text(text)
    spec = load_spec(tmp_path / "tiny.toml")
    table = sweep_from_spec(spec, spec.privacy["data"], ratios=spec.privacy["ratios"])
    assert set(table["estimator"]) == {"dpfe"} and set(table["split"]) == {"dpfe"} and len(table) == 4
    reduced = table[table["embedding"] == "reduced"]
    assert reduced["log_rank_privacy"].between(0, 1).all() and (reduced["n_test"] == 12).all()  # 10% of 120
    simple = table[table["embedding"] == "simple"]
    assert simple["log_rank_privacy"].isna().all() and simple["warnings"].str.contains("cannot run").all()
