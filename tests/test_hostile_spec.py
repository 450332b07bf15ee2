"""Hostile numbers and types in a spec, driven from the spec's own field table (``harness.config.spec.SCHEMA``), so a
field added later is covered without touching this file.

Every numeric field (a number, or each item of a list or table of numbers) is given nan, inf, -inf, a
negative number, zero and huge numbers; every other field the wrong type. Through the CLI, as a user runs
it, each spec either ends in exit 1 with one ``error:`` line naming the key (and, for a number, its valid
range), or is accepted with the value in that documented range. Nothing is exported: the stage after the
validation is replaced by a recorder.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from harness.export import stage as export_stage
from harness.cli import main
from harness.config.spec import DEVICE_TABLES, SCHEMA, Field, load_spec

BASE = {"model": {"zoo": "activity_mtcnn"}}  # the smallest valid spec
HUGE_INT = 2**63 - 1
HOSTILE_NUMBERS = (math.nan, math.inf, -math.inf, -1, -1.5, 0, 0.0, 1e300, 10**30, HUGE_INT)
WRONG_TYPES = (5, 1.5, True, "text", ["a"], {"k": 1})


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v == math.inf else "-inf" if v == -math.inf else repr(v))
    if isinstance(v, (int,)):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }"


def _spec_text(table: str, key: str, value) -> str:
    data = {t: dict(body) for t, body in BASE.items()}
    top = {}
    if table:
        data.setdefault(table, {})[key] = value
    else:
        top[key] = value
    lines = [f"{k} = {_toml_value(v)}" for k, v in top.items()]
    for t, body in data.items():
        lines.append(f"[{t}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in body.items()]
    return "\n".join(lines) + "\n"


def _where(table: str, key: str) -> str:
    return f"[{table}].{key}" if table else key


def _as_field_value(field: Field, number):
    """A number placed where the field takes it: itself, the item of a list, the value of a table."""
    if field.types is list:
        return [number]
    if field.types is dict:
        return {"conv4": number}
    return number


def _cases():
    for table, fields in SCHEMA.items():
        for key, field in fields.items():
            if field.range is not None:
                for n in HOSTILE_NUMBERS:
                    yield pytest.param(table, key, _as_field_value(field, n), id=f"{_where(table, key)}={n!r}")
            else:
                for v in WRONG_TYPES:
                    if not isinstance(v, field.types) or isinstance(v, bool):
                        yield pytest.param(table, key, v, id=f"{_where(table, key)}={v!r}")


@pytest.fixture
def accepted(monkeypatch):
    """Replace the export after validation: what the CLI accepted, and no work done."""
    got = []

    def record(spec, **_kw):
        got.append(spec)
        return []

    monkeypatch.setattr(export_stage, "export_spec", record)
    return got


def _run_cli(tmp_path: Path, text: str, capsys) -> tuple[int, str, str]:
    path = tmp_path / "spec.toml"
    path.write_text(text)
    code = main(["export", str(path), "--json"])
    out, err = capsys.readouterr()
    return code, out, err


def _number_of(value):
    if isinstance(value, list):
        return value[0]
    if isinstance(value, dict):
        return next(iter(value.values()))
    return value


@pytest.mark.parametrize("table,key,value", list(_cases()))
def test_every_field_refuses_or_keeps_a_hostile_value_in_its_range(table, key, value, tmp_path, capsys, accepted):
    field = SCHEMA[table][key]
    code, out, err = _run_cli(tmp_path, _spec_text(table, key, value), capsys)
    assert "Traceback" not in err
    if code == 1:
        assert err.startswith("error: ") and err.count("\n") == 1, err
        assert _where(table, key) in err, err
        if field.range is not None:
            assert field.range.describe() in err, err  # the valid range is in the message
        assert accepted == []
        return
    # Accepted: only a value the documented range holds, as given.
    assert code == 0, (code, err)
    assert field.range is not None, f"{_where(table, key)} accepted a wrong type {value!r}"
    n = _number_of(value)
    assert isinstance(n, (int, float)) and not isinstance(n, bool) and math.isfinite(n)
    assert field.range.accepts(n), f"{_where(table, key)} accepted {n!r}, outside {field.range.describe()}"
    assert len(accepted) == 1


def test_zero_and_the_ends_of_each_range_are_accepted(tmp_path, capsys, accepted):
    """The other side: valid values pass, zero where zero is allowed and each finite end of a range."""
    for table, fields in SCHEMA.items():
        for key, field in fields.items():
            r = field.range
            if r is None:
                continue
            ends = [r.low] if not r.low_open else []
            ends += [r.high] if math.isfinite(r.high) else [1e300]
            if r.kind is int:
                ends = [int(e) for e in ends]
            if (table, key) == ("model", "input_shape"):
                ends = [e for e in ends if e <= 2**28]  # the whole shape is held to 2**28 elements too
            for n in ends:
                accepted.clear()
                code, _, err = _run_cli(tmp_path, _spec_text(table, key, _as_field_value(field, n)), capsys)
                assert code == 0 and len(accepted) == 1, (_where(table, key), n, err)


def test_seeds_at_the_ends_work_where_seeds_are_used():
    """An accepted seed is one numpy, torch and scikit-learn all take (a -1 failed every job before)."""
    import numpy as np
    import torch
    from sklearn.utils import check_random_state

    r = SCHEMA["model"]["seed"].range
    for seed in (int(r.low), int(r.high)):
        np.random.default_rng(seed)
        torch.Generator().manual_seed(seed)
        check_random_state(seed)
    for table, fields in SCHEMA.items():
        for key, field in fields.items():
            if key.endswith("seed"):
                assert field.range == r, _where(table, key)


@pytest.mark.parametrize("table", DEVICE_TABLES)
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_device_tables_refuse_non_finite_numbers(table, value, tmp_path, capsys, accepted):
    text = _spec_text("", "name", "x") + f"[{table}]\ntimeout_s = {_toml_value(value)}\n"
    code, _, err = _run_cli(tmp_path, text, capsys)
    assert code == 1 and err.count("\n") == 1 and f"[{table}].timeout_s" in err and "finite" in err, err


def test_whole_input_shape_is_bounded(tmp_path, capsys, accepted):
    code, _, err = _run_cli(tmp_path, _spec_text("model", "input_shape", [100000, 3, 1000, 1000]), capsys)
    assert code == 1 and "[model].input_shape" in err and err.count("\n") == 1


def test_spec_errors_through_run_leave_the_results_dir_as_it_was(tmp_path, capsys):
    """`run --resume` with a hostile spec: one line, exit 1, and every file of the results dir unchanged."""
    out = tmp_path / "out"
    (out / "records").mkdir(parents=True)
    (out / "records" / "r1.json").write_text('{"kept": true}\n')
    (out / "summary.csv").write_text("config,backend\nconv1-simple,onnx\n")
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    for key, value in (("timeout_s", math.inf), ("timeout_s", math.nan), ("runs", -1)):
        path = tmp_path / "spec.toml"
        path.write_text(_spec_text("run", key, value))
        assert main(["run", str(path), "--out", str(out), "--resume"]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"[run].{key}" in err
    path.write_text(_spec_text("model", "seed", -1))
    assert main(["run", str(path), "--out", str(out), "--resume"]) == 1
    assert "[model].seed" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_load_spec_keeps_what_was_given(tmp_path):
    path = tmp_path / "spec.toml"
    path.write_text(_spec_text("run", "warmup", 0) + "[budget]\nmin_accuracy = 0\nmax_latency_ms = 0\n")
    spec = load_spec(path)
    assert spec.run.warmup == 0 and spec.budget == {"min_accuracy": 0.0, "max_latency_ms": 0.0}
