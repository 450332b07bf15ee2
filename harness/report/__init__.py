"""`splitbench report`: report.html, the answer first (see :mod:`harness.report.build`).

- ``build.py``: rebuild the figures, choose the budget, write the page;
- ``data.py``: what the page embeds (every candidate's numbers, as `recommend` computes them);
- ``page.py``: the HTML, section by section;
- ``report.js`` / ``report.css``: the budget controls, the interactive plot, the style sheet (inlined);
- ``browser.py``: headless Chromium, for the first-screen screenshot and the browser test.
"""

from harness.report.build import REPORT_HTML, build_report

__all__ = ["REPORT_HTML", "build_report"]
