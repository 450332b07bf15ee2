"""report.html and the trade-off figures, built from small hand-made results directories.

What the page shows in a browser (first screen, budget controls against `recommend`, row heights, every
figure loaded) is tests/test_report_browser.py's.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.cli import main
from harness.analysis.recommend import Budget
from harness.analysis.recommend.choice import choose
from harness.analysis.table import load_table
from harness.report import build_report
from test_recommend import privacy_rows, summary_rows, write_run


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


def test_report_leads_with_the_answer_and_keeps_the_details(built):
    page = (built[0] / "report.html").read_text()
    order = [page.index(f'<section id="{k}"') for k in ("answer", "configurations", "tradeoffs", "figures",
                                                         "privacy", "measured", "setup")]
    assert order == sorted(order)  # the answer first, the setup last
    assert page.index('id="setup"') < page.index("<details", page.index('id="setup"'))  # folded
    answer = page[order[0]:order[1]]
    # the toy's default budget: LTE, accuracy >= 0.95 - 0.05; the most private fitting configuration
    rec = choose(load_table(built[0]), Budget(min_accuracy=0.9))
    assert f'<b class="config">{rec.choice.config}</b>' in answer and "Recommended" in answer
    assert "vs on-premise" in answer and "--min-accuracy 0.9 --network lte" in answer
    for text in ("Fake CPU 3000", "cpu-1core", "onnxruntime", "Spec", "inference (median)", "Failed configurations",
                 "worker exceeded 60 s", "log-rank privacy", "Pareto frontier", "Ratios against"):
        assert text in page, text


def test_report_without_privacy_and_with_a_mismatch(tmp_path, capsys):
    """A plain `splitbench run` (no privacy.csv) leads with the fastest configuration that fits, and says
    privacy was not scored; a privacy table that does not match is named and the answer is by cost."""
    plain = write_run(tmp_path / "plain", privacy=False)
    assert main(["report", str(plain)]) == 0
    page = (plain / "report.html").read_text()
    assert 'id="privacy"' not in page and 'href="#privacy"' not in page
    answer = page[page.index('<section id="answer"'):page.index('<section id="configurations"')]
    assert "privacy not scored" in answer and "Neurosurgeon" in answer
    assert f'<b class="config">{choose(load_table(plain), Budget()).choice.config}</b>' in answer
    assert str(plain / "report.html") in capsys.readouterr().out

    bad = write_run(tmp_path / "bad")
    priv = (bad / "privacy.csv").read_text().replace("toy,c3,", "toy,conv9,")
    (bad / "privacy.csv").write_text(priv)
    build_report(bad)
    page = (bad / "report.html").read_text()
    assert "Privacy scores not shown" in page and "toy/conv9/simple" in page and "privacy not scored" in page
    assert main(["report", str(tmp_path / "nothing")]) == 1


@pytest.fixture
def no_figures(monkeypatch):
    """Skip drawing the figures (matplotlib is the slow part) where a test reads only the page's text."""
    import harness.report.figures
    import harness.report.tradeoff

    monkeypatch.setattr(harness.report.figures, "make_figures", lambda d: [])
    monkeypatch.setattr(harness.report.tradeoff, "make_tradeoff_figures", lambda d, merged=None, privacy=None: [])


def test_the_budget_comes_from_the_command_line_else_the_spec(tmp_path, no_figures):
    d = write_run(tmp_path / "run", failed=False)
    manifest = json.loads((d / "manifest.json").read_text())
    manifest["spec"]["budget"] = {"max_latency_ms": 50.0, "network": "lte"}
    (d / "manifest.json").write_text(json.dumps(manifest))
    build_report(d)
    page = (d / "report.html").read_text()
    want = choose(load_table(d), Budget(max_latency_ms=50)).choice.config
    assert f'<b class="config">{want}</b>' in page and "the spec&#x27;s [budget] table" in page
    assert main(["report", str(d), "--max-memory-mb", "21", "--network", "wifi"]) == 0
    page = (d / "report.html").read_text()
    want = choose(load_table(d), Budget(max_memory_mb=21, network="wifi")).choice.config
    assert f'<b class="config">{want}</b>' in page and "--max-memory-mb 21 --network wifi" in page
    assert 'id="in-0-max_memory_mb" data-limit="max_memory_mb" step="any" min="0" value="21"' in page


def write_tiny_times_run(d: Path) -> Path:
    """A run of a small model: 12 microsecond medians, sub-millisecond loads, an aggregate-only phone and two
    phones of one target."""
    d.mkdir(parents=True, exist_ok=True)
    rows = []
    for device, agg in (("PHONE_A", True), ("PHONE_B", False)):
        for r in summary_rows():
            r = dict(r, target="android", device_id=device, backend="litert", infer_ms_median=r["infer_ms_median"] / 800,
                     infer_ms_p90=np.nan if agg else r["infer_ms_p90"] / 800, infer_ms_min=r["infer_ms_min"] / 800,
                     infer_ms_iqr=r["infer_ms_iqr"] / 800, cpu_ms=r["cpu_ms"] / 800, load_ms_cold=0.62,
                     timing_kind="aggregate" if agg else "samples", aggregate_tool="benchmark_model" if agg else None)
            rows.append(r)
    pd.DataFrame(rows).to_csv(d / "summary.csv", index=False)
    pd.DataFrame(privacy_rows(ratios=(0.0, 0.5))).to_csv(d / "privacy.csv", index=False)
    return d


def test_numbers_carry_their_precision_and_marks(tmp_path, no_figures):
    d = write_tiny_times_run(tmp_path / "tiny")
    build_report(d)
    page = (d / "report.html").read_text()
    cells = re.findall(r'<td class="num[^"]*"[^>]*>([^<]*)</td>', page)
    assert cells and not [c for c in cells if re.fullmatch(r"-?0\.0+", c)]  # never "0.00" for 12.5 µs
    assert "12.5 µs" in page and "620 µs" in page and "+100%" in page  # c1-simple vs on-premise: 12.5 vs 100 µs
    assert "−87.5%" in page
    configs = page[page.index('<section id="configurations"'):page.index('<section id="tradeoffs"')]
    assert "tool aggregate" in configs and "PHONE_A" in configs and "PHONE_B" in configs
    assert configs.count('<th>device</th>') == 1  # two phones of one target: a device column
    summary = pd.read_csv(d / "summary.csv")
    assert summary["infer_ms_median"].iloc[0] == pytest.approx(10.0 / 800)  # summary.csv stays raw


def test_trade_off_labels_never_overlap():
    """A cluster of configurations (a small model's microsecond medians): every label placed apart."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from harness.report.tradeoff import place_labels

    rng = np.random.default_rng(0)
    x, y = rng.normal(0.012, 0.002, 24), rng.normal(0.02, 0.004, 24)
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    ax.scatter(x, y)
    ax.set_xlim(0, 0.03)
    ax.set_ylim(0, 0.04)
    anns = place_labels(ax, list(zip(x, y)), [f"conv{i}-reduced" for i in range(24)])
    fig.canvas.draw()
    from matplotlib.text import Text

    boxes = [Text.get_window_extent(a) for a in anns]  # the label, not its leader line
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not a.overlaps(b), (a, b)
    plt.close(fig)


def test_a_spec_budget_table_is_checked_and_is_not_identity():
    import tomllib

    from harness.core.errors import UserError
    from harness.config.spec import spec_hash
    from harness.analysis.recommend import budget_from_mapping
    from harness.config.spec import parse_spec

    fixtures = Path(__file__).parent / "fixtures"
    data = tomllib.loads((fixtures / "tiny.toml").read_text())
    plain = parse_spec(data, path=fixtures / "tiny.toml")
    data["budget"] = {"max_latency_ms": 60, "max_memory_mb": 20, "min_accuracy": 0.9, "network": "wifi"}
    spec = parse_spec(data, path=fixtures / "tiny.toml")
    assert budget_from_mapping(spec.budget) == Budget(max_latency_ms=60, max_memory_mb=20, min_accuracy=0.9,
                                                      network="wifi")
    assert spec_hash(spec) == spec_hash(plain)  # a budget never invalidates measurements
    for bad, msg in (({"min_accuracy": 90}, "fraction"), ({"network": "pigeon"}, "unknown network"),
                     ({"max_latency_ms": "fast"}, "milliseconds"), ({"max_ms": 1}, "unknown key"),
                     ({"max_memory_mb": -1}, ">= 0")):
        data["budget"] = bad
        with pytest.raises(UserError, match=msg):
            parse_spec(data, path=fixtures / "tiny.toml")
