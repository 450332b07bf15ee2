"""`splitbench run`: export every configuration (through the cache), then measure each
(configuration, backend, device) on its device agent and write the results directory.

The orchestrator plans jobs, hands them to an executor and is the only writer of results:

- plan: every (configuration, backend, device) in model order, each with its :class:`Identity` and
  record key; rows that need no device (an export that failed, a backend the device cannot run) are
  written at once;
- executors (:mod:`harness.measure.executors`): ``serial`` (one job at a time, in plan order), ``devices``
  (every device at once, one job per device at a time) or ``ray`` (the devices of many hosts,
  :mod:`harness.measure.lab.driver`); each opens one agent session per device,
  holds the device's lease, prepares each artifact once per device, and hands results back;
- the writer (this module, the calling thread): each finished job becomes a record written at once,
  atomically, then the tables; Ctrl-C or a crash loses at most the jobs in flight, and ``--resume``
  picks up from the records on disk.

A device that becomes unavailable stops only its own jobs: jobs it never attempted get no row, the
others go on, and the run says what was left and exits ``DEVICE_LOST``.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from device_agents.base import FAILED, DeviceInfo, MeasureJob
from harness import __version__
from harness.core import exitcodes
from harness.results import store
from harness.config.backends import not_runnable_reason, rank
from harness.split.configurations import ModelIdentity, identify
from harness.core.errors import UserError
from harness.results.records import SKIPPED, Identity, ResultRecord, device_essentials, make_record_key
from harness.config.spec import Spec
from harness.results.stats import compute_stats
from harness.results.tables import short_reason, write_tables

# Distributions whose versions define what a number means (runtimes and converters).
_VERSIONED = ("splitbench", "torch", "numpy", "onnx", "onnxscript", "onnxruntime", "ai-edge-litert",
              "litert-torch", "executorch", "coremltools", "pandas", "pyarrow", "matplotlib")
EXECUTORS = ("serial", "devices", "ray")
TABLES_EVERY_S = 2.0  # summary.csv and samples.parquet are rebuilt at most this often during a run


@dataclass(frozen=True)
class RunOutcome:
    """What `run` did: the exit code, every record of this spec's plan (new and resumed), the directory."""

    exit_code: int
    records: tuple[ResultRecord, ...]
    out: Path
    measured: int = 0  # jobs run in this session (the rest came from --resume or were skipped)
    interrupted: bool = False
    figures: tuple[Path, ...] = ()
    lost: dict[str, str] = dataclasses.field(default_factory=dict)  # device_id -> why it was lost
    not_attempted: int = 0  # jobs of lost devices that were never measured (no row)


def export_artifacts(spec: Spec, *, progress: bool) -> list:
    """The export stage, through its cache (a seam: the tests give the orchestrator scripted artifacts)."""
    from harness.export.stage import export_spec

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


# What never changes a number: where the spec file and the cache are, the timeout, display names.
_NOT_IDENTITY = (("path",), ("text_hash",), ("export", "cache_dir"), ("run", "timeout_s"), ("name",),
                 ("budget",))


def spec_hash(spec: Spec) -> str:
    """Hash of what the spec asks to measure: not where the file is, its comments or formatting, the
    timeout or the cache directory (none of them changes a number)."""
    d = spec_dict(spec)
    for path in _NOT_IDENTITY:
        parent = d
        for key in path[:-1]:
            parent = parent.get(key) or {}
        if isinstance(parent, dict):
            parent.pop(path[-1], None)
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
    """Refuse to mix results: a non-empty OUT must be a results directory of the same spec.

    ``--resume`` into a directory of another spec is refused too: its records would be mixed with a
    different plan. Returns the manifest already in OUT (None for a new or empty directory).
    """
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a directory")
    if not out.exists() or not any(p.name != store.LOCK_FILE for p in out.iterdir()):
        return None
    manifest_path = out / store.MANIFEST_JSON
    if not manifest_path.is_file():
        if resume:  # the caller vouches for the directory (the demo puts its privacy table there first)
            return None
        raise UserError(f"--out {out} is not empty and holds no {store.MANIFEST_JSON}: choose a new or empty "
                        "directory, or add results to it with --resume")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{manifest_path} is not readable ({exc}); choose a new --out") from None
    from harness.results.records import RESULTS_SCHEMA_VERSION

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
    from device_agents.local.host import host_fingerprint
    from harness.results.records import RESULTS_SCHEMA_HISTORY, RESULTS_SCHEMA_VERSION

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
        "started_at": _now(),
        "ended_at": None,
        "status": "running",
        "resume": resume,
        "argv": list(sys.argv),
        "counts": {},
        "lost": {},
        "sessions": sessions,  # earlier runs into this directory (resumed or repeated), oldest first
    }


# --------------------------------------------------------------------------------------------------
# Jobs


@dataclass(frozen=True)
class Job:
    """One planned (configuration, backend, device)."""

    artifact: Any  # harness.export.cache.Artifact (or a record with its fields)
    spec_target: str  # the spec's target string that names the device ("android:127.0.0.1:5555")
    identity: Identity
    record_key: str
    job: MeasureJob | None  # None when there is nothing to measure (export failed, backend not runnable)
    skip: tuple[str, str] | None = None  # (status, reason) of the row written at once when job is None

    @property
    def device_id(self) -> str:
        return self.identity.device_id

    @property
    def label(self) -> str:
        return f"{self.artifact.config.name} {self.artifact.backend} {self.spec_target}"


def _measure_job(spec: Spec, artifact: Any) -> MeasureJob:
    return MeasureJob(artifact_path=str(artifact.path) if artifact.path else "", backend=artifact.backend,
                      input_shape=tuple(artifact.input_shape or ()), runs=spec.run.runs, warmup=spec.run.warmup,
                      warm_loads=spec.run.warm_loads, timeout_s=spec.run.timeout_s, seed=spec.model.seed,
                      artifact_key=artifact.key)


def identity_of(ident: ModelIdentity, artifact: Any, info: DeviceInfo) -> Identity:
    c = artifact.config
    return Identity(model=c.model, model_definition=ident.definition_hash, weights=ident.weights_id, cut=c.cut,
                    embedding=c.embedding, reduced_dim=c.reduced_dim, backend=artifact.backend,
                    artifact_key=artifact.key, target=info.target, device_id=info.device_id,
                    runtime_version=info.backends.get(artifact.backend, ""), threads=info.threads,
                    compute_units=info.compute_units)


def plan_jobs(spec: Spec, ident: ModelIdentity, artifacts: list, devices: dict[str, DeviceInfo]) -> list[Job]:
    """Every (configuration, backend, device) in model order: configuration, then backend, then device."""
    jobs = []
    for a in sorted(artifacts, key=lambda a: (a.config.order, rank(a.backend))):
        mjob = _measure_job(spec, a)
        for spec_target, info in devices.items():
            identity = identity_of(ident, a, info)
            protocol = mjob.protocol()
            skip = None
            if a.status != "ok":
                protocol["export_status"] = a.status  # never the same key as a measured row
                skip = (FAILED, f"export failed: {a.reason or 'no reason given'}")
            elif a.backend not in info.backends:
                protocol["skipped"] = True
                skip = (SKIPPED, not_runnable_reason(a.backend, info.target, list(info.backends)))
            key = make_record_key(identity, device_essentials(info.fingerprint), protocol)
            jobs.append(Job(a, spec_target, identity, key, None if skip is not None else mjob, skip))
    return jobs


def make_record(job: Job, result: dict[str, Any], *, measure_job: MeasureJob | None, info: DeviceInfo, hash_: str,
                started_at: str, duration_s: float | None) -> ResultRecord:
    a = job.artifact
    return ResultRecord(
        record_key=job.record_key, identity=job.identity, config=a.config.name, order=a.config.order,
        artifact_path=str(a.path) if a.path else None, artifact_bytes=a.artifact_bytes,
        verified=a.verified, max_abs_err=a.max_abs_err, max_rel_err=a.max_rel_err,
        costs=dict(a.costs or {}), job=measure_job.to_dict() if measure_job else {}, result=result,
        device=device_essentials(info.fingerprint), device_name=info.name, spec_hash=hash_, started_at=started_at,
        finished_at=_now(), duration_s=duration_s, splitbench_version=__version__,
    )


# --------------------------------------------------------------------------------------------------
# Progress


class Progress:
    """A rich progress bar on stderr with the time left estimated from the jobs finished so far."""

    def __init__(self, total: int, enabled: bool):
        from rich.console import Console

        self.console = Console(stderr=True, highlight=False)
        self.enabled = enabled and total > 0
        self.total = total
        self.durations: list[float] = []
        self._bar = None
        self._task = None

    def __enter__(self) -> "Progress":
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeElapsedColumn

            self._bar = Bar(TextColumn("measuring"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            TextColumn("{task.fields[left]}"), TextColumn("{task.description}"),
                            console=self.console, transient=True)
            self._bar.__enter__()
            self._task = self._bar.add_task("", total=self.total, left="time left: estimating")
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def say(self, line: str) -> None:
        self.console.print(line, markup=False, soft_wrap=True)

    def start(self, label: str) -> None:
        if self._bar is not None:
            self._bar.update(self._task, description=label)

    def done(self, line: str, duration_s: float | None, remaining_measured: int, parallel: int = 1) -> None:
        """One finished job: its line above the bar; the estimate is the mean duration of measured jobs."""
        if duration_s is not None:
            self.durations.append(duration_s)
        self.say(line)
        if self._bar is not None:
            left = "time left: estimating"
            if self.durations:
                secs = sum(self.durations) / len(self.durations) * remaining_measured / max(parallel, 1)
                left = f"time left ~{_fmt_s(secs)}"
            self._bar.update(self._task, advance=1, left=left)


def _fmt_s(secs: float) -> str:
    secs = int(round(secs))
    return f"{secs // 3600}:{secs // 60 % 60:02d}:{secs % 60:02d}" if secs >= 3600 else f"{secs // 60}:{secs % 60:02d}"


def job_line(record: ResultRecord, spec_target: str, note: str = "") -> str:
    from harness.core.units import fmt_ms

    s = compute_stats(record)
    median = fmt_ms(s.infer_ms_median) if s.infer_ms_median is not None else "—"
    status = record.status if record.ok else f"{record.status}: {short_reason(record.reason, 90)}"
    if s.timing_kind == "aggregate":
        status += " (the tool's aggregate, not samples)"
    if record.status == SKIPPED:
        status = short_reason(record.reason, 90)
    warn = f"  [{', '.join(w.code for w in s.warnings)}]" if s.warnings else ""
    return f"{record.config:<22s} {record.backend:<10s} {spec_target:<18s} {median:>12s}  {status}{warn}{note}"


# --------------------------------------------------------------------------------------------------
# The command


def run_spec(spec: Spec, out: str | Path, *, resume: bool = False, targets: Iterable[str] | None = None,
             runs: int | None = None, progress: bool = True, executor: str = "serial",
             ray_address: str | None = None) -> RunOutcome:
    """Export, then measure every (configuration, backend, device) of ``spec`` into ``out``.

    Exit code 0; ``CONFIG_FAILED`` when some configuration failed (its row says why); ``DEVICE_LOST`` when a
    device went away (its unattempted jobs have no row; ``--resume`` completes the run); ``INTERRUPTED``
    on Ctrl-C (everything finished is on disk).
    """
    from harness.measure.executors import make_executor

    out = Path(out)
    spec = effective_spec(spec, targets=targets, runs=runs)
    hash_ = spec_hash(spec)
    if executor not in EXECUTORS:
        raise UserError(f"--executor {executor!r}: use one of {', '.join(EXECUTORS)}")
    ex = make_executor(executor, spec, ray_address=ray_address)  # an unknown target fails before any work
    try:
        with store.ResultsLock(out):
            return _run_locked(spec, out, hash_, ex, resume=resume, progress=progress)
    finally:
        ex.close()


def _run_locked(spec: Spec, out: Path, hash_: str, ex, *, resume: bool, progress: bool) -> RunOutcome:
    previous = check_out_dir(out, hash_, resume=resume)
    devices = ex.open_devices()  # spec target -> DeviceInfo (a device that cannot be reached: AgentError)
    artifacts = export_artifacts(spec, progress=progress)
    ident = identify(spec)

    manifest = build_manifest(spec, hash_, devices, resume=resume, previous=previous)
    manifest["converters"] = {a.backend: dict(a.converter) for a in artifacts if getattr(a, "converter", None)}
    manifest["executor"] = ex.describe()
    store.atomic_write_json(out / store.MANIFEST_JSON, manifest)

    plan = plan_jobs(spec, ident, artifacts, devices)
    on_disk = store.load_records(out)
    # --resume keeps what was measured (and what was skipped) and retries what failed: a timeout or a
    # crash may have been the machine's, not the configuration's. The old failure is kept aside.
    existing = {r.record_key: r for r in on_disk if not r.failed} if resume else {}
    latest = store.newest_per_identity(on_disk)
    by_device = {info.device_id: info for info in devices.values()}
    records: list[ResultRecord] = []
    measured = 0
    tables_at = [0.0]  # when the tables were last rebuilt

    def write(record: ResultRecord) -> None:
        store.keep_retried(out, record.record_key)
        store.write_record(out, record)  # the moment it finishes, atomically: the records are the truth
        latest[record.identity.key()] = record
        records.append(record)
        # The tables are derived from the records: rebuilt at most every TABLES_EVERY_S while the run goes
        # (their cost grows with the records; a lab's driver writes many per second) and always at the end.
        if time.monotonic() - tables_at[0] >= TABLES_EVERY_S:
            write_tables(out, list(latest.values()))
            tables_at[0] = time.monotonic()

    todo = [j for j in plan if j.record_key not in existing and j.job is not None]
    remaining = len(todo)
    lost: dict[str, str] = {}
    interrupted = False
    aborted: Exception | None = None  # the executor itself failed (a Ray head lost): raised once all is written
    with Progress(len(plan), progress) as bar:
        for j in plan:  # what needs no device: kept from disk, export failures, skipped backends
            if j.record_key in existing:
                records.append(existing[j.record_key])
                bar.done(job_line(existing[j.record_key], j.spec_target, "  (resumed)"), None, remaining)
            elif j.job is None:
                status, reason = j.skip
                record = make_record(j, {"status": status, "reason": reason}, measure_job=None,
                                     info=by_device[j.device_id], hash_=hash_, started_at=_now(), duration_s=None)
                write(record)
                bar.done(job_line(record, j.spec_target), None, remaining)
        try:
            for event in ex.run(todo, say=bar.say, start=bar.start):
                if event.lost is not None:
                    lost[event.device_id] = event.lost
                    bar.say(f"device {event.device_id} is unavailable ({event.lost}): its {event.left} remaining "
                            "job(s) were not measured; the other devices go on; finish with --resume when it is back")
                    remaining -= event.left
                    continue
                j = event.job
                record = make_record(j, event.result.to_dict(), measure_job=event.measure_job,
                                     info=by_device[j.device_id], hash_=hash_, started_at=event.started_at,
                                     duration_s=event.duration_s)
                write(record)
                measured += 1
                remaining -= 1
                bar.done(job_line(record, j.spec_target), event.duration_s, remaining, ex.parallel)
        except KeyboardInterrupt:
            interrupted = True
            ex.stop()
            bar.say(f"interrupted: {len(records)} of {len(plan)} jobs are on disk in {out}; finish with --resume")
        except Exception as exc:  # noqa: BLE001 - re-raised below, after the tables and the manifest
            aborted = exc
            ex.stop()
            bar.say(f"the run stopped ({type(exc).__name__}: {exc}): {len(records)} of {len(plan)} jobs are on "
                    f"disk in {out}; finish with --resume")

    write_tables(out, list(latest.values()))
    attempted = {r.record_key for r in records}
    not_attempted = sum(1 for j in todo if j.record_key not in attempted)
    ok = sum(1 for r in records if r.ok)
    failed = sum(1 for r in records if r.failed)
    skipped = sum(1 for r in records if r.status == SKIPPED)
    from_disk = sum(1 for j in plan if j.record_key in existing)
    status = "interrupted" if interrupted else ("device lost" if lost else "complete")
    if aborted is not None:
        status = "aborted"
        manifest["error"] = f"{type(aborted).__name__}: {aborted}"
    manifest.update(ended_at=_now(), status=status,
                    counts={"planned": len(plan), "done": len(records), "measured_now": measured,
                            "resumed": from_disk, "ok": ok, "failed": failed, "skipped": skipped,
                            "not_attempted": not_attempted},
                    lost=lost, runtimes=_runtimes(records))
    store.atomic_write_json(out / store.MANIFEST_JSON, manifest)
    if aborted is not None:
        raise aborted

    figures: tuple[Path, ...] = ()
    console = bar.console
    if not interrupted:
        _cloud_and_privacy(spec, out, console)
        figures = _after_run(out, console)
    if interrupted:
        code = exitcodes.INTERRUPTED
    elif lost:
        code = exitcodes.DEVICE_LOST
    else:
        code = exitcodes.CONFIG_FAILED if failed else exitcodes.OK
    if not interrupted:
        console.print(f"{ok} ok, {failed} failed, {skipped} skipped, {not_attempted} not attempted ({measured} "
                      f"measured now, {from_disk} kept from {out} by --resume); results in {out}"
                      + (f" (figures in {out / 'figures'})" if figures else ""), markup=False, soft_wrap=True)
        if lost:
            console.print(f"lost: {', '.join(f'{d} ({why})' for d, why in lost.items())}; reconnect and run again "
                          "with --resume", markup=False, soft_wrap=True)
    return RunOutcome(exit_code=code, records=tuple(records), out=out, measured=measured, interrupted=interrupted,
                      figures=figures, lost=lost, not_attempted=not_attempted)


def _runtimes(records: list[ResultRecord]) -> dict[str, dict[str, str]]:
    """The runtime versions each worker reported, per backend (what actually ran, not what is installed)."""
    seen: dict[str, dict[str, str]] = {}
    for r in records:
        if r.ok and r.result.get("runtime"):
            seen.setdefault(r.backend, {}).update(r.result["runtime"])
    return seen


def _cloud_and_privacy(spec: Spec, out: Path, console) -> None:
    """After the phone measurements: the cloud part of each cut timed on this host (``cloud.csv``, a stage
    with its own fingerprint: redone only when what it times changed) and, when the spec has a [privacy]
    table, the privacy scores (``privacy.csv``) the report merges.

    The phone measurements are already on disk: a failure here is one warning line naming the stage.
    """
    from harness.measure.cloud import write_cloud_table

    try:
        write_cloud_table(spec, out)
    except store.ResultsWriteError:
        raise
    except Exception as exc:  # noqa: BLE001 - reported, the run's data is safe
        console.print(f"warning: timing the cloud parts failed: {type(exc).__name__}: {exc}", markup=False)
    privacy = spec.privacy
    if not privacy:
        return
    try:
        if "csv" in privacy:
            from harness.analysis.merge import load_privacy

            table = load_privacy(privacy["csv"])
        else:
            from harness.analysis.privacy.noise import PAPER_RATIOS
            from harness.analysis.privacy.sweep import sweep_from_spec

            table = sweep_from_spec(spec, privacy["data"], ratios=privacy.get("ratios", PAPER_RATIOS),
                                    seed=privacy.get("seed", 0))
        store.atomic_write_bytes(out / "privacy.csv", table.to_csv(index=False).encode())
    except store.ResultsWriteError:
        raise
    except Exception as exc:  # noqa: BLE001 - a UserError here names the file and key
        console.print(f"warning: privacy scores not written: {exc}", markup=False)


def _after_run(out: Path, console) -> tuple[Path, ...]:
    """The figures and the report (which redraws the figures itself, so they are drawn once). The
    measurements are already safe on disk: a failure here is one warning line and does not change the
    exit code."""
    if importlib.util.find_spec("harness.report") is not None:
        try:
            from harness.report import build_report

            return tuple(Path(p) for p in build_report(out) or ())
        except store.ResultsWriteError:
            raise
        except Exception as exc:  # noqa: BLE001 - `splitbench report DIR` rebuilds it
            console.print(f"warning: report failed ({type(exc).__name__}: {exc}); rerun `splitbench report {out}`",
                          markup=False, soft_wrap=True)
    try:
        from harness.report.figures import make_figures

        return tuple(make_figures(out))
    except store.ResultsWriteError:
        raise
    except Exception as exc:  # noqa: BLE001 - as above
        console.print(f"warning: figures failed ({type(exc).__name__}: {exc}); rerun `splitbench report {out}`",
                      markup=False, soft_wrap=True)
    return ()

