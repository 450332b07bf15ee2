"""The export cache: one directory per artifact, keyed by everything that changes the artifact.

``<cache_dir>/<key>/`` holds the artifact (a file, or an ``.mlpackage`` directory), ``meta.json``
(everything in :class:`Artifact`, plus every file's size and sha256), the converter's ``convert.log``
and ``verified.json`` (see below). The key hashes what changes the artifact (see :func:`cache_key`). A
warm export reads only these small files: it imports neither torch nor a converter and builds no
model. Entries are published by an atomic rename. Failed conversions are not cached (a failure is
often environmental, and a rerun should try again).

Every hit is checked against the sha256 recorded at export (:func:`lookup`): a file missing, of another
size or with other bytes makes the entry a miss with the reason, and the export builds it again and says
so. Hashing is what costs (about 1 s per GB here), so ``verified.json`` keeps each file's (size,
mtime_ns, ctime_ns, inode) from when its sha256 last matched, and a file whose stat is unchanged is not
read again. Any write to a file, and resetting its mtime afterwards, changes its ctime, which no user
can set: an artifact changed through the file system is always hashed again. What this does not see is
a change below the file system (a failing disk); ``export --force`` rebuilds everything.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from device_agents.base import ArtifactFile, ArtifactRef, artifact_files, content_sha256, sha256_file
from device_agents.host import installed_version
from harness.config.backends import BACKENDS, Exported
from harness.config.spec import Spec
from harness.export import calibration as calib
from harness.export import int8_judge, int8_readers, quantize
from harness.split import upload
from harness.split.configurations import Configuration, ModelIdentity, file_sha256

# Version of the cache layout and meta.json. Bump when either changes meaning; every old entry is
# then rebuilt, never misread.
#   1: one directory per key holding the artifact, meta.json and convert.log.
#   2: meta.json lists every file of the artifact with its size and sha256 (the device-side cache key).
EXPORT_FORMAT = 2

# The seed of the verification input (a standard normal tensor of the model's input shape).
VERIFY_SEED = 20240
# Largest accepted max|out - ref| / max|ref|. Every backend here computes in float32; a correct
# conversion lands around 1e-6 (different summation order, fused kernels). 1e-4 is the bound the
# project promises; a wrong conversion (a dropped layer, wrong layout) is off by order 1.
RTOL = 1e-4
ENV_CACHE = "SPLITBENCH_CACHE"
STAMPS = "verified.json"  # per file: (size, mtime_ns, ctime_ns, inode) when its sha256 last matched meta.json


@dataclass(frozen=True)
class Artifact:
    """One exported phone part for one runtime: where it is, whether it is right, what it costs."""

    config: Configuration
    backend: str
    key: str  # the cache key (sha256 hex); also the cache directory's name
    path: Path | None  # the file (or .mlpackage directory) the runtime loads; None when failed
    status: str  # "ok" | "failed"
    verified: bool  # output compared with PyTorch on this host and within RTOL
    max_abs_err: float | None = None  # max|out - ref| on the verification input
    max_rel_err: float | None = None  # max|out - ref| / max|ref| (reduced: / max(|W||f|+|b|))
    reason: str = ""  # the converter's reason on failure, or why not verified
    artifact_bytes: int | None = None
    input_shape: tuple[int, ...] = ()
    output_shape: tuple[int, ...] = ()
    input_name: str = ""  # the runtime's name for the input (ExecuTorch: "forward/input0", by position)
    output_name: str = ""
    input_dtype: str = "float32"
    costs: dict[str, Any] = field(default_factory=dict)  # harness.split.costs.Costs.to_dict(), upload in output_dtype
    export_s: float | None = None  # conversion seconds (the original conversion's when cached)
    cached: bool = False  # read from the cache by this export
    converter: dict[str, str] = field(default_factory=dict)  # distribution -> version
    info: dict[str, Any] = field(default_factory=dict)  # e.g. PCA explained variance, log file
    files: tuple[ArtifactFile, ...] = ()  # every file a load reads, with size and sha256 (ok artifacts)
    rebuilt: str = ""  # why the cached copy was not used and this one was built instead ("" when it was not)
    precision: str = "float32"  # what the part computes in: float32 or int8
    output_dtype: str = "float32"  # the type of the tensor the phone uploads (a static int8 LiteRT part: int8)
    quantization: dict[str, Any] = field(default_factory=dict)  # int8: calibration, int8 check, top-1 agreement

    @property
    def name(self) -> str:
        """``conv1-simple/onnx``; the precision after the configuration when it is not float32:
        ``conv1-simple int8/onnx``."""
        precision = f" {self.precision}" if self.precision != "float32" else ""
        return f"{self.config.name}{precision}/{self.backend}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["config"] = {**asdict(self.config), "name": self.config.name}
        d["path"] = str(self.path) if self.path else None
        d["input_shape"] = list(self.input_shape)
        d["output_shape"] = list(self.output_shape)
        return d

    def exported(self) -> Exported:
        """The artifact as an exporter returned it (its path and tensor names)."""
        return Exported(self.path, self.input_name, self.output_name)

    def ref(self) -> ArtifactRef:
        """What a device agent needs to place this artifact (content key, every file with its hash)."""
        if self.path is None:
            raise ValueError(f"{self.name} has no artifact ({self.status}: {self.reason})")
        root = self.path if self.path.is_dir() else self.path.parent
        files = self.files or ArtifactRef.from_path(self.path, key=self.key, backend=self.backend).files
        return ArtifactRef(key=self.key, backend=self.backend, path=str(self.path), root=str(root), files=tuple(files),
                           sha256=content_sha256(files))


# --------------------------------------------------------------------------------------------------
# Cache keys and the cache directory


def converter_versions(backend: str, precision: str = "float32") -> dict[str, str]:
    """The installed version of each converter of ``backend`` ("missing" when one is not installed); int8 adds
    the quantizer's (torchao, where PT2E lives, for ExecuTorch and LiteRT)."""
    dists = BACKENDS[backend].converter_packages
    if precision != "float32":
        dists += quantize.INT8_PACKAGES[backend]
    return {dist: installed_version(dist) or "missing" for dist in dists}


@functools.cache
def _pipeline_hash() -> str:
    """Hash of the code that decides what a phone part is and what meta.json records about it.

    The functions that seed and build the model, split it and fit the PCA (not the whole of
    configurations.py, whose messages change often) and the cost counter. inspect reads their
    source from the files already imported; no torch is needed.
    """
    import inspect

    from harness.split import configurations as conf

    h = hashlib.sha256()
    for fn in (conf.load_model, conf._trace, conf.split_at, conf.reduce_with_pca, conf.calibration_batch,
               conf.build_parts):
        h.update(inspect.getsource(fn).encode() + b"\0")
    costs = Path(conf.__file__).with_name("costs.py")
    h.update(file_sha256(costs).encode() if costs.is_file() else b"no costs.py")
    return h.hexdigest()[:16]


@functools.cache
def quantizer_hash() -> str:
    """Hash of the code that decides what an int8 artifact is and what is recorded about it: the exporters,
    the calibration's choice of inputs, the artifact readers, the int8 rule, the upload size, and the
    verification module (its file: it imports this module, so it is read, not imported)."""
    import inspect

    h = hashlib.sha256()
    for fn in (*quantize.QUANTIZER_FUNCTIONS, calib.calibration_for, calib.Calibration.inputs,
               calib.Calibration.verify_input, calib.Calibration.held_out, *int8_readers.READERS.values(),
               int8_readers.check_int8, int8_readers.Int8Check.problem.fget, int8_readers.float32_param_bytes,
               int8_judge.judge, upload.upload_costs):
        h.update(inspect.getsource(fn).encode() + b"\0")
    h.update(file_sha256(Path(__file__).with_name("int8_verify.py")).encode())
    return h.hexdigest()[:16]


def cache_key(ident: ModelIdentity, config: Configuration, backend: str, spec: Spec, precision: str = "float32",
              calibration: "calib.Calibration | None" = None) -> str:
    """sha256 over everything that changes the artifact or its verification.

    Model definition (its source file) and weights, the splitting code, cut, embedding, PCA size and
    calibration (reduced only), input shape, backend, the converter's, runtime's and torch's
    versions, the verification input and tolerance, and ``EXPORT_FORMAT``. A precision other than float32
    adds itself, its calibration (source, samples, seed, and the data's hash when it is the model's data;
    ``calibration``, else the spec's), the quantizer code, its tolerances and torchao's version; a float32
    key is what it was before int8 existed, so float32 entries stay valid.
    """
    reduced = config.embedding == "reduced"
    payload = {
        "format": EXPORT_FORMAT,
        "model": ident.name,
        "definition": ident.definition_hash,
        "weights": ident.weights_id,
        "pipeline": _pipeline_hash(),
        "cut": config.cut,
        "embedding": config.embedding,
        "reduced_dim": config.reduced_dim,
        "calibration": [spec.export.calibration_samples, spec.export.calibration_seed] if reduced else None,
        "input_shape": list(ident.input_shape),
        "backend": backend,
        "versions": converter_versions(backend),
        "verify": [VERIFY_SEED, RTOL],
    }
    if precision != "float32":
        calibration = calibration or calib.calibration_for(spec)
        payload.update(precision=precision, versions=converter_versions(backend, precision), int8={
            "calibration": calibration.identity(), "quantizer": quantizer_hash(),
            "verify": [int8_judge.INT8_RTOL, int8_judge.FLOAT_SIZED_ERR, int8_readers.MIN_INT8_SHARE,
                       int8_readers.MAX_SIZE_RATIO, int8_readers.SIZE_RULE_FROM]})
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def cache_dir_for(spec: Spec) -> Path:
    """``[export].cache_dir``, else ``$SPLITBENCH_CACHE``, else ``results/cache`` under the current directory."""
    if spec.export.cache_dir:
        return Path(spec.export.cache_dir)
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE]).resolve()
    return Path.cwd() / "results" / "cache"


@dataclass(frozen=True)
class Lookup:
    """What the cache holds for a key: the checked artifact, or None with why an entry there is unusable."""

    artifact: Artifact | None = None
    problem: str = ""  # "" for a plain miss (no entry, or one of an older format); else what is wrong with it


def lookup(entry: Path, config: Configuration, backend: str, key: str, precision: str = "float32") -> Lookup:
    """The artifact recorded in ``entry/meta.json``, its files checked against the sha256 recorded there."""
    try:
        meta = json.loads((entry / "meta.json").read_text())
    except FileNotFoundError:
        return Lookup(problem="its meta.json is missing" if entry.is_dir() else "")
    except (OSError, ValueError) as exc:
        return Lookup(problem=f"its meta.json cannot be read ({type(exc).__name__})")
    if not isinstance(meta, dict):
        return Lookup(problem="its meta.json is not a table")
    if meta.get("format") != EXPORT_FORMAT or meta.get("status") != "ok":
        return Lookup()  # written by another version of the cache: rebuilt, never misread
    if meta.get("key") != key:
        return Lookup(problem="its meta.json belongs to another key")
    if meta.get("precision", "float32") != precision:
        return Lookup(problem=f"its meta.json is of precision {meta.get('precision')}, not {precision}")
    try:
        artifact = Artifact(config=config, backend=backend, key=key, path=entry / meta["artifact"], status="ok",
                            verified=meta["verified"], max_abs_err=meta["max_abs_err"],
                            max_rel_err=meta["max_rel_err"], reason=meta["reason"],
                            artifact_bytes=meta["artifact_bytes"], input_shape=tuple(meta["input_shape"]),
                            output_shape=tuple(meta["output_shape"]), input_name=meta["input_name"],
                            output_name=meta["output_name"], input_dtype=meta.get("input_dtype", "float32"),
                            costs=meta["costs"], export_s=meta["export_s"], cached=True,
                            converter=meta["converter"], info=meta["info"],
                            files=tuple(ArtifactFile(**f) for f in meta["files"]),
                            precision=precision,
                            output_dtype=meta.get("output_dtype", "float32"),
                            quantization=meta.get("quantization") or {})
    except (KeyError, TypeError) as exc:  # written by other code: rebuild rather than trust it
        return Lookup(problem=f"its meta.json lacks {exc}")
    problem = check_files(entry, artifact)
    return Lookup(problem=problem) if problem else Lookup(artifact)


def check_files(entry: Path, artifact: Artifact) -> str:
    """"" when every file of the artifact is there with the size and sha256 recorded at export, and no other
    file is read with it; else what differs. A file is hashed unless its stat is the one in ``verified.json``."""
    path = artifact.path
    root = path if path.is_dir() else path.parent
    if not artifact.files:
        return "its meta.json lists no file"
    if not path.exists():
        return f"{path.name} is missing"
    recorded = {f.relpath: f for f in artifact.files}
    present = {str(p.relative_to(root)) for p in artifact_files(path)}
    if present - set(recorded):
        return f"{sorted(present - set(recorded))[0]} was added after export"
    stamps = _read_stamps(entry)
    fresh: dict[str, list[int]] = {}
    for rel, f in sorted(recorded.items()):
        try:
            st = (root / rel).stat()
        except OSError:
            return f"{rel} is missing"
        if st.st_size != f.size_b:
            return f"{rel} is {st.st_size} bytes, {f.size_b} at export"
        stamp = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
        if stamps.get(rel) != stamp and sha256_file(root / rel) != f.sha256:
            return f"{rel} does not match the sha256 recorded at export (its bytes changed)"
        fresh[rel] = stamp
    if fresh != stamps:
        _write_stamps(entry, fresh)
    return ""


def stamp_files(entry: Path, artifact: Artifact) -> None:
    """Record the stat of files just hashed for ``artifact.files`` (at export), so the next hit reads none."""
    root = artifact.path if artifact.path.is_dir() else artifact.path.parent
    stamps = {}
    for f in artifact.files:
        st = (root / f.relpath).stat()
        stamps[f.relpath] = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
    _write_stamps(entry, stamps)


def _read_stamps(entry: Path) -> dict[str, list[int]]:
    try:
        stamps = json.loads((entry / STAMPS).read_text()).get("files", {})
    except (OSError, ValueError, AttributeError):
        return {}
    return stamps if isinstance(stamps, dict) else {}


def _write_stamps(entry: Path, stamps: dict[str, list[int]]) -> None:
    """Keep what was just hashed (atomically); a cache that cannot be written is hashed on every hit."""
    tmp = entry / f".{STAMPS}.{os.getpid()}"
    try:
        tmp.write_text(json.dumps({"what": "size, mtime_ns, ctime_ns, inode of each file when its sha256 last "
                                           "matched meta.json", "files": stamps}, sort_keys=True) + "\n")
        os.replace(tmp, entry / STAMPS)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()


def write_meta(directory: Path, artifact: Artifact) -> None:
    meta = artifact.to_dict()
    meta.update(format=EXPORT_FORMAT, artifact=artifact.path.name, path=None, cached=False,
                written_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    (directory / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def publish(tmp: Path, final: Path) -> None:
    """Move a finished entry into place atomically (rename), replacing an older one (``force``)."""
    old = None
    if final.exists():
        old = final.with_name(f".old-{final.name}-{os.getpid()}")
        os.rename(final, old)
    try:
        os.rename(tmp, final)
    except OSError:
        if not (final / "meta.json").is_file():
            raise
        # Another export of the same key published first; its entry is the same artifact.
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
