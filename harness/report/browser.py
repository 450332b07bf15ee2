"""Headless Chromium for report.html: the first-screen screenshot the demo writes, and the DOM the browser
test reads after the page's scripts ran.

Chromium is optional: :func:`find_chromium` returns None when it is not installed (``make browser``
installs it on Debian), and the callers say so and go on. It runs with a fresh profile directory, no
network services and no sandbox (root in a container has none), and is killed on timeout.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

FIRST_SCREEN = (1400, 900)  # the "first screen": a laptop browser window


def find_chromium() -> str | None:
    """The headless-capable Chromium on PATH, or None."""
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def run_chromium(*args: str, timeout_s: float = 90, chromium: str | None = None) -> subprocess.CompletedProcess:
    """Run headless Chromium once with ``args`` (a URL among them) in a throw-away profile."""
    exe = chromium or find_chromium()
    if exe is None:
        raise FileNotFoundError("chromium is not installed (Debian: apt-get install chromium; or `make browser`)")
    with tempfile.TemporaryDirectory(prefix="splitbench-chromium-") as profile:
        return subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                               "--disable-background-networking", "--disable-component-update", "--disable-sync",
                               "--disable-quic", "--hide-scrollbars", f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=timeout_s)


def screenshot(page: Path, png: Path, *, size: tuple[int, int] = FIRST_SCREEN, timeout_s: float = 90) -> Path:
    """Write a PNG of ``page`` as a ``size`` browser window shows it first (scripts run, nothing scrolled)."""
    png = Path(png)
    tmp = png.with_name(f".{png.name}.tmp.png")
    proc = run_chromium(f"--window-size={size[0]},{size[1]}", "--virtual-time-budget=5000",
                        f"--screenshot={tmp}", Path(page).resolve().as_uri(), timeout_s=timeout_s)
    if not tmp.is_file():
        raise RuntimeError(f"chromium wrote no screenshot (exit {proc.returncode}): {proc.stderr.strip()[-300:]}")
    tmp.replace(png)
    return png


def dump_dom(page: Path, *, size: tuple[int, int] = FIRST_SCREEN, timeout_s: float = 90) -> str:
    """The DOM of ``page`` after its scripts ran, in a ``size`` window."""
    proc = run_chromium(f"--window-size={size[0]},{size[1]}", "--virtual-time-budget=10000", "--dump-dom",
                        Path(page).resolve().as_uri(), timeout_s=timeout_s)
    if proc.returncode != 0:
        raise RuntimeError(f"chromium failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
    return proc.stdout
