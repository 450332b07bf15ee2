"""`splitbench run`: export every configuration (through the cache), then measure each
(configuration, backend, target) on its device agent and write the results directory.

The orchestrator never measures: each job goes to a :class:`~device_agents.base.DeviceAgent`, which
runs it in a worker of its own. Each finished job is written at once as an atomic record, so Ctrl-C
or a crash loses at most the job in flight, and ``--resume`` picks up from the records on disk.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import importlib.util
import json
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from device_agents.base import FAILED, DeviceAgent, MeasureJob, MeasureResult, get_agent
from harness import __version__
from harness import results as res
from harness.errors import UserError
from harness.host import host_fingerprint
from harness.spec import BACKENDS, Spec

EXIT_OK = 0
EXIT_FAILED = 2  # some configuration failed: the run finished, the failures are rows in summary.csv
EXIT_INTERRUPTED = 130

# Distributions whose versions define what a number means (runtimes and converters).
_VERSIONED = ("splitbench", "torch", "numpy", "onnx", "onnxscript", "onnxruntime", "ai-edge-litert",
              "litert-torch", "executorch", "coremltools", "pandas", "pyarrow", "matplotlib")


@dataclass(frozen=True)
class RunOutcome:
    """What `run` did: the exit code, every record of this spec's plan (new and resumed), the directory."""

    exit_code: int
    records: tuple[res.ResultRecord, ...]
    out: Path
    measured: int = 0  # jobs run in this session (the rest came from --resume or were skipped)
    interrupted: bool = False
    figures: tuple[Path, ...] = ()


def export_artifacts(spec: Spec, *, progress: bool) -> list:
    """The export stage, through its cache (a seam: the tests give the orchestrator scripted artifacts)."""
    from harness.export import export_spec

    return export_spec(spec, progress=progress)


# --------------------------------------------------------------------------------------------------
# Identity of the run


def effective_spec(spec: Spec, *, targets: Iterable[str] | None = None, runs: int | None = None) -> Spec:
    """The spec with the command line's overrides applied (they change what is measured, so its hash)."""
    run = spec.run
    if targets:
        targets = tuple(targets)
        if len(set(targets)) != len(targets):
            raise UserError(f"--target lists a target twice: {', '.join(targets)}")
        run = dataclasses.replace(run, targets=targets)
    if runs is not None:
        if runs < 1:
            raise UserError(f"--runs must be >= 1, got {runs}")
        run = dataclasses.replace(run, runs=runs)
    return dataclasses.replace(spec, run=run)


def spec_dict(spec: Spec) -> dict[str, Any]:
    """The spec as plain JSON data (paths as strings)."""
    return json.loads(json.dumps(dataclasses.asdict(spec), default=str))


def spec_hash(spec: Spec) -> str:
    """Hash of what the spec asks for: not where the file is, nor its comments or formatting."""
    d = spec_dict(spec)
    for key in ("path", "text_hash"):
        d.pop(key, None)
    d.get("export", {}).pop("cache_dir", None)  # where artifacts are cached does not change them
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds")


def package_versions() -> dict[str, str | None]:
    from importlib import metadata

    out: dict[str, str | None] = {}
    for name in _VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_state() -> dict[str, Any]:
    """The commit of the splitbench checkout and whether it has uncommitted changes (None outside git)."""
    root = Path(__file__).resolve().parent.parent
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


# --------------------------------------------------------------------------------------------------
# The results directory


def check_out_dir(out: Path, hash_: str, *, resume: bool) -> dict[str, Any] | None:
    """Refuse to mix results: a non-empty OUT must be a results directory of the same spec, or --resume.

    Returns the manifest already in OUT (None for a new or empty directory).
    """
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a directory")
    if not out.exists() or not any(out.iterdir()):
        return None
    manifest_path = out / res.MANIFEST_JSON
    if not manifest_path.is_file():
        if resume:  # the caller vouches for the directory (the demo puts its privacy table there first)
            return None
        raise UserError(f"--out {out} is not empty and holds no {res.MANIFEST_JSON}: choose a new or empty "
                        "directory, or add results to it with --resume")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{manifest_path} is not readable ({exc}); choose a new --out") from None
    version = manifest.get("schema_version")
    if not isinstance(version, int) or version > res.RESULTS_SCHEMA_VERSION:
        raise UserError(f"{out} was written by a newer splitbench (results schema {version!r}); upgrade splitbench "
                        "or choose a new --out")
    if manifest.get("spec_hash") != hash_ and not resume:
        raise UserError(f"--out {out} holds results of another spec (hash {str(manifest.get('spec_hash'))[:12]}, "
                        f"this one {hash_[:12]}): choose a new --out, or add to it with --resume")
    return manifest


def _session(manifest: dict[str, Any]) -> dict[str, Any]:
    keys = ("started_at", "ended_at", "status", "spec_hash", "resume", "splitbench_version", "git", "counts")
    return {k: manifest.get(k) for k in keys}


def build_manifest(spec: Spec, hash_: str, devices: dict[str, dict], *, resume: bool,
                   previous: dict[str, Any] | None) -> dict[str, Any]:
    sessions = list(previous.get("sessions", [])) + [_session(previous)] if previous else []
    return {
        "schema_version": res.RESULTS_SCHEMA_VERSION,
        "schema_history": {str(k): v for k, v in res.RESULTS_SCHEMA_HISTORY.items()},
        "splitbench_version": __version__,
        "git": git_state(),
        "spec_hash": hash_,
        "spec_file_sha256": spec.text_hash or None,
        "spec": spec_dict(spec),
        "host": host_fingerprint(),
        "devices": devices,
        "versions": package_versions(),
        "converters": {},
        "started_at": _now(),
        "ended_at": None,
        "status": "running",
        "resume": resume,
        "argv": list(sys.argv),
        "counts": {},
        "sessions": sessions,  # earlier runs into this directory (resumed or repeated), oldest first
    }


# --------------------------------------------------------------------------------------------------
# Jobs


@dataclass(frozen=True)
class _Job:
    artifact: Any  # harness.export.Artifact (or a record with its fields)
    target: str
    record_key: str
    job: MeasureJob | None  # None when there is nothing to run (export failed)


def _backend_rank(backend: str) -> int:
    return BACKENDS.index(backend) if backend in BACKENDS else len(BACKENDS)


def _not_runnable_reason(agent: DeviceAgent, backend: str) -> str:
    if backend == "coreml":
        return f"skipped: Core ML needs iOS/macOS; {agent.target} cannot run it"
    return f"skipped: {agent.target} has no {backend} runtime (it runs {', '.join(agent.backends)})"


def _measure_job(spec: Spec, artifact: Any) -> MeasureJob:
    return MeasureJob(artifact_path=str(artifact.path) if artifact.path else "", backend=artifact.backend,
                      input_shape=tuple(artifact.input_shape or ()), runs=spec.run.runs, warmup=spec.run.warmup,
                      warm_loads=spec.run.warm_loads, timeout_s=spec.run.timeout_s, seed=spec.model.seed)


def _plan(spec: Spec, artifacts: list, devices: dict[str, dict]) -> list[_Job]:
    """Every (configuration, backend, target) in model order: configuration, then backend, then target."""
    jobs = []
    for a in sorted(artifacts, key=lambda a: (a.config.order, _backend_rank(a.backend))):
        job = _measure_job(spec, a)
        for target in spec.run.targets:
            essentials = res.device_essentials(devices[target])
            params = job.to_dict()
            if a.status != "ok":
                params["export_status"] = a.status  # never the same key as a measured row
            key = res.make_record_key(a.key, target, essentials, params)
            jobs.append(_Job(a, target, key, job if a.status == "ok" else None))
    return jobs


def _record(job: _Job, result: MeasureResult, *, measure_job: MeasureJob | None, device: dict, hash_: str,
            started_at: str, duration_s: float | None) -> res.ResultRecord:
    a, c = job.artifact, job.artifact.config
    return res.ResultRecord(
        record_key=job.record_key, model=c.model, cut=c.cut, embedding=c.embedding, config=c.name, order=c.order,
        backend=a.backend, target=job.target, artifact_key=a.key,
        artifact_path=str(a.path) if a.path else None, artifact_bytes=a.artifact_bytes,
        reduced_dim=c.reduced_dim, verified=a.verified, max_abs_err=a.max_abs_err, max_rel_err=a.max_rel_err,
        costs=dict(a.costs or {}), job=measure_job.to_dict() if measure_job else {}, result=result.to_dict(),
        device=res.device_essentials(device), spec_hash=hash_, started_at=started_at, finished_at=_now(),
        duration_s=duration_s, splitbench_version=__version__,
    )


def _run_one(job: _Job, agent: DeviceAgent) -> tuple[MeasureResult, MeasureJob | None]:
    """Prepare and measure one job. A failure of the job is a result, never an exception (but Ctrl-C is)."""
    a = job.artifact
    if job.job is None:
        return MeasureResult(status=FAILED, reason=f"export failed: {a.reason or 'no reason given'}"), None
    if a.backend not in agent.backends:
        return MeasureResult(status=res.SKIPPED, reason=_not_runnable_reason(agent, a.backend)), None
    try:
        device_path = agent.prepare(str(a.path))
        mjob = dataclasses.replace(job.job, artifact_path=str(device_path))
        return agent.measure(mjob), mjob
    except Exception as exc:  # noqa: BLE001 - the agent broke its contract; still a row, and the run goes on
        tail = traceback.format_exc()[-2000:]
        return MeasureResult(status=FAILED, reason=f"agent error: {type(exc).__name__}: {exc}",
                             stderr_tail=tail), job.job


# --------------------------------------------------------------------------------------------------
# Progress


class _Progress:
    """A rich progress bar on stderr with the time left estimated from the jobs finished so far."""

    def __init__(self, total: int, enabled: bool):
        from rich.console import Console

        self.console = Console(stderr=True, highlight=False)
        self.enabled = enabled and total > 0
        self.total = total
        self.durations: list[float] = []
        self._bar = None
        self._task = None

    def __enter__(self) -> "_Progress":
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(TextColumn("measuring"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                 TextColumn("{task.fields[left]}"), TextColumn("{task.description}"),
                                 console=self.console, transient=True)
            self._bar.__enter__()
            self._task = self._bar.add_task("", total=self.total, left="time left: estimating")
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def start(self, label: str) -> None:
        if self._bar is not None:
            self._bar.update(self._task, description=label)

    def done(self, line: str, duration_s: float | None, remaining_measured: int) -> None:
        """One finished job: its line above the bar; the estimate is the mean duration of measured jobs."""
        if duration_s is not None:
            self.durations.append(duration_s)
        self.console.print(line, markup=False, soft_wrap=True)
        if self._bar is not None:
            left = "time left: estimating"
            if self.durations:
                secs = sum(self.durations) / len(self.durations) * remaining_measured
                left = f"time left ~{_fmt_s(secs)}"
            self._bar.update(self._task, advance=1, left=left)


def _fmt_s(secs: float) -> str:
    secs = int(round(secs))
    return f"{secs // 3600}:{secs // 60 % 60:02d}:{secs % 60:02d}" if secs >= 3600 else f"{secs // 60}:{secs % 60:02d}"


def _line(record: res.ResultRecord, note: str = "") -> str:
    s = res.compute_stats(record)
    median = f"{s.infer_ms_median:10.3f} ms" if s.infer_ms_median is not None else f"{'—':>10s}   "
    status = record.status if record.ok else f"{record.status}: {res.short_reason(record.reason, 90)}"
    if record.status == res.SKIPPED:
        status = res.short_reason(record.reason, 90)
    warn = f"  [{', '.join(w.code for w in s.warnings)}]" if s.warnings else ""
    return f"{record.config:<22s} {record.backend:<10s} {record.target:<16s} {median}  {status}{warn}{note}"


# --------------------------------------------------------------------------------------------------
# The command


def run_spec(spec: Spec, out: str | Path, *, resume: bool = False, targets: Iterable[str] | None = None,
             runs: int | None = None, progress: bool = True) -> RunOutcome:
    """Export, then measure every (configuration, backend, target) of ``spec`` into ``out``.

    Exit code 0, 2 when some configuration failed (its row says why), 130 when interrupted (everything
    finished is on disk; ``--resume`` completes the run).
    """
    out = Path(out)
    spec = effective_spec(spec, targets=targets, runs=runs)
    hash_ = spec_hash(spec)
    previous = check_out_dir(out, hash_, resume=resume)

    agents = {t: get_agent(t) for t in spec.run.targets}  # an unknown target fails before any export
    devices = {t: a.fingerprint() for t, a in agents.items()}
    artifacts = export_artifacts(spec, progress=progress)

    out.mkdir(parents=True, exist_ok=True)
    manifest = build_manifest(spec, hash_, devices, resume=resume, previous=previous)
    manifest["converters"] = {a.backend: dict(a.converter) for a in artifacts if getattr(a, "converter", None)}
    res.atomic_write_json(out / res.MANIFEST_JSON, manifest)

    plan = _plan(spec, artifacts, devices)
    # --resume keeps what was measured (and what was skipped) and retries what failed: a timeout or a
    # crash may have been the machine's, not the configuration's. The old failure is kept aside.
    existing = {r.record_key: r for r in res.load_records(out) if not r.failed} if resume else {}
    records: list[res.ResultRecord] = []
    measured = 0
    interrupted = False

    def needs_worker(j: _Job) -> bool:
        return j.job is not None and j.artifact.backend in agents[j.target].backends

    remaining = sum(1 for j in plan if j.record_key not in existing and needs_worker(j))
    with _Progress(len(plan), progress) as bar:
        try:
            for job in plan:
                if job.record_key in existing:
                    records.append(existing[job.record_key])
                    bar.done(_line(existing[job.record_key], "  (resumed)"), None, remaining)
                    continue
                a = job.artifact
                bar.start(f"{a.config.name} {a.backend} {job.target}")
                started_at, t0 = _now(), time.monotonic()
                result, mjob = _run_one(job, agents[job.target])
                worked = needs_worker(job)
                duration = time.monotonic() - t0 if worked else None
                record = _record(job, result, measure_job=mjob, device=devices[job.target], hash_=hash_,
                                 started_at=started_at, duration_s=duration)
                res.keep_retried(out, record.record_key)
                res.write_record(out, record)  # the moment it finishes, atomically
                res.write_tables(out)
                records.append(record)
                if worked:
                    measured += 1
                    remaining -= 1
                bar.done(_line(record), duration, remaining)
        except KeyboardInterrupt:
            interrupted = True
            bar.console.print(f"interrupted: {len(records)} of {len(plan)} jobs are on disk in {out}; "
                              "finish with --resume", markup=False, soft_wrap=True)

    res.write_tables(out)
    failed = sum(1 for r in records if r.failed)
    skipped = sum(1 for r in records if r.status == res.SKIPPED)
    manifest.update(ended_at=_now(), status="interrupted" if interrupted else "complete",
                    counts={"planned": len(plan), "done": len(records), "measured_now": measured,
                            "resumed": sum(1 for j in plan if j.record_key in existing),
                            "ok": sum(1 for r in records if r.ok), "failed": failed, "skipped": skipped},
                    runtimes=_runtimes(records))
    res.atomic_write_json(out / res.MANIFEST_JSON, manifest)

    figures: tuple[Path, ...] = ()
    if not interrupted:
        _cloud_and_privacy(spec, out, bar.console)
        figures = _after_run(out, bar.console)
    if interrupted:
        code = EXIT_INTERRUPTED
    else:
        code = EXIT_FAILED if failed else EXIT_OK
        ok = sum(1 for r in records if r.ok)
        from_disk = sum(1 for j in plan if j.record_key in existing)
        bar.console.print(f"{ok} ok, {failed} failed, {skipped} skipped ({measured} measured now, {from_disk} kept "
                          f"from {out} by --resume); results in {out}"
                          + (f" (figures in {out / 'figures'})" if figures else ""), markup=False, soft_wrap=True)
    return RunOutcome(exit_code=code, records=tuple(records), out=out, measured=measured, interrupted=interrupted,
                      figures=figures)


def _runtimes(records: list[res.ResultRecord]) -> dict[str, dict[str, str]]:
    """The runtime versions each worker reported, per backend (what actually ran, not what is installed)."""
    seen: dict[str, dict[str, str]] = {}
    for r in records:
        if r.ok and r.result.get("runtime"):
            seen.setdefault(r.backend, {}).update(r.result["runtime"])
    return seen


def _cloud_and_privacy(spec: Spec, out: Path, console) -> None:
    """After the phone measurements: the cloud part of each cut timed on this host (``cloud.csv``) and,
    when the spec has a [privacy] table, the privacy scores (``privacy.csv``) the report merges.

    The phone measurements are already on disk: a failure here is one warning line naming the stage.
    """
    from harness.cloud import write_cloud_table

    try:
        write_cloud_table(spec, out)
    except Exception as exc:  # noqa: BLE001 - reported, the run's data is safe
        console.print(f"warning: timing the cloud parts failed: {type(exc).__name__}: {exc}", markup=False)
    privacy = spec.privacy
    if not privacy:
        return
    try:
        if "csv" in privacy:
            from harness.merge import load_privacy

            table = load_privacy(privacy["csv"])
        else:
            from harness.noise import PAPER_RATIOS
            from harness.privacy.sweep import sweep_from_spec

            table = sweep_from_spec(spec, privacy["data"], ratios=privacy.get("ratios", PAPER_RATIOS),
                                    seed=privacy.get("seed", 0))
        res.atomic_write_bytes(out / "privacy.csv", table.to_csv(index=False).encode())
    except Exception as exc:  # noqa: BLE001 - a UserError here names the file and key
        console.print(f"warning: privacy scores not written: {exc}", markup=False)


def _after_run(out: Path, console) -> tuple[Path, ...]:
    """The figures and, when that stage is installed, the report (which redraws the figures itself, so
    they are drawn once). The measurements are already safe on disk: a failure here is one warning line
    and does not change the exit code."""
    paths: list[Path] = []
    build = None
    if importlib.util.find_spec("harness.report") is not None:
        try:
            from harness.report import build_report as build
        except ImportError:
            build = None
    if build is not None:
        try:
            return tuple(Path(p) for p in build(out) or ())
        except Exception as exc:  # noqa: BLE001 - `splitbench report DIR` rebuilds it
            console.print(f"warning: report failed ({type(exc).__name__}: {exc}); rerun `splitbench report {out}`",
                          markup=False, soft_wrap=True)
    try:
        from harness.figures import make_figures

        paths += make_figures(out)
    except Exception as exc:  # noqa: BLE001 - as above
        console.print(f"warning: figures failed ({type(exc).__name__}: {exc}); rerun `splitbench report {out}`",
                      markup=False, soft_wrap=True)
    return tuple(paths)
