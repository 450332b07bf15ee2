"""A corrupted artifact in the export cache is never measured as good data.

Real exports of the tiny CNN (ONNX and LiteRT); bytes are flipped in a cached ``.onnx`` and a cached
``.tflite``. Every cache hit is checked against the sha256 recorded at export: ``export`` and ``run``
rebuild what does not match, say so (one line per artifact, and the summary counts it), and the rebuilt
artifact computes what the PyTorch phone part computes. Before, ``run`` measured the flipped ``.onnx``
"ok" with the original's ``verified`` and ``max_rel_err`` (its output off by 163 against 0.33).

The warm path stays cheap: a file is hashed only when its (size, mtime_ns, ctime_ns, inode) differs from
when its hash last matched; resetting the mtime after a write does not hide the write (ctime moves).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from device_agents.base import sha256_file
from harness.export import cache as artifact_cache
from harness.export import stage as ex
from harness.config.backends import BACKENDS, Exported
from harness.cli import main
from harness.split.configurations import build_parts, load_model
from harness.config.spec import load_spec

FIXTURES = Path(__file__).parent / "fixtures"

pytestmark = pytest.mark.slow


def _tiny(tmp_path: Path, *, cuts=("conv1", "conv2"), backends=("onnx", "litert")) -> Path:
    shutil.copy(FIXTURES / "tiny_model.py", tmp_path / "tiny_model.py")
    text = (FIXTURES / "tiny.toml").read_text()
    text = text.replace('cuts = ["conv1", "conv2"]', f"cuts = {json.dumps(list(cuts))}")
    text = text.replace('backends = ["onnx", "litert"]', f"backends = {json.dumps(list(backends))}")
    text = text.replace("[export]\n", '[export]\ncache_dir = "cache"\n', 1)
    path = tmp_path / "tiny.toml"
    path.write_text(text)
    return path


def _flip(path: Path, *, keep_mtime: bool = False) -> None:
    """Flip 64 bytes in the middle of the file, in place (same size, same inode)."""
    st = path.stat()
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(b ^ 0xFF for b in data[middle:middle + 64])
    with open(path, "r+b") as f:
        f.write(data)
    if keep_mtime:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size


def _by_name(artifacts) -> dict:
    return {(a.config.name, a.backend): a for a in artifacts}


def _matches_pytorch(spec_path: Path, artifact) -> float:
    """max|out - ref| / max|ref| of the artifact's runtime against the PyTorch phone part, on a fresh input."""
    spec = load_spec(spec_path)
    loaded = load_model(spec)
    phone, _, _ = build_parts(loaded, artifact.config, spec)
    x = torch.randn(*loaded.example_input.shape, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        ref = phone(x).numpy()
    out = BACKENDS[artifact.backend].run(Exported(artifact.path, artifact.input_name, artifact.output_name),
                                         x.numpy())
    return float(np.max(np.abs(np.asarray(out).reshape(ref.shape) - ref)) / np.max(np.abs(ref)))


def _recorded_hashes_hold(artifact) -> bool:
    root = artifact.path.parent
    return all(sha256_file(root / f.relpath) == f.sha256 for f in artifact.files)


def test_export_rebuilds_a_flipped_onnx_and_tflite_and_says_so(tmp_path, capfd):
    spec_path = _tiny(tmp_path)
    first = _by_name(ex.export_spec(load_spec(spec_path), progress=False))
    assert all(a.status == "ok" for a in first.values())
    onnx, tflite = first["conv1-simple", "onnx"], first["conv2-simple", "litert"]
    _flip(onnx.path)
    _flip(tflite.path)
    assert _matches_pytorch(spec_path, onnx) > 1e-2  # the flip does change what it computes

    capfd.readouterr()
    assert main(["export", str(spec_path)]) == 0
    out, err = capfd.readouterr()
    assert "Traceback" not in err
    for a in (onnx, tflite):
        said = [ln for ln in err.splitlines() if ln.startswith(f"rebuilding {a.config.name} {a.backend}:")]
        assert len(said) == 1 and "sha256 recorded at export" in said[0], err
        assert f"rebuilt {a.name}: the cached copy was unusable: {a.path.name} does not match the sha256" in out
    assert "4 from the cache, 2 rebuilt" in out, out

    again = _by_name(ex.export_spec(load_spec(spec_path), progress=False))  # now all from the cache, checked
    assert all(a.cached and not a.rebuilt for a in again.values())
    for key in (("conv1-simple", "onnx"), ("conv2-simple", "litert")):
        a = again[key]
        assert a.verified and a.max_rel_err <= ex.RTOL and _recorded_hashes_hold(a)
        assert _matches_pytorch(spec_path, a) <= ex.RTOL

    # --json: the row says why it was rebuilt
    _flip(onnx.path)
    assert main(["export", str(spec_path), "--json"]) == 0
    rows = {(r["config"]["name"], r["backend"]): r for r in json.loads(capfd.readouterr().out)}
    assert "sha256" in rows["conv1-simple", "onnx"]["rebuilt"] and not rows["conv1-simple", "onnx"]["cached"]
    assert [k for k, r in rows.items() if r["rebuilt"]] == [("conv1-simple", "onnx")]


def test_run_rebuilds_before_measuring_and_keeps_what_was_measured(tmp_path, capfd, monkeypatch):
    monkeypatch.setenv("SPLITBENCH_LEASE_DIR", str(tmp_path / "leases"))
    spec_path = _tiny(tmp_path, cuts=("conv1",))
    arts = _by_name(ex.export_spec(load_spec(spec_path), progress=False))
    onnx, tflite = arts["conv1-simple", "onnx"], arts["full", "litert"]
    _flip(onnx.path)
    _flip(tflite.path)
    capfd.readouterr()

    out = tmp_path / "out"
    assert main(["run", str(spec_path), "--out", str(out)]) == 0
    _, err = capfd.readouterr()
    assert "Traceback" not in err
    for a in (onnx, tflite):
        assert f"rebuilding {a.config.name} {a.backend}: the cached copy was unusable" in err, err
    records = {(r["config"], r["identity"]["backend"]): r
               for r in (json.loads(p.read_text()) for p in (out / "records").glob("*.json"))}
    for a in (onnx, tflite):
        r = records[a.config.name, a.backend]
        assert r["result"]["status"] == "ok" and r["verified"] and r["max_rel_err"] <= ex.RTOL
        assert Path(r["artifact_path"]) == a.path and _recorded_hashes_hold(a)
        assert _matches_pytorch(spec_path, a) <= ex.RTOL  # what was measured computes the right thing

    # Corrupted again after the run: --resume rebuilds, says so, and every record on disk stays as it was.
    before = {p.name: p.read_bytes() for p in (out / "records").glob("*.json")}
    _flip(onnx.path)
    assert main(["run", str(spec_path), "--out", str(out), "--resume"]) == 0
    assert "rebuilding conv1-simple onnx" in capfd.readouterr().err
    assert {p.name: p.read_bytes() for p in (out / "records").glob("*.json")} == before
    assert _recorded_hashes_hold(onnx)


def test_a_write_hidden_by_resetting_the_mtime_is_still_found(tmp_path):
    spec_path = _tiny(tmp_path, cuts=("conv1",), backends=("onnx",))
    a = ex.export_spec(load_spec(spec_path), progress=False)[0]
    _flip(a.path, keep_mtime=True)
    again = ex.export_spec(load_spec(spec_path), progress=False)[0]
    assert "sha256" in again.rebuilt and not again.cached and _recorded_hashes_hold(again)


def test_the_warm_path_hashes_only_what_changed_and_names_every_problem(tmp_path, monkeypatch):
    spec_path = _tiny(tmp_path, cuts=("conv1",), backends=("onnx",))
    spec = load_spec(spec_path)
    a = ex.export_spec(spec, progress=False)[0]
    entry = a.path.parent

    hashed = []
    real = artifact_cache.sha256_file
    monkeypatch.setattr(artifact_cache, "sha256_file", lambda p: hashed.append(Path(p).name) or real(p))

    def look():
        return artifact_cache.lookup(entry, a.config, a.backend, a.key)

    assert look().artifact is not None and hashed == []  # stamped at export: nothing read
    os.utime(a.path)  # touched, same bytes: hashed once, still a hit, stamped again
    assert look().artifact is not None and hashed == ["model.onnx"]
    assert look().artifact is not None and hashed == ["model.onnx"]
    (entry / artifact_cache.STAMPS).write_text("not json")  # a damaged stamp file only costs a hash
    assert look().artifact is not None and hashed == ["model.onnx"] * 2

    good = a.path.read_bytes()
    a.path.write_bytes(good[:-10])
    assert look().problem == f"model.onnx is {len(good) - 10} bytes, {len(good)} at export"
    a.path.write_bytes(good)
    a.path.with_name("model.onnx.data").write_bytes(b"weights")
    assert look().problem == "model.onnx.data was added after export"
    a.path.with_name("model.onnx.data").unlink()
    a.path.unlink()
    assert look().problem == "model.onnx is missing"
    a.path.write_bytes(good)
    assert look().artifact is not None
    (entry / "meta.json").write_text("{ not json")
    assert look().problem == "its meta.json cannot be read (JSONDecodeError)"
    shutil.rmtree(entry)
    assert look() == artifact_cache.Lookup()  # a plain miss: nothing to say

    rebuilt = ex.export_spec(spec, progress=False)[0]
    assert rebuilt.status == "ok" and not rebuilt.rebuilt and not rebuilt.cached
