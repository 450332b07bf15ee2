"""A model the spec cannot use is one line and exit 1, before any export, never a traceback:

- an ``[model].input_shape`` the model cannot take (``[1, 3, 7, 7]`` on the tiny CNN: its Linear head
  wants 16x16x16 features) names the shape, the model, the layer that failed and the shape it was built
  for (it was a RuntimeError from the MAC counter, printed twice, exit 70);
- a cut whose module returns a tuple (a pair, an ``nn.LSTM``'s (output, (h, c))), or a model that returns
  two heads, says the phone part must upload a single tensor (it was an AttributeError in the export).

Through ``run --resume`` as well: every file already in the results directory is left as it was.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harness.cli import main
from harness.split.configurations import check_forward, load_model
from harness.core.errors import UserError
from harness.config.spec import load_spec

FIXTURES = Path(__file__).parent / "fixtures"


def _tiny_with(tmp_path: Path, input_shape: str) -> Path:
    shutil.copy(FIXTURES / "tiny_model.py", tmp_path / "tiny_model.py")
    text = (FIXTURES / "tiny.toml").read_text()
    text = text.replace("seed = 0\n", f"seed = 0\ninput_shape = {input_shape}\n", 1)
    text = text.replace("[export]\n", '[export]\ncache_dir = "cache"\n', 1)
    path = tmp_path / "tiny.toml"
    path.write_text(text)
    return path


def _tuple_spec(tmp_path: Path, factory: str, cut: str) -> Path:
    path = tmp_path / f"{factory}.toml"
    path.write_text(f'[model]\nsource = "{FIXTURES / "tuple_model.py"}:{factory}"\n[split]\ncuts = ["{cut}"]\n'
                    f'[export]\nbackends = ["onnx"]\ncache_dir = "{tmp_path / "cache"}"\n')
    return path


def _one_line(capfd) -> str:
    out, err = capfd.readouterr()
    assert "Traceback" not in err and "internal error" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert err.count("\n") == 1, repr(err)  # nothing else on stderr, not even a blank line
    return lines[0]


@pytest.mark.parametrize("json_out", [False, True], ids=["table", "json"])
def test_an_input_shape_the_model_cannot_take_is_one_line(tmp_path, capfd, json_out):
    spec = _tiny_with(tmp_path, "[1, 3, 7, 7]")
    assert main(["export", str(spec), *(["--json"] if json_out else [])]) == 1
    line = _one_line(capfd)
    assert "[model].input_shape [1, 3, 7, 7]" in line and "tiny_model:build" in line
    assert "'head.1' (Linear)" in line  # the layer where it failed
    assert "built for [1, 3, 32, 32]" in line  # what to give instead
    cache = tmp_path / "cache"
    assert not cache.exists() or not [p for p in cache.iterdir() if len(p.name) == 64]  # nothing exported


def test_a_zoo_model_names_its_own_input_shape(tmp_path, capfd):
    spec = tmp_path / "zoo.toml"
    spec.write_text(f'[model]\nzoo = "activity_mtcnn"\ninput_shape = [1, 5, 128]\n[split]\ncuts = ["conv4"]\n'
                    f'[export]\nbackends = ["onnx"]\ncache_dir = "{tmp_path / "cache"}"\n')
    assert main(["export", str(spec)]) == 1
    line = _one_line(capfd)
    assert "[model].input_shape [1, 5, 128]" in line and "built for [1, 12, 128]" in line


@pytest.mark.parametrize("factory,cut,kind", [("build", "pair", "a tuple of 2"),
                                              ("build_lstm", "lstm", "a tuple of 2")])
def test_a_cut_that_returns_a_tuple_is_one_line(tmp_path, capfd, factory, cut, kind):
    assert main(["export", str(_tuple_spec(tmp_path, factory, cut))]) == 1
    line = _one_line(capfd)
    assert f"[split].cuts: {cut!r} returns {kind}, not one tensor" in line
    assert "single tensor" in line and "choose another cut" in line


def test_a_model_that_returns_two_heads_is_one_line(tmp_path, capfd):
    assert main(["export", str(_tuple_spec(tmp_path, "build_two_heads", "body"))]) == 1
    line = _one_line(capfd)
    assert "[model]:" in line and "returns a tuple of 2, not one tensor" in line and "forward()" in line


def test_the_check_passes_on_good_models_and_falls_back_from_meta(tmp_path):
    """The tiny CNN passes; a model whose forward reads a value (no meta kernel for .item()) is run for
    real and passes too; the good input shape passes."""
    check_forward(load_model(spec := load_spec(FIXTURES / "tiny.toml")), spec)
    item = load_spec(_tuple_spec(tmp_path, "build_item", "body"))
    check_forward(load_model(item), item)
    good = load_spec(_tiny_with(tmp_path, "[1, 3, 32, 32]"))
    check_forward(load_model(good), good)
    with pytest.raises(UserError, match=r"^\S+: \[model\]\.input_shape \[1, 3, 7, 7\]"):
        bad = load_spec(_tiny_with(tmp_path, "[1, 3, 7, 7]"))
        check_forward(load_model(bad), bad)


def test_run_resume_with_a_model_it_cannot_use_changes_nothing_on_disk(tmp_path, capfd, monkeypatch):
    monkeypatch.setenv("SPLITBENCH_LEASE_DIR", str(tmp_path / "leases"))  # not another run's device lease
    out = tmp_path / "out"
    (out / "records").mkdir(parents=True)
    (out / "records" / "kept.json").write_text('{"identity": {"device_id": "d"}}\n')
    (out / "summary.csv").write_text("config,backend,status\nconv1-simple,onnx,ok\n")
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    for spec in (_tiny_with(tmp_path, "[1, 3, 7, 7]"), _tuple_spec(tmp_path, "build", "pair")):
        assert main(["run", str(spec), "--out", str(out), "--resume"]) == 1
        line = _one_line(capfd)
        assert "input_shape" in line or "single tensor" in line
        after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
        assert {k: v for k, v in after.items() if k in before} == before
        assert not [k for k in after if k not in before and k.parts[0] == "records"]
