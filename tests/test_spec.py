"""Spec validation: every mistake is one UserError line naming the key, and through the CLI one
`error:` line on stderr with exit code 1. Also `splitbench models` and user weights files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import models
from harness.cli import main
from harness.split.configurations import configurations, load_model
from harness.core.errors import UserError
from harness.config.spec import load_spec

FIXTURES = Path(__file__).parent / "fixtures"
USER_SOURCE = f'source = "{FIXTURES / "user_model.py"}:make_model"'

# (case id, spec text, the key the one-line message must name)
BAD_SPECS = [
    ("unknown-top-key", 'nmae = "x"\n[model]\nzoo = "activity_mtcnn"\n', "nmae"),
    ("unknown-key", '[model]\nzoo = "activity_mtcnn"\nsed = 1\n', "[model].sed"),
    ("unknown-table", '[model]\nzoo = "activity_mtcnn"\n[modle]\nzoo = "x"\n', "[modle]"),
    ("unknown-model", '[model]\nzoo = "vgg17"\n', "[model].zoo"),
    ("unknown-cut", '[model]\nzoo = "activity_mtcnn"\n[split]\ncuts = ["conv9"]\n', "[split].cuts"),
    ("unknown-embedding", '[model]\nzoo = "activity_mtcnn"\n[split]\nembeddings = ["tiny"]\n', "[split].embeddings"),
    ("unknown-backend", '[model]\nzoo = "activity_mtcnn"\n[export]\nbackends = ["tensorrt"]\n', "[export].backends"),
    ("wrong-type", '[model]\nzoo = "activity_mtcnn"\nseed = "zero"\n', "[model].seed"),
    ("wrong-type-list", '[model]\nzoo = "activity_mtcnn"\n[split]\ncuts = "conv4"\n', "[split].cuts"),
    ("wrong-type-bool", '[model]\nzoo = "activity_mtcnn"\n[run]\nruns = true\n', "[run].runs"),
    ("bad-dim", '[model]\nzoo = "activity_mtcnn"\n[split]\nreduced_dims = { conv4 = 0 }\n', "[split].reduced_dims.conv4"),
    ("missing-weights", '[model]\nzoo = "activity_mtcnn"\nweights = "nowhere.pt"\n', "[model].weights"),
    ("missing-source", '[model]\nsource = "nowhere.py:make"\n', "[model].source"),
    ("zoo-and-source", f'[model]\nzoo = "activity_mtcnn"\n{USER_SOURCE}\n', "[model]"),
    ("reduced-without-dims", f'[model]\n{USER_SOURCE}\n[split]\ncuts = ["features.2"]\n'
                             'embeddings = ["simple", "reduced"]\n', "[split].reduced_dims.features.2"),
]


def _write(tmp_path: Path, text: str, name: str = "spec.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("text,key", [c[1:] for c in BAD_SPECS], ids=[c[0] for c in BAD_SPECS])
def test_bad_spec_is_one_line_naming_the_key(tmp_path, text, key):
    path = _write(tmp_path, text)
    with pytest.raises(UserError) as err:
        configurations(load_spec(path))  # validation before any model is built
    message = str(err.value)
    assert key in message
    assert "\n" not in message


def test_good_spec_gives_the_papers_configurations(tmp_path):
    path = _write(tmp_path, '[model]\nzoo = "vgg16_gender"\n[split]\nembeddings = ["simple", "reduced"]\n')
    names = [c.name for c in configurations(load_spec(path))]
    assert len(names) == 7 and names[-1] == "full"  # the papers' seven configurations
    assert [c.reduced_dim for c in configurations(load_spec(path)) if c.embedding == "reduced"] == [8, 6, 4]


@pytest.mark.parametrize("case", ["unknown-key", "unknown-model", "unknown-cut", "wrong-type", "missing-weights"])
def test_cli_prints_one_error_line_and_exits_1(tmp_path, capsys, case):
    text, key = {c[0]: c[1:] for c in BAD_SPECS}[case]
    path = _write(tmp_path, text)
    code = main(["export", str(path), "--json"])
    captured = capsys.readouterr()
    assert code == 1
    assert captured.err.startswith("error: ") and captured.err.count("\n") == 1
    assert key in captured.err and "Traceback" not in captured.err
    assert captured.out == ""


def test_cli_script_reports_a_bad_spec_without_traceback(tmp_path):
    path = _write(tmp_path, '[model]\nzoo = "vgg17"\n')
    script = Path(sys.executable).with_name("splitbench")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "harness.cli"]
    proc = subprocess.run([*cmd, "export", str(path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "[model].zoo" in lines[0]


def test_missing_spec_file(capsys, tmp_path):
    assert main(["export", str(tmp_path / "absent.toml")]) == 1
    assert capsys.readouterr().err.startswith("error: spec file not found")


def test_models_command_lists_the_zoo(capsys, monkeypatch):
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == list(models.zoo())
    assert {r["name"]: tuple(r["cuts"]) for r in rows} == {n: e.cuts for n, e in models.zoo().items()}
    monkeypatch.setenv("COLUMNS", "250")  # rich wraps long cells in a narrow console
    assert main(["models"]) == 0
    table = capsys.readouterr().out
    for name in models.zoo():
        assert name in table


def _activity_state(seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return models.get("activity_mtcnn").build().state_dict()


def test_weights_file_is_loaded(tmp_path):
    state = _activity_state(123)
    torch.save(state, tmp_path / "w.pt")
    spec = load_spec(_write(tmp_path, '[model]\nzoo = "activity_mtcnn"\nweights = "w.pt"\n'))
    loaded = load_model(spec)
    assert loaded.weights_id.startswith("file:")
    for key, value in loaded.module.state_dict().items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0)
    assert not loaded.module.training
    # Without the file the seed's weights are used, which differ.
    seeded = load_model(load_spec(_write(tmp_path, '[model]\nzoo = "activity_mtcnn"\n', "seeded.toml")))
    assert not torch.equal(seeded.module.conv1[0].weight, state["conv1.0.weight"])


@pytest.mark.parametrize("damage", ["missing-key", "wrong-shape", "not-a-state-dict", "not-torch"])
def test_mismatching_weights_are_one_clear_error(tmp_path, damage):
    state = _activity_state(123)
    path = tmp_path / "w.pt"
    if damage == "missing-key":
        del state["head.weight"]
        torch.save(state, path)
    elif damage == "wrong-shape":
        state["head.weight"] = torch.zeros(7, 128)
        torch.save(state, path)
    elif damage == "not-a-state-dict":
        torch.save([1, 2, 3], path)
    else:
        path.write_text("not a torch file\n")
    spec = load_spec(_write(tmp_path, '[model]\nzoo = "activity_mtcnn"\nweights = "w.pt"\n'))
    with pytest.raises(UserError) as err:
        load_model(spec)
    message = str(err.value)
    assert message.startswith("[model].weights: ") and "\n" not in message
    if damage in ("missing-key", "wrong-shape"):
        assert "head.weight" in message

