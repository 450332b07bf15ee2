"""`splitbench run`: the stages in order, for one spec into one results directory.

    spec (config) -> devices opened (measure) -> artifacts (export, cached) -> manifest (results)
    -> plan and measure, each record written as it finishes (measure) -> tables and manifest (results)
    -> post-run stages: cloud parts, privacy scores, report (measure, analysis, report)

Each stage lives in its own package; this module only sequences them and decides the exit code. The
measurements are on disk before any post-run stage starts: a post-run stage that fails is one warning line
(``splitbench report DIR`` redoes the report) and never changes the exit code, except a results directory
that cannot be written (exit 6).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from harness.config.spec import Spec, effective_spec, spec_hash
from harness.core import exitcodes
from harness.core.text import visible
from harness.measure import factory
from harness.measure.runner import measure_plan
from harness.measure.plan import plan_jobs
from harness.results import manifest as manifests
from harness.results import store
from harness.results.layout import FIGURES_DIR
from harness.results.records import ResultRecord
from harness.split.configurations import identify


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


@dataclass(frozen=True)
class PostRunStage:
    """A stage that runs once the measurements are on disk: ``run(spec, out)`` returns the files it wrote."""

    name: str  # as the warning says it: "warning: <name> failed (...)"
    run: Callable[[Spec, Path], Any]
    fix: str  # what to do when it failed; {out} is the results directory


def _cloud(spec: Spec, out: Path) -> Any:
    from harness.measure.cloud import write_cloud_table

    return write_cloud_table(spec, out)


def _privacy(spec: Spec, out: Path) -> Any:
    from harness.analysis.privacy.stage import privacy_stage

    return privacy_stage(spec, out)


def _report(spec: Spec, out: Path) -> Any:
    from harness.report.build import refresh

    return refresh(out)


# The seam the tests use to leave post-run stages out (they need a real model, or draw figures).
POST_RUN = (
    PostRunStage("timing the cloud parts", _cloud, "recommend and the report leave the cloud part out of the latency; "
                 "`splitbench run SPEC --out {out} --resume` times it again"),
    PostRunStage("privacy scores", _privacy, "fix the spec's [privacy] table, then `splitbench run SPEC --out {out} "
                 "--resume` scores again"),
    PostRunStage("report", _report, "rerun `splitbench report {out}`"),
)


def post_run(spec: Spec, out: Path, say: Callable[[str], None], stages: Iterable[PostRunStage] | None = None
             ) -> tuple[Path, ...]:
    """Run the post-run stages in order; returns the figures and report written. A stage that fails is one
    warning line and the next goes on (the measurements are safe on disk), except a results directory that
    cannot be written: that is the run's own failure."""
    written: tuple[Path, ...] = ()
    for stage in POST_RUN if stages is None else stages:
        try:
            made = stage.run(spec, out)
        except store.ResultsWriteError:
            raise
        except Exception as exc:  # noqa: BLE001 - reported; `splitbench report DIR` redoes the report
            say(f"warning: {stage.name} failed ({type(exc).__name__}: {exc}); the measurements are safe; "
                + stage.fix.format(out=out))
            continue
        if stage.name == "report" and made:
            written = tuple(Path(p) for p in made)
    return written


def run_spec(spec: Spec, out: str | Path, *, resume: bool = False, targets: Iterable[str] | None = None,
             runs: int | None = None, progress: bool = True, executor: str = "serial",
             ray_address: str | None = None) -> RunOutcome:
    """Export, then measure every (configuration, backend, device) of ``spec`` into ``out``.

    Exit code 0; ``CONFIG_FAILED`` when some configuration failed (its row says why); ``DEVICE_LOST`` when a
    device went away (its unattempted jobs have no row; ``--resume`` completes the run); ``INTERRUPTED``
    on Ctrl-C (everything finished is on disk).
    """
    out = Path(out)
    spec = effective_spec(spec, targets=targets, runs=runs)
    hash_ = spec_hash(spec)
    ex = factory.make_executor(executor, spec, ray_address=ray_address)  # an unknown target fails before any work
    try:
        with store.ResultsLock(out):
            return _run_locked(spec, out, hash_, ex, resume=resume, progress=progress)
    finally:
        ex.close()


def _run_locked(spec: Spec, out: Path, hash_: str, ex, *, resume: bool, progress: bool) -> RunOutcome:
    previous = manifests.check_out_dir(out, hash_, resume=resume)
    devices = ex.open_devices()  # spec target -> DeviceInfo (a device that cannot be reached: AgentError)
    artifacts = export_artifacts(spec, progress=progress)
    manifest = manifests.start(out, spec, hash_, devices, resume=resume, previous=previous, artifacts=artifacts,
                               executor=ex.describe())
    plan = plan_jobs(spec, identify(spec), artifacts, devices)
    run = measure_plan(plan, ex, out, hash_, devices, resume=resume, progress=progress)
    counts = manifests.finish(out, manifest, status=run.status, records=run.records, planned=len(plan),
                              measured=run.measured, resumed=run.resumed, not_attempted=run.not_attempted,
                              lost=run.lost, error=run.aborted)
    if run.aborted is not None:
        raise run.aborted

    console = run.console
    figures: tuple[Path, ...] = ()
    if run.interrupted:
        code = exitcodes.INTERRUPTED
    else:
        figures = post_run(spec, out, lambda line: console.print(visible(line), markup=False, soft_wrap=True))
        code = exitcodes.DEVICE_LOST if run.lost else (exitcodes.CONFIG_FAILED if counts["failed"] else exitcodes.OK)
        console.print(visible(f"{counts['ok']} ok, {counts['failed']} failed, {counts['skipped']} skipped, "
                              f"{run.not_attempted} not attempted ({run.measured} measured now, {run.resumed} kept from "
                              f"{out} by --resume); results in {out}"
                              + (f" (figures in {out / FIGURES_DIR})" if figures else "")),
                      markup=False, soft_wrap=True)
        if run.lost:
            console.print(visible(f"lost: {', '.join(f'{d} ({why})' for d, why in run.lost.items())}; reconnect and "
                                  "run again with --resume"), markup=False, soft_wrap=True)
    return RunOutcome(exit_code=code, records=tuple(run.records), out=out, measured=run.measured,
                      interrupted=run.interrupted, figures=figures, lost=run.lost, not_attempted=run.not_attempted)
