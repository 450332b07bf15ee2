"""report.html and the trade-off figures, built from a small hand-made results directory."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile

import pytest

from harness.cli import main
from harness.report import build_report
from test_recommend import write_run

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One run directory with privacy scores, reported once (matplotlib is the slow part)."""
    d = write_run(tmp_path_factory.mktemp("report") / "run")
    return d, build_report(d)


def test_report_and_tradeoff_figures_are_written(built):
    d, paths = built
    assert paths[-1] == d / "report.html" and paths[-1].stat().st_size > 10_000
    names = {p.name for p in paths}
    for stem in ("privacy_vs_inference", "privacy_vs_memory", "privacy_vs_upload", "accuracy_privacy"):
        assert {f"{stem}.png", f"{stem}.svg"} <= names
        assert (d / "figures" / f"{stem}.svg").read_text().lstrip().startswith("<?xml")


def test_report_is_self_contained(built):
    d, paths = built
    page = (d / "report.html").read_text()
    assert "http://" not in page and "https://" not in page
    srcs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)""", page)
    assert srcs and all(s.startswith("data:") or s.startswith("#") for s in srcs), srcs
    assert "<link" not in page and "@import" not in page and "url(" not in page
    n_stems = len({p.stem for p in paths if p.suffix in (".png", ".svg")})
    assert page.count('<img class="fig"') == n_stems


def test_report_shows_setup_tables_failures_and_recommendation(built):
    page = (built[0] / "report.html").read_text()
    for text in ("Fake CPU 3000", "cpu-1core", "onnxruntime", "Spec", "infer median ms", "Failed configurations",
                 "worker exceeded 60 s", "log-rank privacy", "on-device", "Most private configuration that fits",
                 "Pareto frontier", "accuracy &gt;= 0.9"):
        assert text in page, text


def test_report_without_privacy_and_with_a_mismatch(tmp_path, capsys):
    plain = write_run(tmp_path / "plain", privacy=False)
    assert main(["report", str(plain)]) == 0
    page = (plain / "report.html").read_text()
    assert 'id="privacy"' not in page and "Summary" in page
    assert str(plain / "report.html") in capsys.readouterr().out

    bad = write_run(tmp_path / "bad")
    priv = (bad / "privacy.csv").read_text().replace("toy,c3,", "toy,conv9,")
    (bad / "privacy.csv").write_text(priv)
    build_report(bad)
    page = (bad / "report.html").read_text()
    assert "Privacy scores not shown" in page and "toy/conv9/simple" in page
    assert main(["report", str(tmp_path / "nothing")]) == 1


def _chromium(*args: str, timeout_s: float = 90) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                               "--disable-background-networking", "--disable-component-update", "--disable-sync",
                               "--disable-quic", f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=timeout_s)


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (`make browser` installs it)")
def test_every_figure_loads_in_headless_chromium(built):
    d, paths = built
    url = (d / "report.html").resolve().as_uri()
    # The page's own script writes each <img>'s load state (naturalWidth > 0) into the DOM on `load`.
    # Offline: no network is reachable, so a figure that were not embedded could not load.
    proc = _chromium("--virtual-time-budget=10000", "--dump-dom", url)
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    status = re.search(r'id="img-status"[^>]*data-total="(\d+)"[^>]*data-loaded="(\d+)"', dom)
    assert status, "the page's load check did not run"
    total, loaded = map(int, status.groups())
    n_stems = len({p.stem for p in paths if p.suffix in (".png", ".svg")})
    assert total == n_stems and loaded == total, (total, loaded)
    assert dom.count('data-loaded="yes"') == total and 'data-loaded="no"' not in dom
    shot = d / "report_screenshot.png"
    proc = _chromium("--window-size=1280,2400", f"--screenshot={shot}", url)
    assert shot.is_file() and shot.stat().st_size > 10_000, proc.stderr[-2000:]
