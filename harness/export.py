"""Export stage: every (configuration, backend) of a spec becomes a file a phone runtime loads,
verified against the PyTorch phone part and cached by content.

Backends and what proves each artifact:

- ``onnx``: ``torch.onnx.export(dynamo=True)``, one self-contained ``.onnx`` (external data only
  above protobuf's 2 GB limit); run with ONNX Runtime.
- ``litert``: ``litert_torch.convert`` to a ``.tflite`` flatbuffer; run with ``ai_edge_litert``.
- ``executorch``: ``.pte`` lowered with the XNNPACK partitioner; run with ``executorch.runtime``.
- ``coreml``: ``coremltools`` ML program ``.mlpackage`` in float32. Core ML cannot predict off
  macOS, so the package is reloaded and its input/output names and shapes are checked instead; it
  is marked not numerically verified.

Verification feeds every runnable artifact one fixed seeded input (``VERIFY_SEED``) and compares
its output with the PyTorch phone part's. ``max_rel_err`` is ``max|out - ref| / max|ref|``: the
worst error relative to the feature's own scale. An element-wise relative error would blow up on
the many exact zeros a ReLU feature holds, and say nothing about whether the feature is right.
For a reduced embedding the PCA output is a small difference of large sums, so its error is
divided by the size of those sums instead (see :func:`_error_scale`; ``info["error_scale"]`` names
the divisor and ``info["output_rel_err"]`` keeps ``max|out - ref| / max|ref|``).
An artifact above ``RTOL`` is ``failed`` with reason ``verification: ...`` (its errors are kept).

Cache: ``<cache_dir>/<key>/`` holds the artifact and ``meta.json`` (everything in :class:`Artifact`).
The key hashes what changes the artifact (see :func:`cache_key`). A warm export reads only the
``meta.json`` files: it imports neither torch nor a converter and builds no model. Failed
conversions are not cached: a failure is often environmental (a converter missing, out of memory),
and a rerun should try again; their converter output is kept in ``<cache_dir>/failed/<key>.log``.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from harness.configurations import Configuration, ModelIdentity, configurations, file_sha256, identify
from harness.errors import UserError
from harness.spec import BACKENDS, Spec

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import torch

# Version of the cache layout and meta.json. Bump when either changes meaning; every old entry is
# then rebuilt, never misread.
#   1: one directory per key holding the artifact, meta.json and convert.log.
EXPORT_FORMAT = 1

# The seed of the verification input (a standard normal tensor of the model's input shape).
VERIFY_SEED = 20240
# Largest accepted max|out - ref| / max|ref|. Every backend here computes in float32; a correct
# conversion lands around 1e-6 (different summation order, fused kernels). 1e-4 is the bound the
# project promises; a wrong conversion (a dropped layer, wrong layout) is off by order 1.
RTOL = 1e-4

ARTIFACT_NAMES = {"onnx": "model.onnx", "litert": "model.tflite", "executorch": "model.pte",
                  "coreml": "model.mlpackage"}
# Distributions whose versions change what a backend builds or how it is verified. Read with
# importlib.metadata: importing a converter to ask its version costs seconds.
PACKAGES = {
    "onnx": ("torch", "onnx", "onnxscript", "onnxruntime"),
    "litert": ("torch", "litert-torch", "ai-edge-litert"),
    "executorch": ("torch", "executorch"),
    "coreml": ("torch", "coremltools"),
}
# Modules a backend's conversion and verification import: imported before the conversion clock starts,
# so ``export_s`` is the conversion alone, not the converter's import (up to ~15 s for the first one).
MODULES = {
    "onnx": ("onnxscript", "onnxruntime"),
    "litert": ("litert_torch", "ai_edge_litert.interpreter"),
    "executorch": ("executorch.exir", "executorch.backends.xnnpack.partition.xnnpack_partitioner",
                   "executorch.runtime"),
    "coreml": ("coremltools",),
}
INSTALL_HINT = {"onnx": "pip install onnx onnxscript onnxruntime", "litert": "pip install 'splitbench[litert]'",
                "executorch": "pip install 'splitbench[executorch]'", "coreml": "pip install 'splitbench[coreml]'"}
COREML_NOTE = "Core ML prediction needs macOS; spec checked: input/output names and shapes match"
ENV_CACHE = "SPLITBENCH_CACHE"


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
    costs: dict[str, Any] = field(default_factory=dict)  # harness.costs.Costs.to_dict()
    export_s: float | None = None  # conversion seconds (the original conversion's when cached)
    cached: bool = False  # read from the cache by this export
    converter: dict[str, str] = field(default_factory=dict)  # distribution -> version
    info: dict[str, Any] = field(default_factory=dict)  # e.g. PCA explained variance, log file

    @property
    def name(self) -> str:
        return f"{self.config.name}/{self.backend}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["config"] = {**asdict(self.config), "name": self.config.name}
        d["path"] = str(self.path) if self.path else None
        d["input_shape"] = list(self.input_shape)
        d["output_shape"] = list(self.output_shape)
        return d


# --------------------------------------------------------------------------------------------------
# Cache keys and the cache directory


_VERSIONS: dict[str, str] = {}


def package_version(dist: str) -> str:
    """The installed version of a distribution, or "missing"; never imports it."""
    if dist not in _VERSIONS:
        try:
            _VERSIONS[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            _VERSIONS[dist] = "missing"
    return _VERSIONS[dist]


def converter_versions(backend: str) -> dict[str, str]:
    return {dist: package_version(dist) for dist in PACKAGES[backend]}


@functools.cache
def _pipeline_hash() -> str:
    """Hash of the code that decides what a phone part is and what meta.json records about it.

    The functions that seed and build the model, split it and fit the PCA (not the whole of
    configurations.py, whose messages change often) and the cost counter. inspect reads their
    source from the files already imported; no torch is needed.
    """
    import inspect

    from harness import configurations as conf

    h = hashlib.sha256()
    for fn in (conf.load_model, conf._trace, conf.split_at, conf.reduce_with_pca, conf.calibration_batch,
               conf.build_parts):
        h.update(inspect.getsource(fn).encode() + b"\0")
    costs = Path(conf.__file__).with_name("costs.py")
    h.update(file_sha256(costs).encode() if costs.is_file() else b"no costs.py")
    return h.hexdigest()[:16]


def cache_key(ident: ModelIdentity, config: Configuration, backend: str, spec: Spec) -> str:
    """sha256 over everything that changes the artifact or its verification.

    Model definition (its source file) and weights, the splitting code, cut, embedding, PCA size and
    calibration (reduced only), input shape, backend, the converter's, runtime's and torch's
    versions, the verification input and tolerance, and ``EXPORT_FORMAT``.
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
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def cache_dir_for(spec: Spec) -> Path:
    """``[export].cache_dir``, else ``$SPLITBENCH_CACHE``, else ``results/cache`` under the current directory."""
    if spec.export.cache_dir:
        return Path(spec.export.cache_dir)
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE]).resolve()
    return Path.cwd() / "results" / "cache"


def _read_cached(entry: Path, config: Configuration, backend: str, key: str) -> Artifact | None:
    """The artifact recorded in ``entry/meta.json``, or None when absent, unreadable or stale."""
    try:
        meta = json.loads((entry / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    if meta.get("format") != EXPORT_FORMAT or meta.get("key") != key or meta.get("status") != "ok":
        return None
    try:
        path = entry / meta["artifact"]
        if not path.exists():
            return None
        return Artifact(config=config, backend=backend, key=key, path=path, status="ok", verified=meta["verified"],
                        max_abs_err=meta["max_abs_err"], max_rel_err=meta["max_rel_err"], reason=meta["reason"],
                        artifact_bytes=meta["artifact_bytes"], input_shape=tuple(meta["input_shape"]),
                        output_shape=tuple(meta["output_shape"]), input_name=meta["input_name"],
                        output_name=meta["output_name"], input_dtype=meta.get("input_dtype", "float32"),
                        costs=meta["costs"], export_s=meta["export_s"], cached=True, converter=meta["converter"],
                        info=meta["info"])
    except (KeyError, TypeError):  # written by other code: rebuild rather than trust it
        return None


def _write_meta(directory: Path, artifact: Artifact) -> None:
    meta = artifact.to_dict()
    meta.update(format=EXPORT_FORMAT, artifact=artifact.path.name, path=None, cached=False,
                written_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    (directory / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def _publish(tmp: Path, final: Path) -> None:
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


# --------------------------------------------------------------------------------------------------
# Exporters: one function per backend, (phone, example, out_dir) -> _Exported


@dataclass(frozen=True)
class _Exported:
    path: Path
    input_name: str
    output_name: str


def _export_onnx(phone: "torch.nn.Module", example: "torch.Tensor", out_dir: Path) -> _Exported:
    import torch

    path = out_dir / ARTIFACT_NAMES["onnx"]
    # One file unless the weights pass protobuf's 2 GB limit; then a .onnx.data file sits beside it.
    weight_bytes = sum(p.numel() * p.element_size() for p in phone.parameters())
    torch.onnx.export(phone, (example,), str(path), dynamo=True, external_data=weight_bytes > 1.9e9,
                      input_names=["input"], output_names=["feature"], verbose=False)
    return _Exported(path, "input", "feature")


def _run_onnx(exported: _Exported, x: "np.ndarray") -> "np.ndarray":
    import onnxruntime as ort

    session = ort.InferenceSession(str(exported.path), providers=["CPUExecutionProvider"])
    return session.run([exported.output_name], {exported.input_name: x})[0]


def _export_litert(phone: "torch.nn.Module", example: "torch.Tensor", out_dir: Path) -> _Exported:
    import litert_torch
    from ai_edge_litert.interpreter import Interpreter

    path = out_dir / ARTIFACT_NAMES["litert"]
    litert_torch.convert(phone.eval(), (example,)).export(str(path))
    interpreter = Interpreter(model_path=str(path), num_threads=1)
    return _Exported(path, interpreter.get_input_details()[0]["name"], interpreter.get_output_details()[0]["name"])


def _run_litert(exported: _Exported, x: "np.ndarray") -> "np.ndarray":
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(exported.path), num_threads=1)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).copy()


def _export_executorch(phone: "torch.nn.Module", example: "torch.Tensor", out_dir: Path) -> _Exported:
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    path = out_dir / ARTIFACT_NAMES["executorch"]
    program = to_edge_transform_and_lower(torch.export.export(phone, (example,)),
                                          partitioner=[XnnpackPartitioner()]).to_executorch()
    path.write_bytes(program.buffer)
    # A .pte's tensors have no names: a runtime calls method "forward" with positional inputs.
    return _Exported(path, "forward/input0", "forward/output0")


def _run_executorch(exported: _Exported, x: "np.ndarray") -> "np.ndarray":
    import torch
    from executorch.runtime import Runtime

    method = Runtime.get().load_program(str(exported.path)).load_method("forward")
    return method.execute([torch.from_numpy(x)])[0].numpy().copy()


def _export_coreml(phone: "torch.nn.Module", example: "torch.Tensor", out_dir: Path) -> _Exported:
    import coremltools as ct
    import torch

    path = out_dir / ARTIFACT_NAMES["coreml"]
    program = torch.export.export(phone, (example,)).run_decompositions({})
    # float32 like every other backend here (the ML program default is float16), so the artifacts of
    # one configuration compute the same thing on every runtime.
    model = ct.convert(program, inputs=[ct.TensorType(name="input", shape=tuple(example.shape))],
                       outputs=[ct.TensorType(name="feature")], convert_to="mlprogram",
                       compute_precision=ct.precision.FLOAT32)
    model.save(str(path))
    return _Exported(path, "input", "feature")


def _check_coreml(exported: _Exported, input_shape: tuple[int, ...], output_shape: tuple[int, ...]) -> str | None:
    """Reload the package's spec; None when its input/output names and shapes match, else what differs."""
    import coremltools as ct

    description = ct.utils.load_spec(str(exported.path)).description
    found = {
        "inputs": [(i.name, tuple(i.type.multiArrayType.shape)) for i in description.input],
        "outputs": [(o.name, tuple(o.type.multiArrayType.shape)) for o in description.output],
    }
    wanted = {"inputs": [(exported.input_name, input_shape)], "outputs": [(exported.output_name, output_shape)]}
    for side in ("inputs", "outputs"):
        if found[side] != wanted[side]:
            return f"Core ML spec {side} {found[side]} != expected {wanted[side]}"
    return None


@dataclass(frozen=True)
class _Backend:
    export: Callable[["torch.nn.Module", "torch.Tensor", Path], _Exported]
    run: Callable[[_Exported, "np.ndarray"], "np.ndarray"] | None  # None: cannot run on this host


EXPORTERS: dict[str, _Backend] = {
    "onnx": _Backend(_export_onnx, _run_onnx),
    "litert": _Backend(_export_litert, _run_litert),
    "executorch": _Backend(_export_executorch, _run_executorch),
    "coreml": _Backend(_export_coreml, None),
}


# --------------------------------------------------------------------------------------------------
# Failure reasons and quiet converters


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_BOILERPLATE = ("set torch_logs", "set torchdynamo_verbose", "for more information", "refer to the full stack",
                "see the stack trace", "while executing", "from user code", "original traceback",
                "use tlparse", "there are a few things to try", "next steps")


def _first_meaningful_line(exc: BaseException) -> str:
    for line in _ANSI.sub("", str(exc)).splitlines():
        line = line.strip().strip('"').strip()
        if line and not line.lower().startswith(_BOILERPLATE):
            return line
    return ""


def failure_reason(exc: BaseException, limit: int = 300) -> str:
    """One line from the converter: the innermost exception of the chain that says something.

    Converters wrap the real cause (a missing lowering, an unsupported op) in generic errors
    ("Failed to convert ... step 3/3"); the last exception in the chain, the one a traceback
    prints last, names it.
    """
    chain: list[BaseException] = []
    e: BaseException | None = exc
    while e is not None and e not in chain:
        chain.append(e)
        e = e.__cause__ or (None if e.__suppress_context__ else e.__context__)
    for e in reversed(chain):
        line = _first_meaningful_line(e)
        if line:
            text = f"{type(e).__name__}: {line}"
            return text if len(text) <= limit else text[: limit - 3] + "..."
    return type(exc).__name__


@contextlib.contextmanager
def _quiet(log_path: Path) -> Iterator[None]:
    """Send everything written to file descriptors 1 and 2 (Python, C++ and tqdm alike) to a log.

    Converters print progress trees, warnings and bars; the CLI's own output stays clean, and
    the log keeps them for when a conversion fails.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    saved = (os.dup(1), os.dup(2))
    try:
        with open(log_path, "ab") as log:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            try:
                yield
            finally:
                for stream in (sys.stdout, sys.stderr):
                    with contextlib.suppress(Exception):
                        stream.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    finally:
        os.close(saved[0])
        os.close(saved[1])


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    extra = path.with_name(path.name + ".data")  # ONNX external data, when there is any
    return path.stat().st_size + (extra.stat().st_size if extra.exists() else 0)


# --------------------------------------------------------------------------------------------------
# One conversion


@dataclass
class _Part:
    """What one configuration's conversions share: built once per configuration on a cache miss."""

    phone: "torch.nn.Module"
    example: "torch.Tensor"
    verify_input: "np.ndarray"
    reference: "np.ndarray"
    costs: dict[str, Any]
    info: dict[str, Any]
    error_scale: float  # what max_rel_err divides by (see _error_scale)


def _error_scale(phone: "torch.nn.Module", x: "torch.Tensor", reference: "np.ndarray") -> tuple[float, str]:
    """The magnitude a float32 error of this phone part is relative to, and its name.

    Simple and full: ``max|ref|``. Reduced: the PCA output ``W f + b`` is a small difference of large
    sums; with random weights, deep features of different inputs are nearly parallel, so ``W f``
    and ``-b`` cancel to ~1e-3 of their size and any float32 rounding in the feature below (~1e-6 of
    it, the same in PyTorch) is amplified ~1000 times. Its error is therefore measured against the
    size of the terms it sums, ``max_i (|W| |f| + |b|)_i``, the usual scale of a dot product's
    rounding error. ``info["output_rel_err"]`` keeps ``max|out - ref| / max|ref|`` as well.
    """
    import numpy as np
    import torch

    pca = getattr(phone, "pca", None)
    body = getattr(phone, "phone", None)
    if isinstance(pca, torch.nn.Linear) and body is not None:
        with torch.no_grad():
            f = body(x).reshape(1, -1).double()
            terms = f.abs() @ pca.weight.double().abs().T + pca.bias.double().abs()
        return float(terms.max()), "max(|W||f|+|b|)"
    return float(np.max(np.abs(reference))) if reference.size else 0.0, "max|ref|"


def _errors(out: "np.ndarray", ref: "np.ndarray", scale: float) -> tuple[float, float, float]:
    """(max|out - ref|, that / scale, that / max|ref|)."""
    import numpy as np

    out = np.asarray(out, dtype=np.float64).reshape(ref.shape)
    ref = ref.astype(np.float64)
    abs_err = float(np.max(np.abs(out - ref))) if ref.size else 0.0
    ref_max = float(np.max(np.abs(ref))) if ref.size else 0.0
    return abs_err, (abs_err / scale if scale > 0 else abs_err), (abs_err / ref_max if ref_max > 0 else abs_err)


def _convert(config: Configuration, backend: str, key: str, part: _Part, root: Path) -> Artifact:
    """Export, verify and (when ok) publish one artifact into ``root/key``."""
    base = Artifact(config=config, backend=backend, key=key, path=None, status="failed", verified=False,
                    input_shape=tuple(part.example.shape), output_shape=tuple(part.reference.shape),
                    costs=part.costs, converter=converter_versions(backend), info=dict(part.info))
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{key[:12]}-", dir=root))
    log = tmp / "convert.log"
    try:
        missing = [d for d, v in base.converter.items() if v == "missing"]
        if missing:
            return replace(base, reason=f"{', '.join(missing)} not installed; {INSTALL_HINT[backend]}")
        spec = EXPORTERS[backend]
        try:
            with _quiet(log):
                for module in MODULES[backend]:
                    importlib.import_module(module)
        except ImportError as exc:
            return _failed(replace(base, reason=f"{failure_reason(exc)}; {INSTALL_HINT[backend]}"), log, root)
        try:
            with _quiet(log):
                start = time.perf_counter()
                exported = spec.export(part.phone, part.example, tmp)
                export_s = time.perf_counter() - start
        except Exception as exc:  # noqa: BLE001 - any converter error is this row's data, not a crash
            return _failed(replace(base, reason=failure_reason(exc)), log, root)
        done = replace(base, input_name=exported.input_name, output_name=exported.output_name, export_s=export_s,
                       artifact_bytes=_size(exported.path))
        try:
            with _quiet(log):
                if spec.run is None:
                    problem = _check_coreml(exported, done.input_shape, done.output_shape)
                    done = replace(done, reason=COREML_NOTE) if problem is None else \
                        replace(done, reason=f"verification: {problem}")
                else:
                    abs_err, rel_err, out_rel = _errors(spec.run(exported, part.verify_input), part.reference,
                                                        part.error_scale)
                    done = replace(done, max_abs_err=abs_err, max_rel_err=rel_err, verified=rel_err <= RTOL)
                    if done.info.get("error_scale") != "max|ref|":
                        done = replace(done, info={**done.info, "output_rel_err": out_rel})
                    if rel_err > RTOL:
                        problem = f"max relative error {rel_err:.3g} > {RTOL:g} (max abs {abs_err:.3g})"
                        done = replace(done, verified=False, reason=f"verification: {problem}")
        except Exception as exc:  # noqa: BLE001 - a runtime that cannot load the artifact fails the row
            return _failed(replace(done, reason=f"verification: {failure_reason(exc)}"), log, root)
        if done.reason.startswith("verification:"):
            return _failed(done, log, root)
        done = replace(done, status="ok", path=exported.path)
        _write_meta(tmp, done)
        final = root / key
        _publish(tmp, final)
        return replace(done, path=final / exported.path.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already when published


def _failed(artifact: Artifact, log: Path, root: Path) -> Artifact:
    """A failed row, not cached; the converter's output is kept as ``failed/<key>.log``."""
    kept = root / "failed" / f"{artifact.key}.log"
    with contextlib.suppress(OSError):
        kept.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(log, kept)
        return replace(artifact, info={**artifact.info, "log": str(kept)})
    return artifact


def _build_part(loaded: Any, config: Configuration, spec: Spec, full_macs: int) -> _Part:
    import numpy as np
    import torch

    from harness.configurations import build_parts
    from harness.costs import count_costs

    phone, _rest, info = build_parts(loaded, config, spec)
    phone.eval()
    example = loaded.example_input
    x = torch.randn(*example.shape, generator=torch.Generator().manual_seed(VERIFY_SEED)).to(example.dtype)
    with torch.no_grad():
        reference = phone(x).detach().numpy().astype(np.float32)
    costs = count_costs(phone, loaded.module, example, full_macs=full_macs).to_dict()
    scale, kind = _error_scale(phone, x, reference)
    return _Part(phone, example, x.numpy().copy(), reference, costs, {**info, "error_scale": kind}, scale)


# --------------------------------------------------------------------------------------------------
# The stage


def export_spec(spec: Spec, *, force: bool = False, progress: bool = True,
                backends: Sequence[str] | None = None) -> list[Artifact]:
    """Export and verify every (configuration, backend) of ``spec``; configuration order, then backend order.

    Cached artifacts are read from their ``meta.json`` without importing torch. On a miss the model is
    built once and each configuration's phone part once, then every missing backend is converted.
    A failed conversion is a ``failed`` row with the converter's reason; the others go on.
    """
    chosen = tuple(backends) if backends is not None else spec.export.backends
    for b in chosen:
        if b not in BACKENDS:
            raise UserError(f"unknown backend {b!r}; valid: {', '.join(BACKENDS)}")
    ident = identify(spec)
    configs = configurations(spec)
    root = cache_dir_for(spec)
    keys = {(c.name, b): cache_key(ident, c, b, spec) for c in configs for b in chosen}
    found: dict[tuple[str, str], Artifact] = {}
    if not force:
        for c in configs:
            for b in chosen:
                hit = _read_cached(root / keys[c.name, b], c, b, keys[c.name, b])
                if hit is not None:
                    found[c.name, b] = hit
    todo = [(c, b) for c in configs for b in chosen if (c.name, b) not in found]
    if todo:
        found.update(_export_missing(spec, configs, todo, keys, root, progress))
    return [found[c.name, b] for c in configs for b in chosen]


def _export_missing(spec: Spec, configs: list[Configuration], todo: list[tuple[Configuration, str]],
                    keys: dict[tuple[str, str], str], root: Path, progress: bool) -> dict[tuple[str, str], Artifact]:
    import gc

    from harness.configurations import load_model
    from harness.costs import count_macs

    out: dict[tuple[str, str], Artifact] = {}
    with _Progress(len(todo), enabled=progress) as bar:
        bar.step(f"building {spec.model.zoo or spec.model.source}")
        with _quiet(root / "export.log"):
            loaded = load_model(spec)
            full_macs = count_macs(loaded.module, loaded.example_input)[0]
        for config in configs:
            missing = [b for c, b in todo if c.name == config.name]
            if not missing:
                continue
            bar.step(f"{config.name}: building the phone part")
            with _quiet(root / "export.log"):
                part = _build_part(loaded, config, spec, full_macs)
            for backend in missing:
                bar.step(f"{config.name}: {backend}")
                artifact = _convert(config, backend, keys[config.name, backend], part, root)
                out[config.name, backend] = artifact
                bar.done(artifact)
            del part
            gc.collect()
    return out


class _Progress:
    """A rich progress bar on stderr (the real stderr, kept while converters are silenced), or nothing."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.enabled = total, enabled
        self._progress = None

    def __enter__(self) -> "_Progress":
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            # A duplicate of fd 2: converters' output is redirected away from fd 2 meanwhile.
            self._stream = os.fdopen(os.dup(2), "w", buffering=1)
            console = Console(file=self._stream, stderr=True)
            self._progress = Progress(TextColumn("export"), BarColumn(), MofNCompleteColumn(),
                                      TextColumn("{task.description}"), TimeElapsedColumn(), console=console,
                                      transient=True)
            self._progress.__enter__()
            self._task = self._progress.add_task("", total=self.total)
        return self

    def step(self, what: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, description=what)

    def done(self, a: Artifact) -> None:
        if self._progress is None:
            return
        if a.status == "ok":
            check = f"max rel err {a.max_rel_err:.1e}" if a.max_rel_err is not None else "spec checked"
            line = f"[green]ok[/] {a.config.name:>18} {a.backend:<10} {a.export_s:6.1f} s  {check}"
        else:
            line = f"[red]failed[/] {a.config.name:>14} {a.backend:<10} {a.reason}"
        self._progress.console.print(line, highlight=False)
        self._progress.advance(self._task)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)
            self._stream.close()


# --------------------------------------------------------------------------------------------------
# Output


def _si(n: float | None, unit: str = "") -> str:
    if n is None:
        return "-"
    for factor, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= factor:
            return f"{n / factor:.2f}{prefix}{unit}"
    return f"{n:g}{unit}"


def _bytes(n: int | None) -> str:
    if n is None:
        return "-"
    for factor, unit in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if n >= factor:
            return f"{n / factor:.1f} {unit}"
    return f"{n} B"


def print_export_table(artifacts: Sequence[Artifact], file: Any = None) -> None:
    """One row per (configuration, backend), a line between configurations, then a one-line summary.

    ``verified``: yes (output within ``RTOL`` of PyTorch), spec (Core ML: names and shapes checked),
    no. The costs columns are the configuration's (the same for every backend).
    """
    from rich.console import Console
    from rich.table import Table

    console = Console(file=file) if file is not None else Console()
    if not console.is_terminal:  # a pipe or a file: keep rows whole rather than wrap at 80 columns
        console.width = max(console.width, 180)
    table = Table(show_edge=False, pad_edge=False)
    for title, justify in (("config", "left"), ("backend", "left"), ("status", "left"), ("verified", "left"),
                           ("max rel err", "right"), ("params", "right"), ("MACs", "right"),
                           ("upload", "right"), ("upload bytes", "right"), ("edge MACs", "right"),
                           ("size", "right"), ("cached", "left")):
        table.add_column(title, justify=justify, no_wrap=True)
    table.add_column("reason", overflow="fold")
    for i, a in enumerate(artifacts):
        c = a.costs
        shape = "x".join(map(str, c.get("upload_shape", a.output_shape))) or "-"
        share = f"{100 * c['mac_share']:.1f}%" if "mac_share" in c else "-"
        verified = "yes" if a.verified else ("spec" if a.status == "ok" and a.backend == "coreml" else "no")
        status = "[green]ok[/]" if a.status == "ok" else "[red]failed[/]"
        rel = f"{a.max_rel_err:.1e}" if a.max_rel_err is not None else "-"
        last = i + 1 == len(artifacts) or artifacts[i + 1].config.name != a.config.name
        table.add_row(a.config.name, a.backend, status, verified, rel, _si(c.get("params")), _si(c.get("macs")),
                      shape, _bytes(c.get("upload_bytes")), share, _bytes(a.artifact_bytes),
                      "yes" if a.cached else "no", a.reason if a.status != "ok" else "", end_section=last)
    console.print(table)
    ok = sum(a.status == "ok" for a in artifacts)
    verified = sum(a.verified for a in artifacts)
    cached = sum(a.cached for a in artifacts)
    spec_only = sum(a.status == "ok" and not a.verified for a in artifacts)
    console.print(f"{len(artifacts)} artifacts: {ok} ok ({verified} verified, max relative error <= {RTOL:g}"
                  f"{f'; {spec_only} Core ML spec-checked' if spec_only else ''}), {len(artifacts) - ok} failed; "
                  f"{cached} from the cache", highlight=False)
    if spec_only:
        console.print(f"Core ML: {COREML_NOTE}.", highlight=False)
