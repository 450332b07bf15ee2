"""Export stage: every (configuration, precision, backend) of a spec becomes a file a phone runtime loads,
verified against the PyTorch phone part and cached by content (:mod:`harness.export.cache`). What
each backend builds and runs is in :mod:`harness.config.backends`; its static int8 version is
:mod:`harness.export.quantize`, calibrated as :mod:`harness.export.calibration` says.

float32: verification feeds every runnable artifact one fixed seeded input (``VERIFY_SEED``) and compares
its output with the PyTorch phone part's (the measure is :mod:`harness.export.part`'s). An artifact above
``RTOL`` is ``failed`` with reason ``verification: ...`` (its errors are kept). int8: the artifact is read
to be sure it holds int8 weights, run on an input from its calibration's distribution and judged against
the int8 tolerance (:mod:`harness.export.int8_verify`, :mod:`harness.export.int8_judge`); one that is not
really int8, or too far from float32, is ``failed`` with the reason.

A failed conversion is a row with the converter's reason; its whole output and the traceback are
kept in ``<cache_dir>/failed/<key>.log``.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from device_agents.base import ArtifactRef
from harness.config.backends import BACKENDS, COREML_NOTE, check_coreml
from harness.config.spec import PRECISIONS, Spec
from harness.core.errors import UserError, WriteFailed, why_not_written
from harness.core.fdcapture import capture_fds
from harness.core.text import markup, visible
from harness.export.cache import (ENV_CACHE, RTOL, Artifact, cache_dir_for, cache_key, converter_versions, lookup,
                                  publish, stamp_files, write_meta)
from harness.export.calibration import Calibration, calibration_for
from harness.export.int8_judge import COREML_INT8_NOTE, INT8_RTOL
from harness.export.int8_readers import io_dtypes
from harness.export.int8_verify import verify_int8
from harness.export.part import Part, build_part, errors
from harness.export.quantize import INT8_MODULES, export_int8
from harness.split.configurations import Configuration, configurations, identify
from harness.split.upload import upload_costs

if TYPE_CHECKING:  # pragma: no cover
    from harness.config.backends import Exported

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


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    extra = path.with_name(path.name + ".data")  # ONNX external data, when there is any
    return path.stat().st_size + (extra.stat().st_size if extra.exists() else 0)


# --------------------------------------------------------------------------------------------------
# One conversion


def _convert(config: Configuration, backend: str, precision: str, key: str, part: Part, root: Path,
             calibration: Calibration | None = None, float32: "Exported | None" = None) -> Artifact:
    """Export, verify and (when ok) publish one artifact into ``root/key``. int8 needs ``calibration``;
    ``float32``: the backend's float32 artifact of the same part, if any (Core ML int8 quantizes it)."""
    base = Artifact(config=config, backend=backend, key=key, path=None, status="failed", verified=False,
                    input_shape=tuple(part.example.shape), output_shape=tuple(part.reference.shape),
                    costs=part.costs, converter=converter_versions(backend, precision), info=dict(part.info),
                    precision=precision)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{key[:12]}-", dir=root))
    log = tmp / "convert.log"
    int8 = precision != "float32"
    try:
        missing = [d for d, v in base.converter.items() if v == "missing"]
        if missing:
            return replace(base, reason=f"{', '.join(missing)} not installed; {BACKENDS[backend].install_hint}")
        spec = BACKENDS[backend]
        try:
            with capture_fds(log):
                for module in (*spec.modules, *(INT8_MODULES[backend] if int8 else ())):
                    importlib.import_module(module)
        except ImportError as exc:
            return _failed(replace(base, reason=f"{failure_reason(exc)}; {spec.install_hint}"), log, root, exc)
        timings: dict[str, float] = {}  # each int8 step's seconds
        inputs = calibration.inputs(part.example) if int8 else []
        try:
            with capture_fds(log):
                start = time.perf_counter()
                if int8:
                    exported = export_int8(backend, part.phone, part.example, inputs, tmp, timings, float32)
                else:
                    exported = spec.export(part.phone, part.example, tmp)
                export_s = time.perf_counter() - start
        except Exception as exc:  # noqa: BLE001 - any converter error is this row's data, not a crash
            return _failed(replace(base, reason=failure_reason(exc)), log, root, exc)
        done = replace(base, input_name=exported.input_name, output_name=exported.output_name, export_s=export_s,
                       artifact_bytes=_size(exported.path))
        try:
            with capture_fds(log):
                done, failed = _verify_int8(done, exported, part, calibration, timings) if int8 else \
                    _verify_float32(done, exported, part)
        except Exception as exc:  # noqa: BLE001 - a runtime that cannot load the artifact fails the row
            return _failed(replace(done, reason=f"verification: {failure_reason(exc)}"), log, root, exc)
        if failed:
            return _failed(done, log, root)
        files = ArtifactRef.from_path(exported.path, key=key, backend=backend).files
        done = replace(done, status="ok", path=exported.path, files=files)
        write_meta(tmp, done)
        stamp_files(tmp, done)  # hashed just above: the next hit reads no byte of it unless it changes
        final = root / key
        publish(tmp, final)
        return replace(done, path=final / exported.path.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already when published


def _verify_float32(done: Artifact, exported: "Exported", part: Part) -> tuple[Artifact, bool]:
    """Run the artifact on the verification input (Core ML off macOS: its names and shapes); (artifact, failed)."""
    spec = BACKENDS[done.backend]
    if spec.run is None:
        problem = check_coreml(exported, done.input_shape, done.output_shape)
        return (replace(done, reason=COREML_NOTE), False) if problem is None else \
            (replace(done, reason=f"verification: {problem}"), True)
    abs_err, rel_err, out_rel = errors(spec.run(exported, part.verify_input), part.reference, part.error_scale)
    done = replace(done, max_abs_err=abs_err, max_rel_err=rel_err, verified=rel_err <= RTOL)
    if done.info.get("error_scale") != "max|ref|":
        done = replace(done, info={**done.info, "output_rel_err": out_rel})
    if rel_err > RTOL:
        problem = f"max relative error {rel_err:.3g} > {RTOL:g} (max abs {abs_err:.3g})"
        return replace(done, verified=False, reason=f"verification: {problem}"), True
    return done, False


def _verify_int8(done: Artifact, exported: "Exported", part: Part, calibration: Calibration,
                 timings: dict[str, float]) -> tuple[Artifact, bool]:
    """Read, run and judge an int8 artifact; its upload is counted in its output tensor's type."""
    input_dtype, output_dtype = io_dtypes(done.backend, exported)
    done = replace(done, input_dtype=input_dtype, output_dtype=output_dtype,
                   costs=upload_costs(done.costs, output_dtype))
    fields, failed = verify_int8(done.backend, exported, part, calibration, (done.input_shape, done.output_shape),
                                 timings)
    return replace(done, **fields), failed


def _failed(artifact: Artifact, log: Path, root: Path, exc: BaseException | None = None) -> Artifact:
    """A failed row, not cached; the converter's output, the reason and the traceback are kept as
    ``failed/<key>.log``."""
    import traceback

    kept = root / "failed" / f"{artifact.key}.log"
    with contextlib.suppress(OSError):
        kept.parent.mkdir(parents=True, exist_ok=True)
        with open(kept, "wb") as out:
            if log.is_file():
                out.write(log.read_bytes())
            out.write(f"\n--- splitbench: {artifact.name} failed: {artifact.reason}\n".encode())
            if exc is not None:
                out.write("".join(traceback.format_exception(exc)).encode(errors="replace"))
        return replace(artifact, info={**artifact.info, "log": str(kept)})
    return artifact


# --------------------------------------------------------------------------------------------------
# The stage


Slot = tuple[str, str, str]  # (configuration name, precision, backend)


def export_spec(spec: Spec, *, force: bool = False, progress: bool = True,
                backends: Sequence[str] | None = None, precisions: Sequence[str] | None = None) -> list[Artifact]:
    """Export and verify every (configuration, precision, backend) of ``spec``; configuration order, then
    precision (float32 first), then backend order.

    Cached artifacts are read from their ``meta.json`` without importing torch, their files checked
    against the sha256 recorded at export; one that does not match is built again, says so (a progress
    line, and ``rebuilt`` holds why) and is counted apart. On a miss the model is built once and each
    configuration's phone part once, then every missing (precision, backend) is converted. A failed
    conversion is a ``failed`` row with the converter's reason; the others go on. int8 keys need the
    calibration's identity: with model data (:mod:`harness.export.calibration`) its module is imported and
    its data hashed, even on a warm export.
    """
    chosen = tuple(backends) if backends is not None else spec.export.backends
    for b in chosen:
        if b not in BACKENDS:
            raise UserError(f"unknown backend {b!r}; valid: {', '.join(BACKENDS)}")
    kinds = tuple(precisions) if precisions is not None else spec.export.precisions
    for p in kinds:
        if p not in PRECISIONS:
            raise UserError(f"unknown precision {p!r}; valid: {', '.join(PRECISIONS)}")
    kinds = tuple(p for p in PRECISIONS if p in kinds)  # float32 first: Core ML int8 reuses its package
    ident = identify(spec)
    configs = configurations(spec)
    root = cache_dir_for(spec)
    calibration = calibration_for(spec) if any(p != "float32" for p in kinds) else None
    slots = [(c, p, b) for c in configs for p in kinds for b in chosen]
    keys = {(c.name, p, b): cache_key(ident, c, b, spec, p, calibration) for c, p, b in slots}
    found: dict[Slot, Artifact] = {}
    stale: dict[Slot, str] = {}  # a cached entry that cannot be used: why
    if not force:
        for c, p, b in slots:
            hit = lookup(root / keys[c.name, p, b], c, b, keys[c.name, p, b], p)
            if hit.artifact is not None:
                found[c.name, p, b] = hit.artifact
            elif hit.problem:
                stale[c.name, p, b] = f"the cached copy was unusable: {hit.problem}"
    todo = [(c, p, b) for c, p, b in slots if (c.name, p, b) not in found]
    if todo:
        _export_missing(spec, configs, todo, keys, root, progress, stale, calibration, found)
    return [found[c.name, p, b] for c, p, b in slots]


def _open_cache(root: Path) -> None:
    """Create the export cache directory and check it takes a file, before any model is built: a directory that
    cannot be written (a read-only current directory under the default ``results/cache``) is one line, exit 6."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=root):
            pass
    except OSError as exc:
        raise WriteFailed(f"cannot write the export cache {visible(root)}: {why_not_written(exc)}; give a writable "
                          f"directory as [export].cache_dir in the spec or in the {ENV_CACHE} environment variable "
                          "(the default is results/cache under the current directory)") from None


def _export_missing(spec: Spec, configs: list[Configuration], todo: list[tuple[Configuration, str, str]],
                    keys: dict[Slot, str], root: Path, progress: bool, stale: dict[Slot, str],
                    calibration: Calibration | None, found: dict[Slot, Artifact]) -> None:
    """Convert every slot of ``todo`` into ``found``, configuration by configuration (float32 before int8)."""
    import gc

    from harness.split.configurations import check_forward, load_model
    from harness.split.costs import count_macs

    _open_cache(root)
    with _Progress(len(todo), enabled=progress) as bar:
        for (name, precision, backend), why in stale.items():
            bar.say(f"[yellow]rebuilding[/] {markup(name + _precision(precision))} {backend}: {markup(why)}")
        bar.step(f"building {spec.model.zoo or spec.model.source}")
        with capture_fds(root / "export.log"):
            loaded = load_model(spec)
            check_forward(loaded, spec)  # the input fits and every cut gives one tensor, or one line
            full_macs = count_macs(loaded.module, loaded.example_input)[0]
        if calibration is not None:
            calibration.check_shape(loaded.example_input)  # the model's data fit its input, or one line
        for config in configs:
            missing = [(p, b) for c, p, b in todo if c.name == config.name]
            if not missing:
                continue
            bar.step(f"{config.name}: building the phone part")
            with capture_fds(root / "export.log"):
                part = build_part(loaded, config, spec, full_macs)
            for precision, backend in missing:
                slot = (config.name, precision, backend)
                bar.step(f"{config.name}{_precision(precision)}: {backend}")
                same = found.get((config.name, "float32", backend))  # Core ML int8 quantizes its package
                float32 = same.exported() if same is not None and same.status == "ok" else None
                artifact = _convert(config, backend, precision, keys[slot], part, root, calibration, float32)
                if slot in stale:
                    artifact = replace(artifact, rebuilt=stale[slot])
                found[slot] = artifact
                bar.done(artifact)
            del part
            gc.collect()


def _precision(precision: str) -> str:
    """`` int8`` after a configuration's name; nothing for float32 (names stay as they were)."""
    return "" if precision == "float32" else f" {precision}"


class _Progress:
    """A rich progress bar on stderr (the real stderr, kept while converters are silenced), or nothing."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.enabled = total, enabled
        self._progress = None

    def __enter__(self) -> "_Progress":
        self._console = None
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            # A duplicate of fd 2: converters' output is redirected away from fd 2 meanwhile.
            self._stream = os.fdopen(os.dup(2), "w", buffering=1)
            self._console = Console(file=self._stream, stderr=True)
            if self._console.is_terminal:  # a log or a pipe gets the lines without the bar (no stray blank line)
                self._progress = Progress(TextColumn("export"), BarColumn(), MofNCompleteColumn(),
                                          TextColumn("{task.description}"), TimeElapsedColumn(),
                                          console=self._console, transient=True)
                self._progress.__enter__()
                self._task = self._progress.add_task("", total=self.total)
        return self

    def step(self, what: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, description=markup(what))

    def say(self, line: str) -> None:
        """A line above the bar (or alone, without a terminal)."""
        if self._console is not None:
            self._console.print(line, highlight=False, soft_wrap=True)  # a log keeps a line whole

    def done(self, a: Artifact) -> None:
        if a.status == "ok":
            check = (f"max rel err {a.max_rel_err:.1e}" if a.max_rel_err is not None else
                     "int8 weights read, not run" if a.precision != "float32" else "spec checked")
            name = markup(a.config.name + _precision(a.precision))
            line = f"[green]ok[/] {name:>18} {a.backend:<10} {a.export_s:6.1f} s  {check}"
            if a.rebuilt:
                line += "  (rebuilt: its cached copy was unusable)"
        else:
            line = (f"[red]failed[/] {markup(a.config.name + _precision(a.precision)):>14} {a.backend:<10} "
                    f"{markup(a.reason)}")
        self.say(line)
        if self._progress is not None:
            self._progress.advance(self._task)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)
        if self._console is not None:
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


def _verified(a: Artifact) -> str:
    if a.verified:
        return "yes"
    if a.status == "ok" and a.backend == "coreml":
        return "weights" if a.precision != "float32" else "spec"  # int8 weights read / names and shapes checked
    return "no"


def _top1(a: Artifact) -> str:
    """The top-1 agreement of an int8 classifier part with float32: held-out when measured, else calibration."""
    found = (a.quantization or {}).get("top1_agreement") or {}
    for where in ("held_out", "calibration"):
        got = found.get(where) or {}
        if got.get("agreement") is not None:
            return f"{100 * got['agreement']:.1f}% {where.replace('_', '-')}"
    return "-"


def print_export_table(artifacts: Sequence[Artifact], file: Any = None) -> None:
    """One row per (configuration, precision, backend), a line between configurations, then a summary.

    ``verified``: yes (output within ``RTOL`` of PyTorch, ``INT8_RTOL`` for int8), spec (Core ML float32:
    names and shapes checked), weights (Core ML int8: int8 weights read from the program), no. The costs
    columns are the configuration's, except the upload: in the artifact's output type (int8 for a static int8
    LiteRT part). ``top-1``: an int8 classifier part's agreement with float32 (held-out data when there is).
    """
    from rich.console import Console
    from rich.table import Table

    console = Console(file=file) if file is not None else Console()
    if not console.is_terminal:  # a pipe or a file: keep rows whole rather than wrap at 80 columns
        console.width = max(console.width, 180)
    table = Table(show_edge=False, pad_edge=False)
    top1 = any((a.quantization or {}).get("top1_agreement") for a in artifacts)
    for title, justify in (("config", "left"), ("precision", "left"), ("backend", "left"), ("status", "left"),
                           ("verified", "left"), ("max rel err", "right"), *((("top-1", "right"),) if top1 else ()),
                           ("params", "right"), ("MACs", "right"), ("upload", "right"), ("upload bytes", "right"),
                           ("edge MACs", "right"), ("size", "right"), ("cached", "left")):
        table.add_column(title, justify=justify, no_wrap=True)
    table.add_column("reason", overflow="fold")
    for i, a in enumerate(artifacts):
        c = a.costs
        shape = "x".join(map(str, c.get("upload_shape", a.output_shape))) or "-"
        share = f"{100 * c['mac_share']:.1f}%" if "mac_share" in c else "-"
        status = "[green]ok[/]" if a.status == "ok" else "[red]failed[/]"
        rel = f"{a.max_rel_err:.1e}" if a.max_rel_err is not None else "-"
        last = i + 1 == len(artifacts) or artifacts[i + 1].config.name != a.config.name
        cached = "yes" if a.cached else ("[yellow]rebuilt[/]" if a.rebuilt else "no")
        upload = _bytes(c.get("upload_bytes")) + (f" {c['upload_dtype']}" if c.get("upload_dtype") else "")
        table.add_row(markup(a.config.name), a.precision, a.backend, status, _verified(a), rel,
                      *((_top1(a),) if top1 else ()), _si(c.get("params")), _si(c.get("macs")), shape, upload, share,
                      _bytes(a.artifact_bytes), cached, markup(a.reason) if a.status != "ok" else "", end_section=last)
    console.print(table)
    for a in artifacts:
        if a.rebuilt:
            console.print(f"rebuilt {a.name}: {a.rebuilt}", highlight=False, soft_wrap=True)
    ok = sum(a.status == "ok" for a in artifacts)
    verified = sum(a.verified for a in artifacts)
    cached = sum(a.cached for a in artifacts)
    rebuilt = sum(bool(a.rebuilt) for a in artifacts)
    spec_only = sum(a.status == "ok" and not a.verified for a in artifacts)
    int8 = [a for a in artifacts if a.precision != "float32"]
    bound = f"max relative error <= {RTOL:g}" + (f", int8 <= {INT8_RTOL:g}" if int8 else "")
    console.print(f"{len(artifacts)} artifacts: {ok} ok ({verified} verified, {bound}"
                  f"{f'; {spec_only} Core ML spec-checked' if spec_only else ''}), {len(artifacts) - ok} failed; "
                  f"{cached} from the cache"
                  f"{f', {rebuilt} rebuilt (the cached copy was unusable)' if rebuilt else ''}",
                  highlight=False)
    if any(a.status == "ok" and a.backend == "coreml" and a.precision == "float32" for a in artifacts):
        console.print(f"Core ML: {COREML_NOTE}.", highlight=False)
    if any(a.status == "ok" and a.backend == "coreml" and a.precision != "float32" for a in artifacts):
        console.print(f"Core ML int8: {COREML_INT8_NOTE}.", highlight=False)
    described = {(a.quantization or {}).get("calibration", {}).get("description") for a in int8} - {None}
    for text in sorted(described):
        console.print(f"int8 calibration: {text}.", highlight=False, soft_wrap=True)
