"""Export stage: every (configuration, backend) of a spec becomes a file a phone runtime loads,
verified against the PyTorch phone part and cached by content (:mod:`harness.export.cache`). What
each backend builds and runs is in :mod:`harness.config.backends`.

Verification feeds every runnable artifact one fixed seeded input (``VERIFY_SEED``) and compares
its output with the PyTorch phone part's. ``max_rel_err`` is ``max|out - ref| / max|ref|``: the
worst error relative to the feature's own scale. An element-wise relative error would blow up on
the many exact zeros a ReLU feature holds, and say nothing about whether the feature is right.
For a reduced embedding the PCA output is a small difference of large sums, so its error is
divided by the size of those sums instead (see :func:`_error_scale`; ``info["error_scale"]`` names
the divisor and ``info["output_rel_err"]`` keeps ``max|out - ref| / max|ref|``).
An artifact above ``RTOL`` is ``failed`` with reason ``verification: ...`` (its errors are kept).

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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from device_agents.base import ArtifactRef
from harness.config.backends import BACKENDS, COREML_NOTE, check_coreml
from harness.config.spec import Spec
from harness.core.errors import UserError, WriteFailed, why_not_written
from harness.core.fdcapture import capture_fds
from harness.core.text import visible
from harness.export.cache import (ENV_CACHE, RTOL, VERIFY_SEED, Artifact, cache_dir_for, cache_key, converter_versions,
                                  lookup, publish, stamp_files, write_meta)
from harness.split.configurations import Configuration, configurations, identify

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import torch

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
            return replace(base, reason=f"{', '.join(missing)} not installed; {BACKENDS[backend].install_hint}")
        spec = BACKENDS[backend]
        try:
            with capture_fds(log):
                for module in spec.modules:
                    importlib.import_module(module)
        except ImportError as exc:
            return _failed(replace(base, reason=f"{failure_reason(exc)}; {spec.install_hint}"), log, root, exc)
        try:
            with capture_fds(log):
                start = time.perf_counter()
                exported = spec.export(part.phone, part.example, tmp)
                export_s = time.perf_counter() - start
        except Exception as exc:  # noqa: BLE001 - any converter error is this row's data, not a crash
            return _failed(replace(base, reason=failure_reason(exc)), log, root, exc)
        done = replace(base, input_name=exported.input_name, output_name=exported.output_name, export_s=export_s,
                       artifact_bytes=_size(exported.path))
        try:
            with capture_fds(log):
                if spec.run is None:
                    problem = check_coreml(exported, done.input_shape, done.output_shape)
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
            return _failed(replace(done, reason=f"verification: {failure_reason(exc)}"), log, root, exc)
        if done.reason.startswith("verification:"):
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


def _build_part(loaded: Any, config: Configuration, spec: Spec, full_macs: int) -> _Part:
    import numpy as np
    import torch

    from harness.split.configurations import build_parts
    from harness.split.costs import count_costs

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

    Cached artifacts are read from their ``meta.json`` without importing torch, their files checked
    against the sha256 recorded at export; one that does not match is built again, says so (a progress
    line, and ``rebuilt`` holds why) and is counted apart. On a miss the model is built once and each
    configuration's phone part once, then every missing backend is converted. A failed conversion is a
    ``failed`` row with the converter's reason; the others go on.
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
    stale: dict[tuple[str, str], str] = {}  # a cached entry that cannot be used: why
    if not force:
        for c in configs:
            for b in chosen:
                hit = lookup(root / keys[c.name, b], c, b, keys[c.name, b])
                if hit.artifact is not None:
                    found[c.name, b] = hit.artifact
                elif hit.problem:
                    stale[c.name, b] = f"the cached copy was unusable: {hit.problem}"
    todo = [(c, b) for c in configs for b in chosen if (c.name, b) not in found]
    if todo:
        found.update(_export_missing(spec, configs, todo, keys, root, progress, stale))
    return [found[c.name, b] for c in configs for b in chosen]


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


def _export_missing(spec: Spec, configs: list[Configuration], todo: list[tuple[Configuration, str]],
                    keys: dict[tuple[str, str], str], root: Path, progress: bool,
                    stale: dict[tuple[str, str], str]) -> dict[tuple[str, str], Artifact]:
    import gc

    from harness.split.configurations import check_forward, load_model
    from harness.split.costs import count_macs

    out: dict[tuple[str, str], Artifact] = {}
    _open_cache(root)
    with _Progress(len(todo), enabled=progress) as bar:
        for (name, backend), why in stale.items():
            bar.say(f"[yellow]rebuilding[/] {_shown(name)} {backend}: {_shown(why)}")
        bar.step(f"building {spec.model.zoo or spec.model.source}")
        with capture_fds(root / "export.log"):
            loaded = load_model(spec)
            check_forward(loaded, spec)  # the input fits and every cut gives one tensor, or one line
            full_macs = count_macs(loaded.module, loaded.example_input)[0]
        for config in configs:
            missing = [b for c, b in todo if c.name == config.name]
            if not missing:
                continue
            bar.step(f"{config.name}: building the phone part")
            with capture_fds(root / "export.log"):
                part = _build_part(loaded, config, spec, full_macs)
            for backend in missing:
                bar.step(f"{config.name}: {backend}")
                artifact = _convert(config, backend, keys[config.name, backend], part, root)
                if (config.name, backend) in stale:
                    artifact = replace(artifact, rebuilt=stale[config.name, backend])
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
            self._progress.update(self._task, description=_shown(what))

    def say(self, line: str) -> None:
        """A line above the bar (or alone, without a terminal)."""
        if self._console is not None:
            self._console.print(line, highlight=False, soft_wrap=True)  # a log keeps a line whole

    def done(self, a: Artifact) -> None:
        if a.status == "ok":
            check = f"max rel err {a.max_rel_err:.1e}" if a.max_rel_err is not None else "spec checked"
            line = f"[green]ok[/] {_shown(a.config.name):>18} {a.backend:<10} {a.export_s:6.1f} s  {check}"
            if a.rebuilt:
                line += "  (rebuilt: its cached copy was unusable)"
        else:
            line = f"[red]failed[/] {_shown(a.config.name):>14} {a.backend:<10} {_shown(a.reason)}"
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


def _shown(text: str) -> str:
    """A name or reason in a rich line or table cell: controls and bidi overrides made visible, markup escaped."""
    from rich.markup import escape

    return escape(visible(text))


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
        cached = "yes" if a.cached else ("[yellow]rebuilt[/]" if a.rebuilt else "no")
        table.add_row(_shown(a.config.name), a.backend, status, verified, rel, _si(c.get("params")),
                      _si(c.get("macs")), shape, _bytes(c.get("upload_bytes")), share, _bytes(a.artifact_bytes),
                      cached, _shown(a.reason) if a.status != "ok" else "", end_section=last)
    console.print(table)
    for a in artifacts:
        if a.rebuilt:
            console.print(f"rebuilt {a.name}: {a.rebuilt}", highlight=False, soft_wrap=True)
    ok = sum(a.status == "ok" for a in artifacts)
    verified = sum(a.verified for a in artifacts)
    cached = sum(a.cached for a in artifacts)
    rebuilt = sum(bool(a.rebuilt) for a in artifacts)
    spec_only = sum(a.status == "ok" and not a.verified for a in artifacts)
    console.print(f"{len(artifacts)} artifacts: {ok} ok ({verified} verified, max relative error <= {RTOL:g}"
                  f"{f'; {spec_only} Core ML spec-checked' if spec_only else ''}), {len(artifacts) - ok} failed; "
                  f"{cached} from the cache"
                  f"{f', {rebuilt} rebuilt (the cached copy was unusable)' if rebuilt else ''}",
                  highlight=False)
    if spec_only:
        console.print(f"Core ML: {COREML_NOTE}.", highlight=False)
