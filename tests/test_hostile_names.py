"""Names holding a right-to-left override (U+202E), a terminal escape or a newline (issue 21, defect 10): every
terminal table and line shows them escaped (``\\u202e``, ``\\x1b``), and report.html shows them escaped and
isolated (``<bdi>``, ``unicode-bidi: isolate``), before and after its script redraws the answer.

The names come from where a user's or a device's names come from: a model whose layer is named with the
override (the spec cuts it), a target and a phone that name themselves so. The run is the orchestrator's
with a scripted agent and export; the model is real (its layer names are checked against the spec).
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest

from harness import orchestrate
from harness.cli import main
from harness.config.spec import load_spec
from harness.core import exitcodes
from harness.core.text import BIDI_CONTROLS, visible
from harness.measure import executors
from harness.split.configurations import configurations
from tests.fakes import FakeAgent, fake_export, record_hashes

RLO = "\u202e"
EVIL = f"{RLO}evil"  # shown raw, "evil-simple" reads "elpmis-live"
EVIL_MODEL = f'''
def build():
    import torch
    import torch.nn as nn

    class Evil(nn.Module):
        def __init__(self):
            super().__init__()
            self.add_module({EVIL!r}, nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU()))
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * 8 * 8, 10))

        def forward(self, x):
            return self.head(getattr(self, {EVIL!r})(x))

    torch.manual_seed(0)
    return Evil().eval(), torch.randn(1, 3, 8, 8)
'''
PHONE_NAME = "Pixel \x1b[2J\x1b[31mred" + RLO + "7"  # what a phone could report as its model name


def hidden(text: str) -> list[str]:
    """The characters a terminal or a browser would obey rather than show (newlines and tabs are layout)."""
    return sorted({f"U+{ord(ch):04X}" for ch in text if ch in BIDI_CONTROLS or (ord(ch) < 32 and ch not in "\n\t")
                   or 0x7f <= ord(ch) < 0xa0})


@pytest.fixture(scope="module")
def evil_run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("names")
    (tmp / "evil_model.py").write_text(EVIL_MODEL)
    (tmp / "evil.toml").write_text(
        'name = "evil"\n[model]\nsource = "evil_model.py:build"\nseed = 0\n'
        '[split]\ncuts = ["\\u202eevil"]\nembeddings = ["simple"]\n[export]\nbackends = ["onnx"]\n'
        '[run]\ntargets = ["cpu-1core"]\nruns = 12\nwarmup = 1\nwarm_loads = 2\n')
    spec = load_spec(tmp / "evil.toml")
    assert [c.name for c in configurations(spec)][0] == f"{EVIL}-simple"

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(orchestrate, "export_artifacts", fake_export(tmp / "art"))
        mp.setattr(orchestrate, "POST_RUN", ())
        mp.setattr(executors, "open_agent", lambda target, **options: FakeAgent(device_id=f"phone{RLO}1"))
        out = tmp / "run"
        buf = io.StringIO()
        mp.setattr("sys.stderr", buf)  # the run's job lines (the progress console writes to stderr)
        assert orchestrate.run_spec(spec, out, progress=True).exit_code == exitcodes.OK
    (out / "job_lines.txt").write_text(buf.getvalue())
    (out / "privacy.csv").write_text("model,cut,embedding,log_rank_privacy,primary_accuracy\n"
                                     f"evil_model:build,{EVIL},simple,0.4,0.9\n")
    return out


def test_the_run_job_lines_show_the_names_escaped(evil_run):
    lines = (evil_run / "job_lines.txt").read_text()
    assert "\\u202eevil-simple" in lines and hidden(lines) == []


@pytest.mark.parametrize("argv", [["recommend"], ["recommend", "--all"], ["recommend", "--json"]])
def test_recommend_shows_the_names_escaped(evil_run, capsys, argv):
    before = record_hashes(evil_run)
    assert main([argv[0], str(evil_run), *argv[1:]]) == exitcodes.OK
    out = capsys.readouterr().out
    if "--json" in argv:  # data, not display: the name as it is, JSON-escaped
        assert json.loads(out)["choice"]["config"] == f"{EVIL}-simple" and RLO not in out
    else:
        assert "Recommended: \\u202eevil-simple on onnx/cpu-1core" in out and hidden(out) == []
    assert record_hashes(evil_run) == before


@pytest.mark.parametrize("fmt", ["table", "md"])
def test_compare_shows_the_names_escaped(evil_run, capsys, fmt):
    assert main(["compare", str(evil_run), str(evil_run), "--format", fmt]) == exitcodes.OK
    out = capsys.readouterr().out
    assert "\\u202eevil-simple" in out and hidden(out) == []


def test_a_nothing_fits_line_shows_the_names_escaped(evil_run, capsys):
    assert main(["recommend", str(evil_run), "--max-latency-ms", "0.001"]) == exitcodes.NOTHING_FITS
    err = capsys.readouterr().err
    assert err.startswith("error: nothing fits the budget for evil_model:build: closest is \\u202eevil-simple")
    assert hidden(err) == [] and err.count("\n") == 1


def test_the_export_table_shows_the_names_escaped(evil_run):
    from harness.export.cache import Artifact
    from harness.export.stage import print_export_table

    spec = load_spec(evil_run.parent / "evil.toml")
    config = configurations(spec)[0]
    rows = [Artifact(config=config, backend="onnx", key="k", path=None, status="failed", verified=False,
                     reason=f"converter said: layer {EVIL} [bold]unsupported[/bold]\x1b[0m")]
    buf = io.StringIO()
    print_export_table(rows, file=buf)
    text = buf.getvalue()
    assert "\\u202eevil-simple" in text and "[bold]unsupported[/bold]\\x1b[0m" in text and hidden(text) == []


def test_devices_shows_what_a_phone_says_escaped(monkeypatch, capsys):
    from device_agents import base
    from device_agents.base import DeviceInfo

    phone = DeviceInfo(device_id=f"SERIAL{RLO}1", target="android", platform="android", name=PHONE_NAME,
                       backends={"litert": "benchmark_model 2.18"}, fingerprint={"model": PHONE_NAME})
    monkeypatch.setattr(base, "discover_devices", lambda: ([phone], [f"note from {PHONE_NAME}"]))
    assert main(["devices"]) == exitcodes.OK
    out = capsys.readouterr().out
    assert "\\x1b[2J\\x1b[31mred\\u202e7" in out and "SERIAL\\u202e1" in out and hidden(out) == []


def test_the_report_shows_names_escaped_and_isolated(evil_run, capsys):
    assert main(["report", str(evil_run)]) == exitcodes.OK
    page = (evil_run / "report.html").read_text()
    # What is shown: no character that steers the display. Attributes and the page's JSON keep the data as it is
    # (the script matches them to each other); neither is displayed.
    shown = re.sub(r'<script type="application/json"[^>]*>.*?</script>', "", page, flags=re.S)
    shown = re.sub(r'\s(?:data-[\w-]+|value)="[^"]*"', "", shown)
    assert hidden(shown) == []
    assert '<b class="config">\\u202eevil-simple</b>' in page  # the headline (isolated by the style sheet)
    assert "unicode-bidi:isolate" in page and ".config,.where,td.name,td.device,bdi" in page
    why = page[page.index('<p class="why">'):]
    assert why.startswith('<p class="why"><bdi>evil_model:build</bdi>: the most private')
    assert ("Ratios are against on-premise (the whole model on the phone: <bdi>full</bdi>) on "
            "<bdi>onnx/cpu-1core</bdi>.") in why
    assert '<h3>Device: <bdi>phone\\u202e1</bdi></h3>' in page  # the phone's id, as the manifest keys it


@pytest.mark.browser
def test_the_report_script_redraws_the_names_escaped(evil_run):
    """In headless Chromium: the script redraws the answer for another network; no text node of the page then
    holds a character that steers the display, and the escaped name is shown."""
    from harness.report.browser import dump_dom, find_chromium

    if find_chromium() is None:
        pytest.skip("headless Chromium not installed (`make browser` installs it)")
    assert main(["report", str(evil_run)]) == exitcodes.OK
    probe = evil_run / "probe.html"
    script = r"""<script>
window.addEventListener('load', function () {
  var sel = document.querySelector('select[data-limit="network"]');
  sel.value = 'wifi'; sel.dispatchEvent(new Event('change', {bubbles: true}));
  var bad = [], walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT), n;
  var HIDDEN = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/;
  while ((n = walker.nextNode())) {
    if (n.parentNode.tagName !== 'SCRIPT' && HIDDEN.test(n.nodeValue)) { bad.push(n.nodeValue.slice(0, 60)); }
  }
  var card = document.querySelector('.model-answer .card');
  var out = document.createElement('pre'); out.id = 'test-results';
  out.textContent = JSON.stringify({bad: bad, card: card.textContent, bdi: card.querySelectorAll('bdi').length});
  document.body.appendChild(out);
});
</script>"""
    probe.write_text((evil_run / "report.html").read_text().replace("</body>", script + "</body>"))
    dom = dump_dom(probe)
    import html as html_mod

    found = json.loads(html_mod.unescape(re.search(r'<pre id="test-results">(.*?)</pre>', dom, re.S).group(1)))
    assert found["bad"] == [] and "\\u202eevil-simple" in found["card"] and found["bdi"] >= 1


def test_visible_escapes_only_what_steers_the_display():
    assert visible("conv1-simple") == "conv1-simple"
    assert visible("שכבה-1 emoji 👍🏽 nbsp\u00a0") == "שכבה-1 emoji 👍🏽 nbsp\u00a0"  # letters of any script stay
    assert visible(f"{RLO}evil\x1b[31m\n\u2028") == "\\u202eevil\\x1b[31m\\n\\u2028"
    assert visible("/tmp/bad\udcffname") == "/tmp/bad\\xffname"  # a path byte that is not UTF-8
    assert visible("a\nb", keep="\n") == "a\nb"
