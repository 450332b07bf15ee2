"""The single writer of a run: each finished job becomes a record written at once, atomically, then the tables.

Executors (:mod:`harness.measure.executors`, :mod:`harness.measure.lab.driver`) measure and hand events
back; this loop, in the calling thread, is the only code that writes records. Ctrl-C or a crash loses at
most the jobs in flight, and ``--resume`` picks up from the records on disk: it keeps what was measured (and
what was skipped) and retries what failed (a timeout or a crash may have been the machine's, not the
configuration's), keeping the old failure aside.

A device that becomes unavailable stops only its own jobs: jobs it never attempted get no row, the others go on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from device_agents.base import DeviceInfo
from harness.core.clock import utc_now
from harness.core.interrupts import Terminated
from harness.measure.plan import Job, make_record
from harness.measure.progress import Progress, job_line
from harness.results import store
from harness.results.records import ResultRecord
from harness.results.tables import write_tables

TABLES_EVERY_S = 2.0  # summary.csv and samples.parquet are rebuilt at most this often during a run


@dataclass
class Measured:
    """What the measuring loop did: every record of the plan (new and kept by --resume), and how it ended."""

    records: list[ResultRecord]
    measured: int = 0  # jobs measured in this session
    resumed: int = 0  # records kept from disk by --resume
    not_attempted: int = 0  # jobs of lost devices (or after an interruption) that have no row
    lost: dict[str, str] = field(default_factory=dict)  # device_id -> why it was lost
    interrupted: bool = False
    aborted: Exception | None = None  # the executor itself failed (a Ray head lost): raised once all is written
    console: Any = None  # the run's console (stderr), for the lines printed after measuring

    @property
    def status(self) -> str:
        """The manifest's word for how the measuring ended."""
        if self.aborted is not None:
            return "aborted"
        return "interrupted" if self.interrupted else ("device lost" if self.lost else "complete")


def measure_plan(plan: list[Job], ex: Any, out: Path, hash_: str, devices: dict[str, DeviceInfo], *, resume: bool,
                 progress: bool) -> Measured:
    """Write every job of ``plan`` into ``out``: kept from disk (``resume``), written at once (no device needed)
    or measured by the executor ``ex``; then the tables. Never raises for a job: a failure is a row."""
    on_disk = store.load_records(out)
    existing = {r.record_key: r for r in on_disk if not r.failed} if resume else {}
    latest = store.newest_per_identity(on_disk)
    by_device = {info.device_id: info for info in devices.values()}
    run = Measured(records=[])
    tables_at = [0.0]  # when the tables were last rebuilt

    def write(record: ResultRecord) -> None:
        store.keep_retried(out, record.record_key)
        store.write_record(out, record)  # the moment it finishes, atomically: the records are the truth
        latest[record.identity.key()] = record
        run.records.append(record)
        # The tables are derived from the records: rebuilt at most every TABLES_EVERY_S while the run goes
        # (their cost grows with the records; a lab's driver writes many per second) and always at the end.
        if time.monotonic() - tables_at[0] >= TABLES_EVERY_S:
            write_tables(out, list(latest.values()))
            tables_at[0] = time.monotonic()

    todo = [j for j in plan if j.record_key not in existing and j.job is not None]
    remaining = len(todo)
    with Progress(len(plan), progress) as bar:
        run.console = bar.console
        for j in plan:  # what needs no device: kept from disk, export failures, skipped backends
            if j.record_key in existing:
                run.records.append(existing[j.record_key])
                run.resumed += 1
                bar.done(job_line(existing[j.record_key], j.spec_target, "  (resumed)"), None, remaining)
            elif j.job is None:
                status, reason = j.skip
                record = make_record(j, {"status": status, "reason": reason}, measure_job=None,
                                     info=by_device[j.device_id], hash_=hash_, started_at=utc_now(), duration_s=None)
                write(record)
                bar.done(job_line(record, j.spec_target), None, remaining)
        try:
            for event in ex.run(todo, say=bar.say, start=bar.start):
                if event.lost is not None:
                    run.lost[event.device_id] = event.lost
                    bar.say(f"device {event.device_id} is unavailable ({event.lost}): its {event.left} remaining "
                            "job(s) were not measured; the other devices go on; finish with --resume when it is back")
                    remaining -= event.left
                    continue
                j = event.job
                record = make_record(j, event.result.to_dict(), measure_job=event.measure_job,
                                     info=by_device[j.device_id], hash_=hash_, started_at=event.started_at,
                                     duration_s=event.duration_s)
                write(record)
                run.measured += 1
                remaining -= 1
                bar.done(job_line(record, j.spec_target), event.duration_s, remaining, ex.parallel)
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM / SIGHUP (core.interrupts)
            run.interrupted = True
            ex.stop()
            by = f" by {exc.signal_name}" if isinstance(exc, Terminated) else ""
            bar.say(f"interrupted{by}: {len(run.records)} of {len(plan)} jobs are on disk in {out}; finish with "
                    "--resume")
        except Exception as exc:  # noqa: BLE001 - re-raised by the caller, after the tables and the manifest
            run.aborted = exc
            ex.stop()
            bar.say(f"the run stopped ({type(exc).__name__}: {exc}): {len(run.records)} of {len(plan)} jobs are on "
                    f"disk in {out}; finish with --resume")

    write_tables(out, list(latest.values()))
    attempted = {r.record_key for r in run.records}
    run.not_attempted = sum(1 for j in todo if j.record_key not in attempted)
    return run
