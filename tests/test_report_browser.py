"""report.html in headless Chromium, read back from the rendered page (issue 12, item 6).

One results directory with what makes a report hard: two backends, a phone target shared by two devices
(one of which reports only its tool's aggregate), a failed row, three noise ratios and a cloud part. The
page is opened at 1400x900 with a small script of this test appended (a copy of the page, the report is
not changed) that, like a reader, moves the budget controls (types into the number fields, drags the
sliders, switches the network, unticks backends and targets) and writes what the page then highlights
into the DOM. Python's `recommend` rule (:func:`harness.analysis.recommend.choice.choose`) is asked about the
very budget the page shows, and the two must agree: the recommendation, every configuration highlighted as fitting
(plot and table), and, when nothing fits, the closest configuration and the one-line reason.

It also checks, from the rendered page: the recommendation lies on the first screen, no table row is
taller than its content needs (none taller than one line in the data tables), every figure decoded, and
the page's number formatting equals harness.core.units'. Chromium is launched twice (the DOM, a screenshot).
"""

from __future__ import annotations

import html
import json
import random
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.analysis.recommend import Budget, config_lines
from harness.analysis.recommend.choice import choose
from harness.analysis.table import load_table
from harness.report import build_report
from harness.report.browser import FIRST_SCREEN, dump_dom, find_chromium
from harness.core.units import fmt_bytes, fmt_mb, fmt_ms, sig
from test_recommend import TOY, privacy_rows, summary_rows

CHROMIUM = find_chromium()
pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (`make browser` installs "
                                                          "it: apt-get install chromium chromium-driver)")]

# (backend, target, device, time scale, memory scale, aggregate): where the toy model was "measured"
PLACES = [("onnxruntime", "cpu-1core", "host:cpu3", 1.0, 1.0, False),
          ("litert", "cpu-1core", "host:cpu3", 0.7, 0.5, False),
          ("litert", "android", "PHONE_A", 1.6, 0.6, True),
          ("litert", "android", "PHONE_B", 1.3, 0.6, False)]


def write_rich_run(d: Path) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    rows = []
    for backend, target, device, ts, ms, agg in PLACES:
        for r in summary_rows():
            r = dict(r, backend=backend, target=target, device_id=device,
                     infer_ms_median=r["infer_ms_median"] * ts, load_ms_cold=r["load_ms_cold"] * ts,
                     mem_model_mb=r["mem_model_mb"] * ms, timing_kind="aggregate" if agg else "samples",
                     warnings="iqr_high: IQR is 12% of the median (above 10%); try: close other programs, set the "
                              "CPU governor to 'performance', raise [run].warmup and [run].runs" * 3)
            if agg:  # what LiteRT's benchmark_model prints: no samples, its own percentiles
                med = r["infer_ms_median"]
                r.update(infer_ms_p90=np.nan, infer_ms_iqr=np.nan, aggregate_tool="benchmark_model (fake)",
                         infer_ms_mean=med * 1.01, infer_ms_p5=med * 0.97, infer_ms_p95=med * 1.04,
                         infer_ms_min=med * 0.95, infer_ms_max=med * 1.1)
            rows.append(r)
    rows.append(dict(rows[2], backend="onnxruntime", target="cpu-1core", device_id="host:cpu3", status="timeout",
                     reason="worker exceeded 60 s: " + "RuntimeError: XNNPACK delegate failed to prepare " * 8
                     + "\nstderr tail", infer_ms_median=np.nan, n_runs=0, cut="c2",
                     embedding="simple", config="c2-simple", timing_kind="samples"))
    rows = [r for i, r in enumerate(rows) if not (r["config"] == "c2-simple" and r["backend"] == "onnxruntime"
                                                    and r["status"] == "ok")]
    pd.DataFrame(rows).to_csv(d / "summary.csv", index=False)
    (d / "manifest.json").write_text(json.dumps({
        "schema_version": 2, "splitbench_version": "0.1.0", "spec_hash": "abc", "status": "complete",
        "host": {"cpu_model": "Fake CPU 3000"}, "devices": {"host:cpu3": {}, "PHONE_A": {}, "PHONE_B": {}},
        "spec": {"name": "toy", "budget": {"max_latency_ms": 60.0, "min_accuracy": 0.9, "network": "lte"}}}))
    ok = [r for r in rows if r["status"] == "ok" and r["timing_kind"] == "samples"]
    pd.DataFrame([dict(model=r["model"], config=r["config"], backend=r["backend"], target=r["target"],
                       device_id=r["device_id"], phase="timed", run=i,
                       infer_ms=r["infer_ms_median"] * (1 + 0.01 * (i % 5)))
                  for r in ok for i in range(12)]).to_parquet(d / "samples.parquet")
    pd.DataFrame(privacy_rows(ratios=(0.0, 0.5, 2.0))).assign(estimator="splitbench").to_csv(
        d / "privacy.csv", index=False)
    pd.DataFrame([dict(model="toy", cut=c, embedding=e, cloud_ms=3.0) for c, e, *_ in TOY]).to_csv(
        d / "cloud.csv", index=False)
    return d


def scenarios(table: pd.DataFrame, n: int = 60, seed: int = 0) -> list[dict]:
    """Budgets a reader would try: limits drawn at, just below and between the measured values (so every
    comparison edge is crossed), some from the sliders, some impossible, with backends and targets ticked
    off and other networks."""
    rng = random.Random(seed)
    rec = choose(table, Budget())
    lat = sorted({c.latency_ms for c in rec.candidates if c.latency_ms is not None})
    mem = sorted({c.memory_mb for c in rec.candidates if c.memory_mb is not None})
    up = sorted({c.upload_bytes / 1000 for c in rec.candidates if c.upload_bytes is not None})
    acc = sorted({c.accuracy for c in rec.candidates if c.accuracy is not None})
    backends, targets = sorted(set(table["backend"])), sorted(set(table["target"]))

    def pick(values):
        v = rng.choice(values)
        return rng.choice([v, v, v * 0.999, v * 1.001, round(v, 1), None])

    out = [{}]  # first: the page as it opened (the spec's [budget])
    for i in range(n):
        sc = {"max_latency_ms": pick(lat), "max_memory_mb": pick(mem) if rng.random() < 0.6 else None,
              "max_upload_kb": pick(up) if rng.random() < 0.4 else None,
              "min_accuracy": rng.choice(acc + [None]) if rng.random() < 0.7 else None,
              "network": rng.choice(["lte", "lte", "wifi", "3g", "5g"])}
        if i % 7 == 3:
            sc["backends"] = [rng.choice(backends)]
        if i % 9 == 4 and "backends" not in sc:  # (both could leave nothing to show)
            sc["targets"] = [rng.choice(targets)]
        if i % 5 == 0:  # drag sliders instead of typing
            sc["slider"] = {k: rng.randrange(0, 1001) for k in ("max_latency_ms", "max_memory_mb", "min_accuracy")
                            if rng.random() < 0.8}
        if i % 13 == 6:
            sc.update(max_latency_ms=1.0, max_memory_mb=1.0)  # nothing fits
        out.append(sc)
    return out


# The reader, as a script: run inside the page after its own scripts, results into <pre id="test-results">.
DRIVER = r"""
<script>
window.addEventListener('load', function () {
  var SCEN = %(scenarios)s, VALUES = %(values)s, out = {};
  function fire(el, type) { el.dispatchEvent(new Event(type, {bubbles: true})); }
  function keyOf(i) { var c = window.splitbench.data.models[0].candidates[i];
                      return c.config + '|' + c.backend + '|' + c.target + '|' + c.device; }
  function snapshot() {
    var root = document.querySelector('.model-answer[data-model="0"]'), card = root.querySelector('.card');
    var b = {};
    root.querySelectorAll('input[data-limit]').forEach(function (el) { b[el.getAttribute('data-limit')] = el.value; });
    b.network = root.querySelector('select[data-limit="network"]').value;
    b.backends = []; b.targets = [];
    root.querySelectorAll('input[data-backend]').forEach(function (el) { if (el.checked) b.backends.push(el.getAttribute('data-backend')); });
    root.querySelectorAll('input[data-target]').forEach(function (el) { if (el.checked) b.targets.push(el.getAttribute('data-target')); });
    var pts = function (cls) { return Array.prototype.map.call(document.querySelectorAll(
      '.plotbox[data-model="0"] .pt.' + cls + ':not(.onprem)'), function (e) { return e.getAttribute('data-key'); }); };
    var rows = Array.prototype.map.call(document.querySelectorAll('table.configs[data-model="0"] tr.fits:not(.hidden)'),
      function (tr) { return keyOf(Number(tr.getAttribute('data-cands').split(',')[0])); });
    var chosenPt = document.querySelector('.plotbox[data-model="0"] .pt.chosen');
    return {budget: b, choice: card.getAttribute('data-choice') ? keyOf(Number(card.getAttribute('data-choice'))) : null,
            closest: card.getAttribute('data-closest') ? keyOf(Number(card.getAttribute('data-closest'))) : null,
            card: card.textContent, fits: pts('fits'), nofit: pts('nofit'), rows: rows,
            chosen_point: chosenPt ? chosenPt.getAttribute('data-key') : null,
            chosen_rows: document.querySelectorAll('table.configs[data-model="0"] tr.chosen').length,
            cmd: root.querySelector('code.cmd').textContent};
  }
  // the first screen, as the page opened
  var card = document.querySelector('.model-answer .card').getBoundingClientRect();
  out.viewport = [window.innerWidth, window.innerHeight];
  out.card_box = [card.top, card.bottom, card.left, card.right];
  out.first_screen_text = document.querySelector('.model-answer .card').textContent;
  out.scenarios = SCEN.map(function (sc) {
    var root = document.querySelector('.model-answer[data-model="0"]');
    if (sc.network === undefined) { return snapshot(); }
    ['backend', 'target'].forEach(function (kind) {
      root.querySelectorAll('input[data-' + kind + ']').forEach(function (el) {
        var want = !sc[kind + 's'] || sc[kind + 's'].indexOf(el.getAttribute('data-' + kind)) >= 0;
        if (el.checked !== want) { el.checked = want; fire(el, 'change'); }
      });
    });
    var sel = root.querySelector('select[data-limit="network"]');
    sel.value = sc.network; fire(sel, 'change');
    ['max_latency_ms', 'max_memory_mb', 'max_upload_kb', 'min_accuracy'].forEach(function (k) {
      if (sc.slider && sc.slider[k] !== undefined) {
        var s = root.querySelector('input[data-slider="' + k + '"]'); s.value = sc.slider[k]; fire(s, 'input');
      } else {
        var el = root.querySelector('input[data-limit="' + k + '"]');
        el.value = sc[k] === null ? '' : String(sc[k]); fire(el, 'input');
      }
    });
    return snapshot();
  });
  // back to no limit at all, every backend and target shown
  (function () {
    var root = document.querySelector('.model-answer[data-model="0"]');
    root.querySelectorAll('input[data-backend], input[data-target]').forEach(function (el) {
      if (!el.checked) { el.checked = true; fire(el, 'change'); } });
    var sel = root.querySelector('select[data-limit="network"]'); sel.value = 'lte'; fire(sel, 'change');
    root.querySelectorAll('input[data-limit]').forEach(function (el) { el.value = ''; fire(el, 'input'); });
    out.reset = snapshot();
  }());
  // hover the recommended point: its numbers in a tooltip; another y axis; another reference for the ratios
  var pt = document.querySelector('.plotbox[data-model="0"] .pt.chosen'), box = pt.getBoundingClientRect();
  pt.dispatchEvent(new MouseEvent('mousemove', {bubbles: true, clientX: box.left + 2, clientY: box.top + 2}));
  var tip = document.querySelector('.plotbox[data-model="0"] .tip');
  out.tip = [tip.style.display, tip.textContent];
  var ys = document.querySelector('.plotbox[data-model="0"] select.yaxis'); ys.value = 'accuracy'; fire(ys, 'change');
  out.yaxis = document.querySelector('.plotbox[data-model="0"] svg').getAttribute('data-y');
  var ref = document.querySelector('select.ref[data-model="0"]'); ref.value = 'c1-simple'; fire(ref, 'change');
  out.ratios = Array.prototype.map.call(document.querySelectorAll('table.configs[data-model="0"] tr[data-row]'),
    function (tr) { return [tr.querySelector('td.name').textContent, tr.getAttribute('data-group'),
      Array.prototype.map.call(tr.querySelectorAll('td.ratio'), function (td) { return td.textContent; })]; });
  // the page's numbers against harness.core.units
  var f = window.splitbench.fmt;
  out.fmt = VALUES.map(function (v) { return [f.sig(v), f.ms(v), f.mb(v), f.bytes(v * 1000)]; });
  // every figure decoded (report.js's own load handler ran first)
  var st = document.getElementById('img-status');
  out.images = [Number(st.getAttribute('data-total')), Number(st.getAttribute('data-loaded'))];
  // row heights, with every folded section open
  document.querySelectorAll('details').forEach(function (d) { d.open = true; });
  out.rows = [];
  document.querySelectorAll('table').forEach(function (t) {
    t.querySelectorAll('tr').forEach(function (tr) {
      var h = tr.getBoundingClientRect().height;
      if (!h) { return; }
      var need = 0, line = 0;
      Array.prototype.forEach.call(tr.cells, function (td) {
        var cs = getComputedStyle(td), r = document.createRange(); r.selectNodeContents(td);
        var rects = Array.prototype.filter.call(r.getClientRects(), function (x) { return x.height > 0; });
        var tops = {}; rects.forEach(function (x) { tops[Math.round(x.top)] = 1; });
        var lines = Math.max(1, Object.keys(tops).length), lh = parseFloat(cs.lineHeight) || 1.45 * parseFloat(cs.fontSize);
        var content = Math.max(lines * lh, r.getBoundingClientRect().height);
        need = Math.max(need, content + parseFloat(cs.paddingTop) + parseFloat(cs.paddingBottom) +
                              parseFloat(cs.borderBottomWidth) + parseFloat(cs.borderTopWidth));
        line = Math.max(line, lh + parseFloat(cs.paddingTop) + parseFloat(cs.paddingBottom) + 2);
      });
      out.rows.push({table: t.className, height: h, need: need, line: line,
                     text: tr.textContent.slice(0, 80)});
    });
  });
  var pre = document.createElement('pre'); pre.id = 'test-results'; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>
"""

FMT_VALUES = [0.0, 0.0089, 0.012345, 0.5, 0.999, 1.0, 3.14159, 12.3456, 99.95, 512.0, 999.4, 1234.5, 45678.9,
              2.5e-5, 7.77e7, 0.125, 1.0625, 2.5, -0.0135, 0.30000000000000004]  # exact ties round half to even


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    d = write_rich_run(tmp_path_factory.mktemp("browser") / "run")
    paths = build_report(d)
    table = load_table(d)
    scen = scenarios(table)
    page = (d / "report.html").read_text()
    probe = d / "report_probe.html"
    probe.write_text(page.replace("</body>", DRIVER % {"scenarios": json.dumps(scen), "values": json.dumps(
        FMT_VALUES)} + "</body>"))
    dom = dump_dom(probe, size=FIRST_SCREEN)
    m = re.search(r'<pre id="test-results">(.*?)</pre>', dom, re.S)
    assert m, "the driver script did not run"
    return d, paths, table, scen, json.loads(html.unescape(m.group(1)))


def _key(c) -> str:
    return f"{c.config}|{c.backend}|{c.target}|{c.device_id}"


def _budget(shown: dict, all_backends: list[str], all_targets: list[str]) -> Budget:
    def num(k):
        return None if shown[k] == "" else float(shown[k])

    backends, targets = shown["backends"], shown["targets"]
    return Budget(max_latency_ms=num("max_latency_ms"), max_memory_mb=num("max_memory_mb"),
                  max_upload_kb=num("max_upload_kb"), min_accuracy=num("min_accuracy"), network=shown["network"],
                  backends=None if len(backends) == len(all_backends) else tuple(backends),
                  target=None if len(targets) == len(all_targets) else tuple(targets))


def test_the_recommendation_is_on_the_first_screen(rendered):
    d, _, table, _, out = rendered
    # --dump-dom's window keeps room for browser chrome (757 px of 900 are the page's); the layout's width,
    # which decides the wrapping above the card, is the first screen's
    assert out["viewport"][0] == FIRST_SCREEN[0]
    top, bottom, left, right = out["card_box"]
    assert 0 <= top and bottom <= FIRST_SCREEN[1] and right <= FIRST_SCREEN[0], out["card_box"]
    rec = choose(table, Budget(max_latency_ms=60, min_accuracy=0.9))  # the spec's [budget]
    assert rec.choice is not None and rec.choice.config in out["first_screen_text"]
    assert "Recommended" in out["first_screen_text"] and "vs on-premise" in out["first_screen_text"]


def test_moving_the_budget_highlights_what_recommend_says(rendered):
    _, _, table, scen, out = rendered
    backends, targets = sorted(set(table["backend"])), sorted(set(table["target"]))
    assert len(out["scenarios"]) == len(scen) > 50
    kinds = {"nothing": 0, "slider": 0, "filtered": 0}
    for sc, seen in zip(scen, out["scenarios"]):
        budget = _budget(seen["budget"], backends, targets)
        if sc.get("slider"):  # the slider moved the limit the page shows; Python gets that very number
            kinds["slider"] += 1
        for k, v in sc.items():
            if k.startswith(("max_", "min_")) and k not in sc.get("slider", {}):
                assert seen["budget"][k] == ("" if v is None else str(v)) or float(seen["budget"][k]) == v
        kinds["filtered"] += budget.backends is not None or budget.target is not None
        rec = choose(table, budget)
        why = f"{budget} -> page {seen['choice']}"
        assert seen["choice"] == (_key(rec.choice) if rec.choice else None), why
        assert seen["chosen_point"] == seen["choice"] and seen["chosen_rows"] == (1 if rec.choice else 0), why
        placed = [c for c in rec.candidates if c.latency_ms is not None and c.privacy is not None]
        assert sorted(seen["fits"]) == sorted(_key(c) for c in placed if c.fits), why
        assert sorted(seen["nofit"]) == sorted(_key(c) for c in placed if not c.fits), why
        rows = sorted(_key(ln.members[0]) for ln in config_lines(rec) if ln.fitting)
        assert sorted(r for r in seen["rows"] if not r.startswith("full|")) == rows, why
        if rec.choice is None:
            kinds["nothing"] += 1
            assert seen["closest"] == _key(rec.closest), why
            assert rec.impossible_line() in seen["card"], (rec.impossible_line(), seen["card"])
        else:
            assert rec.choice.config in seen["card"] and rec.choice.where in seen["card"]
        assert seen["cmd"] == budget.command_line(seen["cmd"].split()[2]), why
    assert kinds["nothing"] >= 3 and kinds["slider"] >= 5 and kinds["filtered"] >= 5, kinds


def test_hover_axes_and_the_reference_of_the_ratios(rendered):
    _, _, table, scen, out = rendered
    display, text = out["tip"]
    rec = choose(table, Budget())
    assert out["reset"]["choice"] == _key(rec.choice) and out["reset"]["budget"]["min_accuracy"] == ""
    assert display == "block" and rec.choice.config in text and "recommended" in text
    assert "latency" in text and "memory" in text and "vs on-premise" in text
    assert out["yaxis"] == "accuracy"
    # against c1-simple: c1-simple itself is the reference; on-premise on onnxruntime (80 ms vs 10 ms) is +700%
    rows = {(name.split(" ")[0].replace("\u26a0", "").strip(), group): r for name, group, r in out["ratios"]}
    assert rows[("c1-simple", "0")] == ["ref", "ref", "ref"]
    assert rows[("on-premise", "0")][0] == "+700%" and rows[("c1-reduced", "0")][0] == "+100%"


def test_no_row_is_taller_than_its_content_and_every_figure_loaded(rendered):
    _, paths, _, _, out = rendered
    assert out["rows"], "no table rows were measured"
    for row in out["rows"]:
        assert row["height"] <= row["need"] + 2, row  # no empty space below the tallest cell
        if "kv" not in row["table"]:  # data tables: one line of text a row (long text clipped, whole on hover)
            assert row["height"] <= row["line"] + 1, row
    n_figures = len({p.stem for p in paths if p.suffix in (".png", ".svg")})
    assert out["images"] == [n_figures, n_figures]


def test_the_page_prints_numbers_as_harness_units_does(rendered):
    out = rendered[4]
    expected = [[sig(v), fmt_ms(v), fmt_mb(v), fmt_bytes(v * 1000)] for v in FMT_VALUES]
    assert out["fmt"] == expected


def test_the_demo_writes_a_screenshot_of_the_first_screen(rendered):
    from PIL import Image

    from harness.demo import first_screen

    d = rendered[0]
    png = first_screen(d)  # what run_digits and run_vgg call after the report
    assert png == d / "report_first_screen.png"
    with Image.open(png) as im:
        assert im.size == FIRST_SCREEN
        colors = im.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colors is not None and len(colors) > 50  # not a blank page
