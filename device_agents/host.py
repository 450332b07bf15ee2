"""Facts about this host, read once for the manifest and for the local agent (whose device is the host): its
CPU and kernel, and which version of each distribution (runtime, converter) is installed."""

from __future__ import annotations

import os
import platform
import re
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any


def read_text(path: str | Path) -> str | None:
    """A small system file (sysfs, procfs), stripped; None when it is not exposed (VMs, containers)."""
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


@lru_cache(maxsize=None)
def installed_version(dist: str) -> str | None:
    """The installed version of a distribution (``onnxruntime``, ``ai-edge-litert``, ...), or None when it is not
    installed; read from its metadata, never by importing it (importing a runtime costs seconds)."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (x86 ``model name``, ARM ``Hardware``/``Processor``)."""
    text = read_text("/proc/cpuinfo") or ""
    for key in ("model name", "Hardware", "Processor", "cpu model"):
        m = re.search(rf"^{key}\s*:\s*(.+)$", text, re.MULTILINE)
        if m:
            return m.group(1).strip()
    return platform.processor() or "unknown"


def cpu_governors() -> str:
    """The CPU frequency governors in use, or why there are none."""
    found = sorted({g for p in Path("/sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq/scaling_governor")
                    if (g := read_text(p))})
    return ",".join(found) if found else "unavailable (no cpufreq in this kernel/VM)"


def host_fingerprint() -> dict[str, Any]:
    """The machine the orchestrator runs on (for the local target, also the measuring machine)."""
    import psutil

    return {
        "hostname": platform.node(), "system": platform.system(), "kernel": platform.release(),
        "kernel_version": platform.version(), "machine": platform.machine(),
        "cpu_model": cpu_model(), "cpu_count": os.cpu_count(), "cpu_governor": cpu_governors(),
        "mem_total_b": psutil.virtual_memory().total,
        "python": platform.python_version(), "python_implementation": platform.python_implementation(),
    }
