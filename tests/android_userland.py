"""Android's own userland for the loopback phone: ``mksh`` (the phone's ``/system/bin/sh``) and
``toybox`` (its coreutils), Debian's packages of both (``make test`` installs them).

A private directory of toybox applet links stands in for ``/system/bin``'s commands: the loopback
phone's shell has that directory on its PATH and nothing of this host's (no ``/bin``, no ``/usr/bin``),
so a command the agent sends that only a GNU tool would take fails here as it would on a phone.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import subprocess
import tempfile
from pathlib import Path

MKSH = shutil.which("mksh")
TOYBOX = shutil.which("toybox")
ADB = shutil.which("adb")
MISSING = [name for name, path in (("mksh", MKSH), ("toybox", TOYBOX)) if path is None]
SKIP_REASON = (f"Android's userland is not installed here (no {' and no '.join(MISSING)}): "
               "`apt-get install mksh toybox` (make test installs them)")
ADB_SKIP_REASON = "Google's adb is not installed here: `apt-get install adb` (make test installs it)"


@functools.cache
def applets() -> tuple[str, ...]:
    """The applets this toybox has (``toybox`` with no argument lists them)."""
    out = subprocess.run([TOYBOX], capture_output=True, text=True, check=True).stdout
    return tuple(sorted(set(out.split()) - {"toybox"}))


@functools.cache
def _bin_dir(without: frozenset[str]) -> Path:
    directory = Path(tempfile.mkdtemp(prefix="splitbench-toybox-"))
    atexit.register(shutil.rmtree, directory, True)
    for name in applets():
        if name not in without:
            (directory / name).symlink_to(TOYBOX)
    return directory


def toybox_bin(without: tuple[str, ...] = ()) -> Path:
    """A directory with one link to toybox per applet (made once per test session), less ``without``."""
    if MISSING:
        raise RuntimeError(SKIP_REASON)
    return _bin_dir(frozenset(without))


def android_path(system_bin: Path, without: tuple[str, ...] = ()) -> str:
    """The loopback phone's PATH: its ``/system/bin`` (``sh`` -> mksh and the stand-ins) then toybox."""
    return f"{system_bin}:{toybox_bin(without)}"
