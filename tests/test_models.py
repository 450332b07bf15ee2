"""The model zoo and the splitter: every cut of every zoo model splits into a phone part and a rest
that together compute the whole model; the reduced embedding; user models; the cost counter."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch

import models
from harness.split.configurations import (build_parts, configurations, load_model, reduce_with_pca, split_at)
from harness.split.costs import count_costs, count_macs, count_params
from harness.core.errors import UserError
from harness.config.spec import load_spec

FIXTURES = Path(__file__).parent / "fixtures"

# Inputs small enough for a fast suite where the architecture allows it (VGG-16's adaptive pool,
# the global pools of moon_tiny and ResNet-18). VGG-S has a fixed 6x6 pool5, so it keeps 224x224.
SMALL_INPUT = {
    "vgg16_gender": (1, 3, 32, 32),
    "activity_mtcnn": (1, 12, 128),
    "vggs_emotion": (1, 3, 224, 224),
    "moon_tiny": (1, 3, 66, 54),
    "resnet18_facemix": (1, 3, 64, 64),
}
OUTPUTS = {"vgg16_gender": 2, "activity_mtcnn": 4, "vggs_emotion": 7, "moon_tiny": 40, "resnet18_facemix": 40}
ZOO_CUTS = [(name, cut) for name, entry in models.zoo().items() for cut in entry.cuts]


@functools.lru_cache(maxsize=None)
def built(name: str) -> torch.nn.Module:
    """Each zoo model built once per session, seeded like the harness does."""
    torch.manual_seed(0)
    return models.get(name).build()


@functools.lru_cache(maxsize=None)
def whole_output(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(*SMALL_INPUT[name], generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return x, built(name)(x)


def test_zoo_table_matches_the_tests():
    assert set(models.zoo()) == set(SMALL_INPUT) == set(OUTPUTS)


@pytest.mark.parametrize("name", list(models.zoo()))
def test_zoo_model_is_in_eval_mode_and_names_its_cuts(name):
    module = built(name)
    assert not module.training and not any(m.training for m in module.modules())
    names = {n for n, _ in module.named_modules()}
    assert set(models.get(name).cuts) <= names


@pytest.mark.parametrize("name,cut", ZOO_CUTS, ids=[f"{n}-{c}" for n, c in ZOO_CUTS])
def test_phone_then_rest_equals_whole_model(name, cut):
    module = built(name)
    x, expected = whole_output(name)
    captured = {}
    hook = dict(module.named_modules())[cut].register_forward_hook(lambda m, i, o: captured.update(out=o))
    try:
        with torch.no_grad():
            module(x)
    finally:
        hook.remove()
    phone, rest = split_at(module, cut)
    with torch.no_grad():
        feature = phone(x)
        out = rest(feature)
    # The phone part ends exactly at the cut module's output (ReLU/BN included in the block).
    torch.testing.assert_close(feature, captured["out"], rtol=0, atol=0)
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6 * float(expected.abs().max()))
    assert count_params(phone) < count_params(module)


@pytest.mark.parametrize("name", list(models.zoo()))
def test_full_model_output_shape_at_paper_size(name):
    entry = models.get(name)
    # Counted on the meta device: shapes at the papers' input size without the arithmetic.
    macs, out = count_macs(built(name), torch.zeros(entry.input_shape))
    assert tuple(out.shape) == (1, OUTPUTS[name])
    assert macs > 0


def test_feature_shapes_at_paper_size():
    expected = {
        ("vgg16_gender", "conv5_3"): (1, 512, 14, 14),
        ("activity_mtcnn", "conv4"): (1, 128, 8),
        ("activity_mtcnn", "fc2"): (1, 128),
        ("vggs_emotion", "conv5"): (1, 512, 18, 18),
        ("moon_tiny", "conv4_2"): (1, 16, 31, 26),  # the 1x1 conv with pad 1 grows the map by 2
        ("moon_tiny", "conv8"): (1, 1000, 18, 17),
        ("resnet18_facemix", "maxpool"): (1, 64, 56, 56),
    }
    for (name, cut), shape in expected.items():
        phone, _ = split_at(built(name), cut)
        costs = count_costs(phone, built(name), torch.zeros(models.get(name).input_shape))
        assert costs.upload_shape == shape, (name, cut)
        assert costs.upload_bytes == 4 * torch.Size(shape).numel()


@pytest.mark.parametrize("name", list(models.zoo()))
def test_reduced_embedding(name):
    entry = models.get(name)
    cut = entry.cuts[-1]
    k = 3  # small k, few calibration samples: the papers' k change nothing in what is checked here
    module = built(name)
    x, _ = whole_output(name)
    phone, rest = split_at(module, cut)
    calib = torch.randn(k + 2, *SMALL_INPUT[name][1:], generator=torch.Generator().manual_seed(2))
    phone_r, rest_r, info = reduce_with_pca(phone, rest, calib, k, seed=0)
    assert 0 < info["explained_variance_ratio"] <= 1 + 1e-6
    with torch.no_grad():
        z = phone_r(x)
        assert z.shape == (1, k)
        feats = phone(calib).flatten(1)
        feature = phone(x)
        w = phone_r.pca.weight  # (k, d): orthonormal principal axes
        torch.testing.assert_close(w @ w.T, torch.eye(k), atol=1e-4, rtol=0)
        mean = feats.mean(0)
        torch.testing.assert_close(z, (feature.flatten(1) - mean) @ w.T, rtol=1e-4,
                                   atol=1e-4 * float(feature.abs().max()))
        # The cloud reconstructs W^T z + mean, reshapes it to the cut's shape and runs the rest.
        reconstruction = (z @ w + mean).reshape(feature.shape)
        expected = rest(reconstruction)
        torch.testing.assert_close(rest_r(z), expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))


def test_resnet_cut_inside_a_block_is_refused():
    with pytest.raises(UserError, match="skip connection") as err:
        split_at(built("resnet18_facemix"), "layer1.0.conv1")
    assert "\n" not in str(err.value)


def test_unknown_cut_of_split_at_lists_valid_names():
    with pytest.raises(UserError, match="valid cuts: .*conv5_1") as err:
        split_at(built("vgg16_gender"), "conv9_9")
    assert "\n" not in str(err.value)


def test_vgg16_imagenet_counts_match_published_figures():
    from models.vgg16 import build_vgg16

    torch.manual_seed(0)
    vgg = build_vgg16()
    costs = count_costs(vgg, vgg, torch.zeros(1, 3, 224, 224))
    assert costs.params == pytest.approx(138.36e6, rel=0.005)
    assert costs.macs == pytest.approx(15.47e9, rel=0.005)
    assert costs.flops == 2 * costs.macs
    assert costs.mac_share == 1.0 and costs.upload_shape == (1, 1000)
    # The 2-class gender head is smaller by (1000 - 2) * 4097 parameters.
    assert count_params(built("vgg16_gender")) == costs.params - 998 * 4097


def test_resnet18_facemix_counts_match_the_paper():
    """FaceMix: 11.21M params in all; edge FLOPs 0.09/0.28/0.46 of 1.50 G for N_pre = 1, 2, 3."""
    module = built("resnet18_facemix")
    assert count_params(module) == pytest.approx(11.21e6, rel=0.005)
    x = torch.zeros(models.get("resnet18_facemix").input_shape)
    full, _ = count_macs(module, x)
    shares = [count_costs(split_at(module, cut)[0], module, x, full_macs=full).mac_share
              for cut in models.get("resnet18_facemix").cuts]
    assert shares == pytest.approx([0.09 / 1.50, 0.28 / 1.50, 0.46 / 1.50], abs=0.015)


def test_costs_to_dict_is_plain():
    phone, _ = split_at(built("activity_mtcnn"), "fc1")
    d = count_costs(phone, built("activity_mtcnn"), torch.zeros(1, 12, 128)).to_dict()
    assert d["upload_shape"] == [1, 256] and d["upload_bytes"] == 1024
    assert set(d) == {"params", "macs", "flops", "upload_shape", "upload_bytes", "full_macs", "mac_share"}
    assert 0 < d["mac_share"] < 1


def _user_spec(tmp_path: Path, cuts: list[str], extra: str = "") -> Path:
    spec = tmp_path / "user.toml"
    spec.write_text(f'[model]\nsource = "{FIXTURES / "user_model.py"}:make_model"\n'
                    f"[split]\ncuts = {cuts!r}\n{extra}".replace("'", '"'))
    return spec


def test_user_model_splits_at_a_named_module(tmp_path):
    spec = load_spec(_user_spec(tmp_path, ["features.2", "features.4"]))
    loaded = load_model(spec)
    names = tuple(n for n, _ in loaded.module.named_modules() if n)
    configs = configurations(spec, available_cuts=names)
    assert [c.name for c in configs] == ["features.2-simple", "features.4-simple", "full"]
    with torch.no_grad():
        expected = loaded.module(loaded.example_input)
        for config in configs[:-1]:
            phone, rest, _ = build_parts(loaded, config, spec)
            torch.testing.assert_close(rest(phone(loaded.example_input)), expected, rtol=0, atol=0)
    phone, _, _ = build_parts(loaded, configs[0], spec)
    assert tuple(phone(loaded.example_input).shape) == (1, 8, 8, 8)


def test_user_model_unknown_cut_lists_valid_names(tmp_path):
    spec = load_spec(_user_spec(tmp_path, ["features.9"]))
    with pytest.raises(UserError, match=r"\[split\]\.cuts.*features\.9.*valid cuts: features, features\.0") as err:
        load_model(spec)
    assert "\n" not in str(err.value) and "classifier" in str(err.value)


def test_caffe_lrn_matches_torch_local_response_norm():
    import torch.nn.functional as F

    from models.vggs import CaffeLRN

    lrn = CaffeLRN(size=5, alpha=0.0005, beta=0.75, k=2.0)
    for channels in (1, 4, 96):
        x = torch.randn(2, channels, 5, 7, generator=torch.Generator().manual_seed(channels)) * 30
        expected = F.local_response_norm(x, 5, alpha=0.0005, beta=0.75, k=2.0)
        torch.testing.assert_close(lrn(x), expected, rtol=1e-5, atol=1e-5)
