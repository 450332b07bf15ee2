"""Privacy scores: hand-computed cases, log-space robustness, the noise sweep, the digits demo and the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from harness.core.errors import UserError
from harness.analysis.privacy.noise import PAPER_RATIOS, FeatureNoise
from harness.analysis.privacy.sweep import noise_sweep
from harness.analysis.privacy import log_posterior, score, score_file, true_class_ranks


def uniform_log_rank(k: int) -> float:
    return float(np.mean(np.log(np.arange(1, k + 1))) / math.log(k))


def clusters(k: int, n_per: int, d: int, sep: float, seed: int = 0, n_test_per: int = 0):
    """Gaussian classes around random centres (scale ``sep``); with ``n_test_per``, a test set too."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)) * sep
    y = np.repeat(np.arange(k), n_per)
    train = (centres[y] + rng.normal(size=(y.size, d)), y)
    if not n_test_per:
        return train
    yt = np.repeat(np.arange(k), n_test_per)
    return (*train, centres[yt] + rng.normal(size=(yt.size, d)), yt)


# --------------------------------------------------------------------------------------------------
# Hand-computed values


def test_features_without_information_give_uniform_guessing_scores():
    k = 5
    rng = np.random.default_rng(1)
    xtr, xte = rng.normal(size=(500, 4)), rng.normal(size=(3000, 4))
    ytr, yte = np.arange(500) % k, rng.integers(0, k, 3000)  # labels independent of the features
    s = score(xtr, ytr, xte, yte, attacker=False)
    assert s.n_classes == k
    assert s.log_rank_privacy == pytest.approx(uniform_log_rank(k), abs=0.03)
    assert s.log_rank_privacy_uniform == pytest.approx(uniform_log_rank(k), abs=1e-12)
    assert s.bayes_error == pytest.approx(1 - 1 / k, abs=0.03)
    assert s.rank_mean == pytest.approx(0.5, abs=0.03)
    assert s.rank_privacy == pytest.approx((k + 1) / (2 * k), abs=0.03)


def test_identical_features_are_exactly_uniform_through_the_tie_rule():
    # Every posterior equal: each rank 1..K with probability 1/K, in expectation, exactly.
    k = 4
    ytr, yte = np.arange(40) % k, np.arange(12) % k
    s = score(np.zeros((40, 3)), ytr, np.zeros((12, 3)), yte, attacker=False)
    assert s.log_rank_privacy == pytest.approx(uniform_log_rank(k), abs=1e-12)
    assert s.bayes_error == pytest.approx(1 - 1 / k, abs=1e-12)
    assert s.rank_mean == pytest.approx(0.5, abs=1e-12)
    assert s.rank_std == pytest.approx(math.sqrt((k + 1) / (12 * (k - 1))), abs=1e-12)
    assert s.rank_privacy == pytest.approx((k + 1) / (2 * k), abs=1e-12)


def test_perfectly_separated_classes_are_found_first():
    k = 4
    xtr, ytr, xte, yte = clusters(k, 30, 4, sep=20.0, seed=2, n_test_per=10)
    s = score(xtr, ytr, xte, yte)
    assert s.log_rank_privacy == 0.0
    assert s.bayes_error == 0.0
    assert s.rank_privacy == pytest.approx(1 / k)
    assert s.rank_mean == 0.0 and s.rank_std == 0.0 and s.log_rank_std == 0.0
    assert s.nn1_error == 0.0
    assert s.attacker_accuracy == 1.0


def test_three_classes_by_hand():
    # One training point per class on a line: the posterior ranks classes by distance to z.
    xtr, ytr = np.array([[0.0], [2.0], [5.0]]), np.array([0, 1, 2])
    xte, yte = np.array([[0.9], [4.0], [2.2], [3.4]]), np.array([1, 0, 1, 2])
    # distances to (0, 2, 5): z=0.9 -> (0.9, 1.1, 4.1): class 1 second; z=4 -> (4, 2, 1): class 0 third;
    # z=2.2 -> class 1 first; z=3.4 -> (3.4, 1.4, 1.6): class 2 second.  Ranks 2, 3, 1, 2.
    ranks = np.array([2, 3, 1, 2])
    s = score(xtr, ytr, xte, yte, standardized=False, bandwidth=1.0, attacker=False)
    assert s.rank_privacy == pytest.approx(ranks.mean() / 3)
    assert s.log_rank_privacy == pytest.approx((2 * math.log(2) + math.log(3)) / (4 * math.log(3)))
    assert s.bayes_error == pytest.approx(0.75)
    assert s.rank_mean == pytest.approx(0.5)
    assert s.rank_std == pytest.approx(np.std(ranks) / 2)  # sqrt(0.5) / 2
    assert s.log_rank_std == pytest.approx(np.std(np.log(ranks)) / math.log(3))
    # 1-NN: z=0.9 -> class 0 (wrong), z=4 -> 2 (wrong), z=2.2 -> 1, z=3.4 -> 1 (wrong)
    assert s.nn1_error == pytest.approx(0.75)
    assert any("single training feature" in w for w in s.warnings)


def test_a_tie_is_broken_at_random_in_expectation():
    # z = 1 is as near class 0 (at 0) as class 1 (at 2): the true class 0 is first or second.
    s = score(np.array([[0.0], [2.0], [5.0]]), np.array([0, 1, 2]), np.array([[1.0]]), np.array([0]),
              standardized=False, bandwidth=1.0, attacker=False)
    assert s.rank_privacy == pytest.approx(1.5 / 3)
    assert s.bayes_error == pytest.approx(0.5)
    assert s.log_rank_privacy == pytest.approx(0.5 * math.log(2) / math.log(3))
    stats = true_class_ranks(np.array([[0.0, 0.0, -1.0, 0.0]]), np.array([1]))  # 3-way tie for first
    assert stats.rank[0] == pytest.approx(2.0)
    assert stats.p_first[0] == pytest.approx(1 / 3)
    assert stats.log_rank[0] == pytest.approx(math.log(6) / 3)


def test_priors_break_equal_densities_toward_the_bigger_class():
    # Identical features: the posterior is the prior n_s / N, so the bigger class ranks first.
    ytr = np.array([0] * 30 + [1] * 10)
    s = score(np.zeros((40, 2)), ytr, np.zeros((2, 2)), np.array([0, 1]), attacker=False)
    assert s.bayes_error == pytest.approx(0.5)  # class 0 first (right), class 1 second (wrong)
    assert s.rank_privacy == pytest.approx((1 + 2) / 2 / 2)


# --------------------------------------------------------------------------------------------------
# Log space, speed-relevant shapes, determinism


def test_no_underflow_in_d512_with_far_apart_features():
    rng = np.random.default_rng(3)
    k, d = 5, 512
    centres = np.zeros((k, d))
    centres[:, 0] = 100.0 * np.arange(k)
    ytr = np.repeat(np.arange(k), 8)
    xtr = centres[ytr] + 0.01 * rng.normal(size=(ytr.size, d))
    yte = np.arange(k)
    # Each test point is 30 away from its own class and >= 100 from the others; with h = 0.1 every
    # kernel value is below exp(-45000): zero in float64 unless the sum is taken in log space.
    offset = np.zeros(d)
    offset[1] = 30.0
    xte = centres[yte] + offset
    classes, log_post, nn1 = log_posterior(xtr, ytr, xte, h=0.1)
    assert np.isfinite(log_post).all()
    assert (log_post.argmax(axis=1) == yte).all()
    np.testing.assert_allclose(np.exp(log_post).sum(axis=1), 1.0)
    assert (nn1 == yte).all()
    s = score(xtr, ytr, xte, yte, standardized=False, bandwidth=0.1, attacker=False)
    assert s.bayes_error == 0.0 and s.log_rank_privacy == 0.0
    # Second-ranked classes are still ordered correctly (not all tied at -inf): move z toward class 1.
    xte2 = centres[[0]] + 0.0
    xte2[0, 0] = 40.0  # 40 from class 0, 60 from class 1, 160 from class 2
    _, lp, _ = log_posterior(xtr, ytr, xte2, h=0.1)
    assert np.argsort(-lp[0])[:3].tolist() == [0, 1, 2]
    assert np.isfinite(lp).all()


def test_score_is_deterministic_for_a_seed():
    xtr, ytr, xte, yte = clusters(6, 40, 32, sep=0.5, seed=4, n_test_per=15)
    a = score(xtr, ytr, xte, yte, seed=7).to_dict()
    b = score(xtr, ytr, xte, yte, seed=7).to_dict()
    assert a == b
    assert set(a) >= {"n_classes", "rank_privacy", "log_rank_privacy", "bayes_error", "rank_mean", "rank_std",
                      "log_rank_std", "nn1_error", "attacker_accuracy", "primary_accuracy", "n_train", "n_test",
                      "dim", "bandwidth"}


def test_bandwidth_rules_and_bad_bandwidth():
    xtr, ytr = clusters(3, 20, 8, sep=1.0, seed=6)
    scott = score(xtr, ytr, xtr, ytr, attacker=False).bandwidth
    silverman = score(xtr, ytr, xtr, ytr, bandwidth="silverman", attacker=False).bandwidth
    assert 0 < silverman < scott  # Silverman's factor is the smaller one for d > 0
    assert score(xtr, ytr, xtr, ytr, bandwidth=0.7, attacker=False).bandwidth == 0.7
    with pytest.raises(UserError, match="bandwidth"):
        score(xtr, ytr, xtr, ytr, bandwidth="wide")
    with pytest.raises(UserError, match="bandwidth"):
        score(xtr, ytr, xtr, ytr, bandwidth=-1.0)


def test_primary_labels_give_a_primary_accuracy():
    xtr, ytr = clusters(4, 30, 5, sep=20.0, seed=7)
    s = score(xtr, ytr, xtr, ytr, train_primary=ytr >= 2, test_primary=ytr >= 2)
    assert s.primary_accuracy == 1.0
    assert score(xtr, ytr, xtr, ytr, attacker=False).primary_accuracy is None


# --------------------------------------------------------------------------------------------------
# score_file and the CLI


def write_npz(path, **override):
    xtr, ytr, xte, yte = clusters(3, 20, 6, sep=3.0, seed=8, n_test_per=10)
    arrays = {"train_features": xtr, "train_sensitive": ytr, "test_features": xte, "test_sensitive": yte}
    arrays.update(override)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


@pytest.mark.parametrize("override, key", [
    ({"test_sensitive": None}, "test_sensitive"),
    ({"train_sensitive": np.zeros(59, dtype=int)}, "train_sensitive"),
    ({"train_sensitive": np.zeros(60, dtype=int)}, "train_sensitive"),  # a single class
    ({"test_features": np.full((30, 6), np.nan)}, "test_features"),
    ({"test_features": np.zeros((30, 5))}, "test_features"),
    ({"test_sensitive": np.full(30, 7)}, "test_sensitive"),  # a class never seen in training
    ({"train_primary": np.zeros(60, dtype=int)}, "test_primary"),
])
def test_score_file_errors_name_the_key(tmp_path, override, key):
    path = write_npz(tmp_path / "f.npz", **override)
    with pytest.raises(UserError) as err:
        score_file(path)
    message = str(err.value)
    assert key in message and "\n" not in message and str(path) in message


def test_score_file_not_an_npz(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        score_file(tmp_path / "missing.npz")
    bad = tmp_path / "bad.npz"
    bad.write_text("not a zip")
    with pytest.raises(UserError, match="not a readable"):
        score_file(bad)


def test_cli_privacy_score_json(tmp_path, capsys):
    from harness.cli import main

    path = write_npz(tmp_path / "f.npz", train_primary=np.arange(60) % 2, test_primary=np.arange(30) % 2)
    assert main(["privacy-score", str(path), "--json", "--seed", "3"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == score_file(path, seed=3)
    assert out["n_classes"] == 3 and out["n_train"] == 60 and out["n_test"] == 30 and out["dim"] == 6
    assert 0 <= out["log_rank_privacy"] <= 1 and out["primary_accuracy"] is not None
    assert main(["privacy-score", str(path)]) == 0
    assert "log_rank_privacy" in capsys.readouterr().out


def test_cli_privacy_score_error_is_one_line(tmp_path, capsys):
    from harness.cli import main

    path = write_npz(tmp_path / "f.npz", train_features=None)
    assert main(["privacy-score", str(path), "--json"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "train_features" in err and err.count("\n") == 1


# --------------------------------------------------------------------------------------------------
# The noise sweep (DPFE Procedure 2)


def test_noise_has_the_scaled_covariance_and_spares_dead_dimensions():
    rng = np.random.default_rng(10)
    x = rng.normal(size=(4000, 3)) @ np.array([[2.0, 0.5, 0.0], [0.0, 1.0, 0.3], [0.0, 0.0, 0.5]])
    x = np.hstack([x, np.zeros((4000, 1))])  # a dead ReLU channel
    noise = FeatureNoise.fit(x)
    # 20,000 draws: the sample covariance's entries (about 10) have a sampling std of about 0.1, so the
    # tolerance below is about 6 sigma: the test checks the distribution, not one lucky draw.
    n = noise.noise(noise.standard_draw(20_000, 0), 2.5)
    np.testing.assert_allclose(np.cov(n, rowvar=False), 2.5 * np.cov(x, rowvar=False), atol=0.15, rtol=0.05)
    z = noise.standard_draw(len(x), 0)
    assert (n[:, 3] == 0).all()
    assert np.array_equal(noise.add(x, z, 0.0), x)


def test_noise_sweep_ratio_zero_is_no_noise_and_privacy_grows_with_the_ratio():
    xtr, ytr, xte, yte = clusters(5, 40, 8, sep=1.5, seed=11, n_test_per=20)
    rows = noise_sweep(xtr, ytr, xte, yte, ratios=(0, 0.5, 2, 8), seed=1)
    assert [r["noise_ratio"] for r in rows] == [0, 0.5, 2, 8]
    clean = score(xtr, ytr, xte, yte, seed=1).to_dict()
    assert {k: v for k, v in rows[0].items() if k in clean} == {**clean, "primary_accuracy": None}
    lrp = [r["log_rank_privacy"] for r in rows]
    acc = [r["attacker_accuracy"] for r in rows]
    assert lrp == sorted(lrp) and lrp[-1] > lrp[0] + 0.2, lrp
    assert acc[-1] < acc[0] - 0.2, acc
    assert rows == noise_sweep(xtr, ytr, xte, yte, ratios=(0, 0.5, 2, 8), seed=1)  # deterministic


def test_noise_sweep_calls_the_primary_accuracy_on_the_noisy_test_features():
    xtr, ytr, xte, yte = clusters(3, 20, 4, sep=5.0, seed=13, n_test_per=10)
    seen = []
    rows = noise_sweep(xtr, ytr, xte, yte, ratios=(0, 1), attacker=False,
                       primary_accuracy=lambda f: seen.append(f.copy()) or 0.5)
    assert np.array_equal(seen[0], xte) and not np.array_equal(seen[1], xte)
    assert [r["primary_accuracy"] for r in rows] == [0.5, 0.5]


def test_bad_ratios_are_refused():
    xtr, ytr = clusters(3, 10, 2, sep=1.0)
    with pytest.raises(UserError, match="ratio"):
        noise_sweep(xtr, ytr, xtr, ytr, ratios=(0, -1))
    assert PAPER_RATIOS[0] == 0 and PAPER_RATIOS[-1] == 8 and len(PAPER_RATIOS) == 13


# --------------------------------------------------------------------------------------------------
# The network sweep, the digits demo, the cloud part


def test_privacy_sweep_errors():
    import torch

    from harness.analysis.privacy.sweep import privacy_sweep
    from models.digits import build_digits_cnn

    model = build_digits_cnn()
    x = torch.zeros(20, 1, 8, 8)
    y = np.arange(20) % 2
    with pytest.raises(UserError, match="dims"):
        privacy_sweep(model, ["conv3"], x, y, y, embeddings=["reduced"])
    with pytest.raises(UserError, match="sensitive"):
        privacy_sweep(model, ["conv3"], x, y, y[:10])
    with pytest.raises(UserError, match="embedding"):
        privacy_sweep(model, ["conv3"], x, y, y, embeddings=["tiny"])


def test_digits_demo_reduced(tmp_path):
    import pandas as pd

    from harness.demo import DIGITS_CUTS, digits_demo
    from harness.analysis.privacy.sweep import COLUMNS

    table = digits_demo(tmp_path, ratios=(0, 2.5), epochs=6)
    assert list(table.columns) == list(COLUMNS)
    assert len(table) == len(DIGITS_CUTS) * 2 * 2
    expected = {(c, e, r) for c in DIGITS_CUTS for e in ("simple", "reduced") for r in (0.0, 2.5)}
    assert set(zip(table["cut"], table["embedding"], table["noise_ratio"])) == expected
    assert (table["model"] == "digits-cnn").all() and (table["n_classes"] == 10).all()
    for col in ("primary_accuracy", "rank_privacy", "log_rank_privacy", "bayes_error", "rank_mean", "nn1_error",
                "attacker_accuracy"):
        assert table[col].between(0, 1).all(), col
    clean = table[table["noise_ratio"] == 0]
    assert (clean["primary_accuracy"] > 0.8).all()  # the CNN learned "digit >= 5"
    # Noise adds privacy at every cut and embedding (the papers' trend; r = 2.5 is a lot of noise).
    wide = table.pivot_table(index=["cut", "embedding"], columns="noise_ratio", values="log_rank_privacy")
    assert (wide[2.5] > wide[0.0]).all()
    on_disk = pd.read_csv(tmp_path / "privacy.csv")
    assert len(on_disk) == len(table) and list(on_disk.columns) == list(COLUMNS)


def test_time_cloud_part():
    import torch

    from harness.measure.cloud import time_cloud_part
    from harness.split.configurations import split_at
    from models.digits import build_digits_cnn

    phone, rest = split_at(build_digits_cnn(), "conv2")
    before = torch.get_num_threads()
    result = time_cloud_part(rest, phone(torch.zeros(4, 1, 8, 8)), runs=5)
    assert torch.get_num_threads() == before
    assert len(result["samples_ms"]) == 5 and result["cloud_ms_median"] > 0 and result["batch"] == 4
    assert result["threads"] >= 1
