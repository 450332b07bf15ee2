"""Measuring on an iPhone: pushing a package once per content key, then one job as several launches of
the agent app (compile, cold, each warm load: fresh processes), each polled until it writes its result,
killed on timeout, and explained from the system's crash and jetsam reports when it ends without one.

:class:`Launcher` does this over an open :class:`~device_agents.ios.transport.IosTransport`; the files it
writes and reads are ``protocol.py``'s.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import posixpath
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from device_agents.base import (CRASHED, FAILED, TIMEOUT, ArtifactRef, ContractError, DeviceUnavailable, MeasureJob,
                                MeasureResult, MemoryReading)
from device_agents.ios import protocol
from device_agents.ios.protocol import INTERRUPTED, JOBS, MODELS, Launch, SchemaError, container_path
from device_agents.ios.errors import AppNotInstalled, DiskFull, LaunchRefused, TransportError
from device_agents.ios.session import FIX, MIN_FREE_B, IosOptions, human_size, refusal_line
from device_agents.ios.transport import CrashReports, IosTransport

APP_EXECUTABLE = "SplitbenchAgent"  # CFBundleExecutable, the process name crash reports carry
POLL_S = 0.2
EXIT_GRACE_S = 5.0  # after the result is written the app exits; kill it if it lingers
SYSMON_INTERVAL_MS = 100


# --------------------------------------------------------------------------------------------------
# Crash and jetsam reports


def summarize_report(name: str, text: str, executable: str = APP_EXECUTABLE, pid: int | None = None) -> str:
    """One line from an ``.ips`` report (a JSON header line, then a JSON body; pycrashreport reads the same
    shape): a jetsam event's reason for the app, or a crash's exception and termination (0x8badf00d: the
    watchdog). The report's file name comes last, in brackets."""
    base = posixpath.basename(name)
    head, _, body = text.partition("\n")
    try:
        meta = json.loads(head)
    except ValueError:
        return f"{' '.join(text.split())[:160]} [{base}]"
    try:
        data = json.loads(body)
    except ValueError:
        data = {}
    bug = str(meta.get("bug_type"))
    if bug == "298":  # JetsamEvent
        procs = data.get("processes") or []
        mine = next((p for p in procs if isinstance(p, dict) and (p.get("pid") == pid or p.get("name") == executable)),
                    None)
        reason = f" {executable} {mine.get('reason')}" if mine and mine.get("reason") else ""
        largest = data.get("largestProcess")
        return (f"jetsam (the system freed memory):{reason or ' the app was not named'}"
                + (f"; largest process {largest}" if largest else "") + f" [{base}]")
    if bug in ("309", "109"):  # a crash of a user process
        exc = data.get("exception") or {}
        term = data.get("termination") or {}
        code = term.get("code")
        code_s = hex(code) if isinstance(code, int) else (str(code) if code is not None else "")
        watchdog = "the watchdog (0x8badf00d: the app took too long); " if code_s.lower() == "0x8badf00d" else ""
        what = " ".join(str(v) for v in (exc.get("type"), exc.get("signal")) if v)
        ended = " ".join(str(v) for v in (term.get("namespace"), code_s, term.get("indicator")) if v)
        return f"{watchdog}crash {what or '(no exception)'}, termination {ended or '(none given)'} [{base}]"
    return f"{meta.get('name') or 'a report'} (bug_type {bug}) [{base}]"


def is_app_report(name: str, executable: str) -> bool:
    base = posixpath.basename(name)
    return base.startswith(executable) or base.startswith("JetsamEvent")


# --------------------------------------------------------------------------------------------------
# A launch that gave no result


@dataclass(frozen=True)
class NoResult:
    """A launch that ended, or was killed at the deadline, without writing its result."""

    phase: str
    index: int
    pid: int
    duration_s: float
    timed_out: bool

    def describe(self) -> str:
        if self.timed_out:
            return f"the {self.phase} launch wrote no result in time and was killed (pid {self.pid})"
        return f"the {self.phase} launch ended without a result (pid {self.pid}, after {self.duration_s:.1f} s)"


# --------------------------------------------------------------------------------------------------
# Jobs


class Launcher:
    """Pushes packages and measures jobs on one iPhone whose session is open (``t``)."""

    def __init__(self, t: IosTransport, options: IosOptions, udid: str, *, crash_report_wait_s: float = 5.0):
        """``crash_report_wait_s``: how long to wait for the system's report after the app ended without a result."""
        self.t, self.options, self.udid = t, options, udid
        self.crash_report_wait_s = crash_report_wait_s
        self.executable = APP_EXECUTABLE  # the app's CFBundleExecutable, once the session knows it
        self._prepared: dict[str, str] = {}

    # -- artifacts -------------------------------------------------------------------------------
    def prepare(self, artifact: ArtifactRef) -> str:
        """Push the ``.mlpackage`` into the app's Documents once per content key; return its path there."""
        t = self.t
        if artifact.key in self._prepared:
            return self._prepared[artifact.key]
        local = Path(artifact.path)
        if not (local.is_dir() and local.suffix == ".mlpackage"):
            raise ValueError(f"the iOS agent runs Core ML .mlpackage directories, not {local.name}")
        key = re.sub(r"[^A-Za-z0-9._-]", "_", artifact.key)[:96]
        remote_dir = container_path(f"{MODELS}/{key}")
        marker = f"{remote_dir}/complete.json"
        rel = f"{MODELS}/{key}/{local.name}"
        if not (t.exists(marker) and json.loads(t.read(marker)).get("sha256") == artifact.sha256):
            t.remove(remote_dir)
            free = t.free_bytes()
            if free is not None and free < artifact.size_b + MIN_FREE_B:
                raise DeviceUnavailable(self.udid, self._full_line(free, artifact.size_b))
            try:
                t.makedirs(remote_dir)
                t.push(local, remote_dir, artifact.size_b)
                # Written last: a package without it (a push cut short) is pushed again.
                t.write(marker, protocol.encode({"key": artifact.key, "sha256": artifact.sha256,
                                                 "size_b": artifact.size_b, "files": len(artifact.files)}))
            except DiskFull:
                with contextlib.suppress(DeviceUnavailable, TransportError):
                    t.remove(remote_dir)
                raise DeviceUnavailable(self.udid, self._full_line(None, artifact.size_b)) from None
        self._prepared[artifact.key] = rel
        return rel

    def _full_line(self, free: int | None, size_b: int) -> str:
        have = f"{human_size(free)} free, " if free is not None else ""
        return (f"the iPhone is full ({have}the model needs {human_size(size_b)} and {human_size(MIN_FREE_B)} are "
                f"kept free): {FIX['free space']}, then --resume")

    # -- measuring -------------------------------------------------------------------------------
    def measure(self, job: MeasureJob) -> MeasureResult:
        """One job; its accelerator is Core ML's compute units (``protocol.COMPUTE_UNITS_FOR``), recorded in the
        result's delegation."""
        if job.accelerator not in protocol.COMPUTE_UNITS_FOR:
            return MeasureResult(status=FAILED, reason=f"Core ML has no compute units for the {job.accelerator}")
        result = self._measure(job, protocol.COMPUTE_UNITS_FOR[job.accelerator])
        if result.delegation is None:
            result = dataclasses.replace(result, delegation=protocol.delegation_for(job))
        return result

    def _measure(self, job: MeasureJob, units: str) -> MeasureResult:
        if job.backend != "coreml":
            return MeasureResult(status=FAILED, reason=f"the iOS agent runs Core ML only, not {job.backend}")
        package = job.artifact_path
        if not package.startswith(f"{MODELS}/"):  # a host path: place it first
            package = self.prepare(ArtifactRef.from_path(package, key=job.artifact_key or Path(package).name,
                                                         backend=job.backend))
        timeout_s = self.options.timeout_s or job.timeout_s
        deadline = time.monotonic() + timeout_s
        job_id = f"{re.sub(r'[^A-Za-z0-9]', '', job.artifact_key)[:12] or 'job'}-{uuid.uuid4().hex[:8]}"
        reports = self._open_reports()
        launches: list[Launch] = []
        host_peak: list[int] = []
        try:
            reports_before = self._report_names(reports)
            for phase, index in protocol.launch_plan(job):
                doc = protocol.job_document(job_id=job_id, phase=phase, index=index, job=job, package=package,
                                            compute_units=units)
                out = self.launch(doc, deadline, sysmon=self.options.sysmontap and phase == "cold", samples=host_peak)
                if isinstance(out, NoResult):
                    return self._no_result(out, launches, reports, reports_before, timeout_s, units)
                status = out.result["status"]
                if status == INTERRUPTED:
                    raise DeviceUnavailable(self.udid, f"the agent app was sent to the background during the "
                                            f"{phase} launch ({out.result['reason']}): {FIX['locked']}")
                if status != "ok":
                    return protocol.failed_result(out, compute_units=units)
                launches.append(out)
            host_memory = None
            if host_peak:
                host_memory = MemoryReading(method="sysmontap", peak_b=max(host_peak),
                                            detail={"samples": len(host_peak), "interval_ms": SYSMON_INTERVAL_MS})
            result = protocol.to_measure_result(job, launches, compute_units=units, host_memory=host_memory)
            result.check(job)
            return result
        except SchemaError as exc:
            return MeasureResult(status=FAILED, compute_units=units,
                                 reason=f"the agent app and this host disagree on the result format: {exc}")
        except ContractError as exc:
            return MeasureResult(status=FAILED, compute_units=units, reason=f"the agent app's result is incomplete: {exc}")
        except DiskFull:
            raise DeviceUnavailable(self.udid, self._full_line(None, 0)) from None
        except (LaunchRefused, AppNotInstalled) as exc:  # iOS stopped starting the app: no job can run on it
            raise DeviceUnavailable(self.udid, refusal_line(self.udid, exc)) from None
        finally:
            if reports is not None:
                reports.close()
            self.clean_job(job_id)

    def launch(self, doc: dict[str, Any], deadline: float, *, sysmon: bool = False,
               samples: list[int] | None = None) -> Launch | NoResult:
        """Write the job file, launch the app, wait for its result (or its end, or the deadline)."""
        t = self.t
        lid, phase, index = doc["launch_id"], doc["phase"], doc["index"]
        result_path = container_path(protocol.unescape_path(doc["result_path"]))
        t.makedirs(container_path(JOBS))
        t.makedirs(posixpath.dirname(result_path))
        t.remove(result_path)
        t.write(container_path(f"{JOBS}/{lid}.json"), protocol.encode(doc))
        start = time.monotonic()
        pid = t.launch(self.options.bundle_id, ["--splitbench-job", lid])
        if sysmon:
            t.sysmon_start(pid, SYSMON_INTERVAL_MS)
        try:
            return self._wait(pid, lid, phase, index, result_path, start, deadline)
        except BaseException as exc:
            if not isinstance(exc, DeviceUnavailable):  # Ctrl-C, a result that breaks the schema: stop the app
                with contextlib.suppress(Exception):
                    t.kill(pid)
            raise
        finally:
            if sysmon and samples is not None:
                samples.extend(t.sysmon_stop())

    def _wait(self, pid: int, lid: str, phase: str, index: int, result_path: str, start: float,
              deadline: float) -> Launch | NoResult:
        """Poll until the app's result is there, the app is gone, or the deadline (then kill it)."""
        t = self.t
        while True:
            if t.exists(result_path):
                result = protocol.decode_result(t.read(result_path))
                duration = time.monotonic() - start
                self._reap(pid)
                if result["launch_id"] != lid:
                    raise SchemaError(f"asked for launch {lid}, the result is for {result['launch_id']}")
                return Launch(phase, index, lid, pid, duration, result)
            if not t.is_running(pid):
                if t.exists(result_path):  # written just before it exited
                    continue
                return NoResult(phase, index, pid, time.monotonic() - start, timed_out=False)
            if time.monotonic() >= deadline:
                t.kill(pid)
                return NoResult(phase, index, pid, time.monotonic() - start, timed_out=True)
            time.sleep(POLL_S)

    def _reap(self, pid: int) -> None:
        end = time.monotonic() + EXIT_GRACE_S
        while self.t.is_running(pid):
            if time.monotonic() >= end:
                self.t.kill(pid)
                return
            time.sleep(POLL_S)

    # -- what the system logged ------------------------------------------------------------------
    def _open_reports(self) -> CrashReports | None:
        """The job's one connection to the crash reports; None when it cannot be had (a crashed row says so)."""
        try:
            return self.t.open_crash_reports()
        except DeviceUnavailable:
            raise
        except Exception:  # noqa: BLE001 - the reports only explain a crash; measuring goes on without them
            return None

    @staticmethod
    def _report_names(reports: CrashReports | None) -> set[str] | None:
        """The crash reports on the phone now; None when they cannot be read."""
        if reports is None:
            return None
        try:
            return reports.names()
        except DeviceUnavailable:
            raise
        except Exception:  # noqa: BLE001 - as above
            return None

    def _no_result(self, out: NoResult, launches: list[Launch], reports: CrashReports | None,
                   before: set[str] | None, timeout_s: float, units: str) -> MeasureResult:
        reached = ", ".join(f"warm load {la.index + 1}" if la.phase == "warm" else la.phase for la in launches) or "nothing"
        if out.timed_out:
            return MeasureResult(status=TIMEOUT, compute_units=units,
                                 reason=f"no result within timeout_s={timeout_s:g}: {out.describe()} "
                                        f"(finished: {reached})",
                                 diagnostics={"pid": out.pid, "phase": out.phase})
        logged = self._system_reports(reports, before, out.pid)
        said = "; ".join(line for line, _ in logged) or "no crash or jetsam report appeared"
        return MeasureResult(status=CRASHED, compute_units=units,
                             reason=f"the system logged: {said}; {out.describe()} (finished: {reached})",
                             stderr_tail="\n\n".join(text for _, text in logged)[-4000:],
                             diagnostics={"pid": out.pid, "phase": out.phase,
                                          "reports": [posixpath.basename(n) for n, _ in logged]})

    def _system_reports(self, reports: CrashReports | None, before: set[str] | None,
                        pid: int) -> list[tuple[str, str]]:
        """The crash or jetsam reports written since the job started that concern the app (waits a little:
        ReportCrash writes them a moment after the process ends), read through the job's connection."""
        if reports is None or before is None:
            return [("the crash reports could not be read", "")]
        end = time.monotonic() + self.crash_report_wait_s
        while True:
            new = sorted(n for n in reports.names() - before if is_app_report(n, self.executable))
            if new or time.monotonic() >= end:
                break
            time.sleep(0.5)
        return [(summarize_report(name, text, self.executable, pid), text) for name, text in reports.read(new)]

    def clean_job(self, job_id: str) -> None:
        """Remove the job's files and its compiled model (the pushed package stays, keyed by content)."""
        t = self.t
        with contextlib.suppress(DeviceUnavailable, TransportError, OSError):
            for folder in (protocol.JOBS, protocol.RESULTS):
                for name in t.listdir(container_path(folder)):
                    if name.startswith(job_id):
                        t.remove(container_path(f"{folder}/{name}"))
            t.remove(container_path(f"{protocol.COMPILED}/{job_id}.mlmodelc"))
