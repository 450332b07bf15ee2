"""``manifest.json``: what a results directory holds and how it was made (spec, versions, host, devices,
executor, status and counts), written when a run starts and again when it ends.

It is also the guard of a results directory: a non-empty ``--out`` must hold the manifest of the same spec
(:func:`check_out_dir`), so results of two specs are never mixed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterable

from device_agents.base import DeviceInfo
from harness import __version__
from harness.config.spec import Spec, spec_dict
from harness.core.clock import utc_now
from harness.core.errors import UserError
from harness.results.layout import LOCK_FILE, MANIFEST_JSON
from harness.results.records import RESULTS_SCHEMA_HISTORY, RESULTS_SCHEMA_VERSION, SKIPPED, ResultRecord
from harness.results.store import atomic_write_json

# Distributions whose versions define what a number means (runtimes and converters).
VERSIONED = ("splitbench", "torch", "numpy", "onnx", "onnxscript", "onnxruntime", "ai-edge-litert",
             "litert-torch", "executorch", "coremltools", "pandas", "pyarrow", "matplotlib")


def package_versions() -> dict[str, str | None]:
    from device_agents.host import installed_version

    return {name: installed_version(name) for name in VERSIONED}


def git_state() -> dict[str, Any]:
    """The commit of the splitbench checkout and whether it has uncommitted changes (None outside git)."""
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=10)
        if commit.returncode != 0:
            return {"commit": None, "dirty": None}
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                capture_output=True, text=True, timeout=30)
        return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip()) if status.returncode == 0
                else None}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def check_out_dir(out: Path, hash_: str, *, resume: bool) -> dict[str, Any] | None:
    """Refuse to mix results: a non-empty OUT must be a results directory of the same spec.

    ``--resume`` into a directory of another spec is refused too: its records would be mixed with a
    different plan. Returns the manifest already in OUT (None for a new or empty directory).
    """
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a directory")
    if not out.exists() or not any(p.name != LOCK_FILE for p in out.iterdir()):
        return None
    manifest_path = out / MANIFEST_JSON
    if not manifest_path.is_file():
        if resume:  # the caller vouches for the directory (the demo puts its privacy table there first)
            return None
        raise UserError(f"--out {out} is not empty and holds no {MANIFEST_JSON}: choose a new or empty "
                        "directory, or add results to it with --resume")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{manifest_path} is not readable ({exc}); choose a new --out") from None
    version = manifest.get("schema_version")
    if not isinstance(version, int) or version > RESULTS_SCHEMA_VERSION:
        raise UserError(f"{out} was written by a newer splitbench (results schema {version!r}); upgrade splitbench "
                        "or choose a new --out")
    if manifest.get("spec_hash") != hash_:
        what = "--resume cannot continue it with a different spec" if resume else "choose a new --out"
        raise UserError(f"--out {out} holds results of another spec (hash {str(manifest.get('spec_hash'))[:12]}, "
                        f"this one {hash_[:12]}; the spec, --target or --runs differ): {what}")
    return manifest


def _session(manifest: dict[str, Any]) -> dict[str, Any]:
    keys = ("started_at", "ended_at", "status", "spec_hash", "resume", "splitbench_version", "git", "counts", "lost")
    return {k: manifest.get(k) for k in keys}


def build_manifest(spec: Spec, hash_: str, devices: dict[str, DeviceInfo], *, resume: bool,
                   previous: dict[str, Any] | None) -> dict[str, Any]:
    from device_agents.host import host_fingerprint

    sessions = list(previous.get("sessions", [])) + [_session(previous)] if previous else []
    return {
        "schema_version": RESULTS_SCHEMA_VERSION,
        "schema_history": {str(k): v for k, v in RESULTS_SCHEMA_HISTORY.items()},
        "splitbench_version": __version__,
        "git": git_state(),
        "spec_hash": hash_,
        "spec_file_sha256": spec.text_hash or None,
        "spec": spec_dict(spec),
        "host": host_fingerprint(),
        # by device id: one phone is one entry, whatever its target is called
        "devices": {info.device_id: {"spec_target": t, **info.to_dict()} for t, info in devices.items()},
        "versions": package_versions(),
        "converters": {},
        "started_at": utc_now(),
        "ended_at": None,
        "status": "running",
        "resume": resume,
        "argv": list(sys.argv),
        "counts": {},
        "lost": {},
        "sessions": sessions,  # earlier runs into this directory (resumed or repeated), oldest first
    }


def start(out: Path, spec: Spec, hash_: str, devices: dict[str, DeviceInfo], *, resume: bool,
          previous: dict[str, Any] | None, artifacts: Iterable[Any], executor: dict[str, Any]) -> dict[str, Any]:
    """Write the manifest of a run that starts (status ``running``) and return it."""
    manifest = build_manifest(spec, hash_, devices, resume=resume, previous=previous)
    manifest["converters"] = {a.backend: dict(a.converter) for a in artifacts if getattr(a, "converter", None)}
    manifest["executor"] = executor
    atomic_write_json(out / MANIFEST_JSON, manifest)
    return manifest


def finish(out: Path, manifest: dict[str, Any], *, status: str, records: list[ResultRecord], planned: int,
           measured: int, resumed: int, not_attempted: int, lost: dict[str, str],
           error: BaseException | None = None) -> dict[str, int]:
    """Write the manifest of a run that ended: its status, what it counted, what ran; returns the counts."""
    counts = {"planned": planned, "done": len(records), "measured_now": measured, "resumed": resumed,
              "ok": sum(1 for r in records if r.ok), "failed": sum(1 for r in records if r.failed),
              "skipped": sum(1 for r in records if r.status == SKIPPED), "not_attempted": not_attempted}
    if error is not None:
        manifest["error"] = f"{type(error).__name__}: {error}"
    manifest.update(ended_at=utc_now(), status=status, counts=counts, lost=lost, runtimes=runtimes(records))
    atomic_write_json(out / MANIFEST_JSON, manifest)
    return counts


def runtimes(records: list[ResultRecord]) -> dict[str, dict[str, str]]:
    """The runtime versions each worker reported, per backend (what actually ran, not what is installed)."""
    seen: dict[str, dict[str, str]] = {}
    for r in records:
        if r.ok and r.result.get("runtime"):
            seen.setdefault(r.backend, {}).update(r.result["runtime"])
    return seen
