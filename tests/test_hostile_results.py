"""A results directory a user damaged or that cannot be written, and privacy scores out of range (issue 21,
defects 6, 13 and 14): `report` and `recommend` end with one line naming the file and the fix and their exit
code, never a traceback, and never change a record already on disk.

The results directory is written by the orchestrator (scripted agent and export, as tests/test_compare.py
does), so it has records/, summary.csv, samples.parquet and manifest.json as a run leaves them; each test
damages a copy of it the way the issue's hostile user did.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from harness import orchestrate
from harness.cli import main
from harness.config.spec import load_spec
from harness.core import exitcodes
from harness.measure import executors
from tests.fakes import FakeAgent, fake_export, record_hashes

FIXTURES = Path(__file__).parent / "fixtures"
MODEL = "tiny_model:build"


def tiny_onnx_spec():
    """tiny.toml: 3 configurations x onnx, 12 runs."""
    spec = load_spec(FIXTURES / "tiny.toml")
    return dataclasses.replace(spec, export=dataclasses.replace(spec.export, backends=("onnx",)),
                               run=dataclasses.replace(spec.run, runs=12, warmup=1, warm_loads=2))


@pytest.fixture(scope="module")
def measured(tmp_path_factory) -> Path:
    """One results directory of tiny.toml (3 configurations x onnx on a scripted cpu-1core), privacy scored."""
    tmp = tmp_path_factory.mktemp("hostile")
    spec = tiny_onnx_spec()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(orchestrate, "export_artifacts", fake_export(tmp / "art"))
        mp.setattr(orchestrate, "POST_RUN", ())
        mp.setattr(executors, "open_agent", lambda target, **options: FakeAgent())
        out = tmp / "run"
        assert orchestrate.run_spec(spec, out, progress=False).exit_code == exitcodes.OK
    privacy_csv(out, "0.40", "0.90")
    return out


def privacy_csv(d: Path, lrp: str, acc: str) -> Path:
    """privacy.csv with conv1's log-rank privacy and accuracy as given (text, as a user writes them)."""
    (d / "privacy.csv").write_text("model,cut,embedding,noise_ratio,log_rank_privacy,primary_accuracy\n"
                                   f"{MODEL},conv1,simple,0,{lrp},{acc}\n{MODEL},conv2,simple,0,0.55,0.88\n")
    return d / "privacy.csv"


@pytest.fixture
def run_copy(measured, tmp_path) -> Path:
    return Path(shutil.copytree(measured, tmp_path / "run"))


def one_line(capsys, argv: list[str], code: int) -> str:
    """Run the CLI; assert its exit code and that stderr is one `error:` line without a traceback."""
    assert main(argv) == code
    err = capsys.readouterr().err
    assert "Traceback" not in err and "internal error" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.fixture
def no_figures(monkeypatch):
    """Skip drawing (matplotlib is the slow part) where a test is about the tables or the page's text."""
    import harness.report.figures
    import harness.report.tradeoff

    monkeypatch.setattr(harness.report.figures, "make_figures", lambda d: [])
    monkeypatch.setattr(harness.report.tradeoff, "make_tradeoff_figures", lambda d, merged=None, privacy=None: [])


# --------------------------------------------------------------------------------------------------
# Defect 6: damaged tables


@pytest.mark.parametrize("damage, names", [
    ("samples_not_parquet", "samples.parquet is not a readable Parquet file"),
    ("summary_empty", "summary.csv is empty"),
    ("summary_binary", "summary.csv is not a readable CSV table"),
    ("summary_foreign", "summary.csv lacks columns"),
    ("summary_inf", "summary.csv: column infer_ms_median, row 2 holds inf, not a finite number"),
    ("samples_foreign", "samples.parquet lacks column"),
])
def test_a_damaged_table_is_one_line_naming_the_file_and_the_fix(run_copy, capsys, damage, names):
    d = run_copy
    if damage == "samples_not_parquet":
        (d / "samples.parquet").write_bytes(b"PAR1 this is not parquet\n" * 20)
    elif damage == "summary_empty":
        (d / "summary.csv").write_bytes(b"")
    elif damage == "summary_binary":
        (d / "summary.csv").write_bytes(bytes(range(256)) * 4)
    elif damage == "summary_foreign":
        (d / "summary.csv").write_text("name,value\nx,1\n")
    elif damage == "summary_inf":
        summary = pd.read_csv(d / "summary.csv")
        summary.loc[0, "infer_ms_median"] = float("inf")
        summary.to_csv(d / "summary.csv", index=False)
    else:
        pd.DataFrame({"x": [1, 2]}).to_parquet(d / "samples.parquet")
    before = record_hashes(d)
    line = one_line(capsys, ["report", str(d)], exitcodes.USAGE)
    assert names in line and str(d) in line
    assert f"`splitbench run SPEC --out {d} --resume` rebuilds it from the records" in line
    if damage.startswith("summary"):  # recommend reads it too, through the same reader
        assert one_line(capsys, ["recommend", str(d)], exitcodes.USAGE) == line
    assert record_hashes(d) == before


def test_a_damaged_cloud_table_is_refused_by_recommend_and_left_out_by_report(run_copy, capsys, no_figures):
    d = run_copy
    (d / "cloud.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe")
    before = record_hashes(d)
    line = one_line(capsys, ["recommend", str(d)], exitcodes.USAGE)
    assert line.startswith(f"error: {d / 'cloud.csv'} is not a readable CSV table") and "--resume` times" in line
    assert main(["report", str(d)]) == exitcodes.OK  # as a privacy table that does not match: said, not fatal
    err = capsys.readouterr().err
    assert err.strip() == "warning: Cloud part left out of the latency: " + line.removeprefix("error: ")
    assert "Cloud part left out of the latency" in (d / "report.html").read_text()
    assert record_hashes(d) == before


def test_resume_rebuilds_a_damaged_summary_from_the_records(run_copy, capsys, monkeypatch, tmp_path):
    """The fix the line gives works: `run --resume` (all measured) rewrites summary.csv from records/."""
    d = run_copy
    good = (d / "summary.csv").read_bytes()
    (d / "summary.csv").write_bytes(b"")
    before = record_hashes(d)
    spec = tiny_onnx_spec()
    monkeypatch.setattr(orchestrate, "export_artifacts", fake_export(tmp_path))
    monkeypatch.setattr(orchestrate, "POST_RUN", ())
    monkeypatch.setattr(executors, "open_agent", lambda target, **options: FakeAgent())
    assert orchestrate.run_spec(spec, d, resume=True, progress=False).exit_code == exitcodes.OK
    assert (d / "summary.csv").read_bytes() == good and record_hashes(d) == before


def test_a_report_that_cannot_replace_report_html_is_one_line_exit_6(run_copy, capsys, no_figures):
    d = run_copy
    (d / "report.html").mkdir()  # something in the way of the page
    (d / "report.html" / "keep").write_text("x")
    before = record_hashes(d)
    line = one_line(capsys, ["report", str(d)], exitcodes.WRITE_FAILED)
    assert line.startswith(f"error: cannot write {d / 'report.html'}: a directory of that name is in the way")
    assert "records and tables are untouched" in line
    assert record_hashes(d) == before and not [p for p in d.iterdir() if p.name.startswith(".report.html")]


@pytest.fixture
def read_only_copy(measured, tmp_path):
    """A copy of the results directory on a tmpfs remounted read-only (needs root to mount)."""
    mount = tmp_path / "ro"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        d = Path(shutil.copytree(measured, mount / "run"))
        before = record_hashes(d)
        assert subprocess.run(["mount", "-o", "remount,ro", str(mount)], capture_output=True).returncode == 0
        yield d, before
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_read_only_results_directory_is_one_line_exit_6(read_only_copy, capsys):
    d, before = read_only_copy
    line = one_line(capsys, ["report", str(d)], exitcodes.WRITE_FAILED)  # the figures are written first
    assert line.startswith(f"error: cannot write {d / 'figures'}") and "the file system is read-only" in line
    assert "run `splitbench report` on it again" in line
    assert record_hashes(d) == before
    assert main(["recommend", str(d)]) == exitcodes.OK  # recommend only reads: a read-only directory is fine
    capsys.readouterr()


# --------------------------------------------------------------------------------------------------
# Defect 13: privacy scores out of range


@pytest.mark.parametrize("lrp, acc, says", [
    ("nan", "0.9", "column log_rank_privacy must be numeric, a number in [0, 1]; row 2 holds 'nan'"),
    ("inf", "0.9", "column log_rank_privacy must be a number in [0, 1]; row 2 holds inf"),
    ("-3", "0.9", "column log_rank_privacy must be a number in [0, 1]; row 2 holds -3.0"),
    ("0.4", "1.5", "column primary_accuracy must be a number in [0, 1]; row 2 holds 1.5"),
])
def test_privacy_out_of_range_is_named_by_file_column_and_row(run_copy, capsys, no_figures, lrp, acc, says):
    d = run_copy
    path = privacy_csv(d, lrp, acc)
    before = record_hashes(d)
    line = one_line(capsys, ["recommend", str(d)], exitcodes.USAGE)
    assert line == f"error: {path}: {says} (leave the cell empty where nothing was scored)"
    assert "--min-accuracy" not in line  # never blamed on an option the user did not give
    # report builds without privacy and says why at the top of the page and on stderr: the same line
    assert main(["report", str(d)]) == exitcodes.OK
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and line.removeprefix("error: ") in captured.err
    page = (d / "report.html").read_text()
    header = page[:page.index('<section id="answer"')]
    assert f'<p class="warn">Privacy scores not shown: {path}: column' in header
    assert "privacy not scored" in page
    assert record_hashes(d) == before


def test_a_garbage_privacy_table_is_refused_by_recommend_and_named_by_report(run_copy, capsys, no_figures):
    d = run_copy
    (d / "privacy.csv").write_bytes(bytes(range(128, 256)) * 3)
    before = record_hashes(d)
    line = one_line(capsys, ["recommend", str(d)], exitcodes.USAGE)
    assert line.startswith(f"error: {d / 'privacy.csv'} is not a readable CSV table")
    assert main(["report", str(d)]) == exitcodes.OK
    assert line.removeprefix("error: ") in capsys.readouterr().err
    assert "Privacy scores not shown: " + line.removeprefix("error: ")[:40] in (d / "report.html").read_text()
    assert record_hashes(d) == before


def test_an_empty_score_is_not_scored_and_a_good_table_still_merges(run_copy, capsys, no_figures):
    d = run_copy
    privacy_csv(d, "", "0.9")  # the sweep writes an empty cell where an estimator could not score
    assert main(["recommend", str(d)]) == exitcodes.OK
    out = capsys.readouterr().out
    assert "Recommended: conv2-simple" in out  # conv1 is not scored: it cannot be the most private
    privacy_csv(d, "0.40", "0.90")
    assert main(["recommend", str(d)]) == exitcodes.OK


# --------------------------------------------------------------------------------------------------
# Defect 14: an export cache that cannot be written, a results path that is not UTF-8


def _scripted_device(monkeypatch):
    monkeypatch.setattr(executors, "open_agent", lambda target, **options: FakeAgent())


def test_a_read_only_current_directory_with_the_default_cache_is_one_line_exit_6(tmp_path, monkeypatch, capsys):
    """The real export (tiny model), its default cache results/cache under a current directory that is read-only:
    one line naming the directory and the two ways to choose another, before any model is built; the records
    of the results directory being resumed are untouched."""
    spec = tmp_path / "tiny.toml"
    spec.write_text((FIXTURES / "tiny.toml").read_text().replace('backends = ["onnx", "litert"]', 'backends = ["onnx"]'))
    shutil.copy(FIXTURES / "tiny_model.py", tmp_path / "tiny_model.py")
    d = tmp_path / "run"
    _scripted_device(monkeypatch)
    with pytest.MonkeyPatch.context() as mp:  # the first session, from a cache elsewhere (scripted here)
        mp.setattr(orchestrate, "export_artifacts", fake_export(tmp_path))
        mp.setattr(orchestrate, "POST_RUN", ())
        assert main(["run", str(spec), "--out", str(d)]) == exitcodes.OK
    capsys.readouterr()
    before = record_hashes(d)
    assert len(before) == 3
    cwd = tmp_path / "ro"
    cwd.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(cwd)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        monkeypatch.chdir(cwd)
        monkeypatch.delenv("SPLITBENCH_CACHE", raising=False)
        line = one_line(capsys, ["run", str(spec), "--out", str(d), "--resume"], exitcodes.WRITE_FAILED)
    finally:
        monkeypatch.chdir(tmp_path)
        subprocess.run(["umount", "-l", str(cwd)], capture_output=True)
    assert line == (f"error: cannot write the export cache {cwd / 'results' / 'cache'}: the file system is read-only; "
                    "give a writable directory as [export].cache_dir in the spec or in the SPLITBENCH_CACHE "
                    "environment variable (the default is results/cache under the current directory)")
    assert record_hashes(d) == before


def test_an_unwritable_cache_from_the_environment_is_named_the_same_way(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("SPLITBENCH_CACHE", str(blocker / "cache"))
    spec = tmp_path / "tiny.toml"
    spec.write_text((FIXTURES / "tiny.toml").read_text())
    shutil.copy(FIXTURES / "tiny_model.py", tmp_path / "tiny_model.py")
    line = one_line(capsys, ["export", str(spec)], exitcodes.WRITE_FAILED)
    assert line.startswith(f"error: cannot write the export cache {blocker / 'cache'}: a file is in the way")


@pytest.fixture
def non_utf8_run(measured, tmp_path) -> Path:
    """The results directory under a name holding the byte 0xff (not UTF-8), as a shell makes it."""
    import os

    d = Path(os.fsdecode(os.fsencode(str(tmp_path)) + b"/run-\xff"))
    return Path(shutil.copytree(measured, d))


def test_a_run_into_a_non_utf8_path_writes_its_report(tmp_path, monkeypatch, capsys):
    """The run's report stage used to fail with UnicodeEncodeError after measuring."""
    import os

    spec = tiny_onnx_spec()
    monkeypatch.setattr(orchestrate, "export_artifacts", fake_export(tmp_path))
    monkeypatch.setattr(orchestrate, "POST_RUN", tuple(s for s in orchestrate.POST_RUN if s.name == "report"))
    _scripted_device(monkeypatch)
    out = Path(os.fsdecode(os.fsencode(str(tmp_path)) + b"/out-\xff"))
    outcome = orchestrate.run_spec(spec, out, progress=False)
    err = capsys.readouterr().err
    assert outcome.exit_code == exitcodes.OK and "warning" not in err, err
    assert (out / "report.html").is_file() and outcome.figures[-1] == out / "report.html"
    assert "out-\\xff" in err  # the closing line shows the byte escaped


@pytest.mark.parametrize("argv", [["report"], ["recommend"], ["recommend", "--json"], ["compare", "SELF"]])
def test_report_recommend_compare_read_a_non_utf8_path(non_utf8_run, argv):
    """As a user runs them, with a strict UTF-8 stdout (PYTHONIOENCODING=utf-8): exit 0, the path escaped."""
    import os
    import sys

    d = non_utf8_run
    before = record_hashes(d)
    args = [a if a != "SELF" else os.fsencode(str(d)) for a in argv[1:]]
    env = {**os.environ, "PYTHONIOENCODING": "utf-8", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run([sys.executable, "-m", "harness.cli", argv[0], os.fsencode(str(d)), *args],
                          capture_output=True, env=env, timeout=300)
    out, err = proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == exitcodes.OK and "Traceback" not in err, err
    if argv == ["report"]:
        assert out.strip().splitlines()[-1] == visible_path(d / "report.html")
        assert "<title>splitbench report: run-\\xff</title>" in (d / "report.html").read_text()
    assert record_hashes(d) == before


def visible_path(p: Path) -> str:
    from harness.core.text import visible

    return visible(p)
