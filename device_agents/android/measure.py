"""The Android agent's jobs: each job is measured on the phone by the runtime's own native benchmark
tool, pinned with ``taskset`` to one core and held to one thread, as the papers measured on a Nexus 6P.

Per job (:meth:`AndroidAgent.measure`; the artifact placed before by :meth:`AndroidAgent.prepare`):
1. wait for the phone to cool (battery below ``cool_below_c`` and thermal status NONE), up to
   ``cool_timeout_s``; the wait is recorded, and a timeout is a note, not a failure;
2. conditions before (thermal status, battery temperature, the core's frequency and governor);
3. the cold process: the page cache dropped first when the phone is rooted (else the row says the cold
   load was not obtained), then the tool loads the model, runs the first inference, the warm-up and
   the timed runs; the runner (``protocol.runner_script``) polls its ``/proc/<pid>/status`` for the pin
   and the memory while it runs;
4. ``warm_loads`` more processes, each a fresh load (page cache warm);
5. conditions after. Scratch files of the job are removed.

The tools' numbers are taken as they report them: per-run samples where they print them
(``onnxruntime_perf_test``'s result file, ``executor_runner``'s iterations), the summary where they
do not (LiteRT's ``benchmark_model``: an :class:`~device_agents.base.Aggregate`), never invented.
"""

from __future__ import annotations

import dataclasses
import itertools
import signal
import time
from pathlib import Path
from typing import Any

from device_agents.android import accelerators as acc
from device_agents.android import protocol as P
from device_agents.android import tool_logs
from device_agents.android.session import (SPACE_MARGIN_B, TOOLS_ENV, WHERE_TO_GET, AndroidOptions, AndroidSession,
                                           ToolInfo)
from device_agents.android.transport import RemoteError, ShellTimeout, parse_target
from device_agents.base import (CRASHED, FAILED, OK, TIMEOUT, ArtifactRef, Conditions, Delegation, DeviceUnavailable,
                                MeasureJob, MeasureResult, MemoryReading)

# Where a tool's Android build logs besides its output: logcat tag and level (`logcat -s TAG:LEVEL`).
LOGCAT = {P.ET_TOOL: "ExecuTorch:I", P.ORT_TOOL: "onnxruntime:V"}


class AndroidAgent(AndroidSession):
    """The session on one phone (:class:`~device_agents.android.session.AndroidSession`) with its jobs:
    artifacts placed once per content key, then measured by the tools."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._placed: dict[str, str] = {}  # artifact key -> device path of what a runtime loads
        self._jobs = itertools.count(1)

    def prepare(self, artifact: ArtifactRef) -> str:
        """Place the artifact's files under ``<workdir>/artifacts/<key>/`` once, checked by sha256; the
        free space is checked before anything is pushed."""
        self.require_open()
        key_dir = self.layout.artifact_dir(artifact.key)
        if artifact.key in self._placed:
            return self._placed[artifact.key]
        remote = [f"{key_dir}/{f.relpath}" for f in artifact.files]
        have = P.parse_hashes(self.link.shell(P.hashes_command(remote), timeout_s=120).output)
        todo = [(f, r) for f, r, h in zip(artifact.files, remote, have + [None] * len(remote)) if h != f.sha256]
        if todo:
            need = sum(f.size_b for f, _ in todo)
            free = P.parse_df_available(self.link.shell(f"df -k {P.q(self.options.workdir)}").output)
            if free is not None and free < need + SPACE_MARGIN_B:
                raise self.storage_full(need, free)
            dirs = sorted({r.rsplit("/", 1)[0] for _, r in todo})
            self.link.check("mkdir -p " + " ".join(P.q(d) for d in dirs))
            for f, r in todo:
                self.push_checked(Path(artifact.root) / f.relpath, r, f.sha256, 0o644, need=need)
        path = f"{key_dir}/{artifact.relpath}"
        self._placed[artifact.key] = path
        return path

    def measure(self, job: MeasureJob) -> MeasureResult:
        """One job on the phone. :class:`DeviceUnavailable` when the phone goes away; every failure of
        the job itself is the result's status."""
        self.require_open()
        tool_name = P.TOOL_FOR_BACKEND.get(job.backend)
        tool = self.tools.get(tool_name) if tool_name else None
        if tool is None:
            why = (f"no Android tool runs {job.backend}" if tool_name is None else
                   f"{tool_name} is not installed: give its arm64 binary in [android.tools] or {TOOLS_ENV}; "
                   f"{WHERE_TO_GET[tool_name]}")
            return MeasureResult(status=FAILED, reason=why)
        found = tool.can_ask
        if job.accelerator not in found.candidates or (tool.name, job.accelerator) in self.accelerator_refused:
            why = self.accelerator_refused.get((tool.name, job.accelerator)) or found.missing.get(job.accelerator)
            return MeasureResult(status=FAILED, reason=why or f"{tool.name} cannot be asked for the {job.accelerator}")
        deadline = time.monotonic() + job.timeout_s
        diagnostics: dict[str, Any] = {"tool": tool.version, "core": self.core, "calls": []}
        notes: list[str] = []
        cooled_s, cool_note, before = self._cool_down()
        diagnostics["cool_wait_s"] = round(cooled_s, 3)
        if cool_note:
            notes.append(cool_note)
        job_dir = f"{self.layout.jobs}/{self.session_id}-{next(self._jobs)}"
        self.link.check(f"mkdir -p {P.q(job_dir)}")
        try:
            return self._measure(job, tool, job_dir, deadline, before, notes, diagnostics)
        finally:
            try:
                self.link.shell(f"rm -rf {P.q(job_dir)}", timeout_s=30)
            except (RemoteError, ShellTimeout, DeviceUnavailable):
                pass  # a phone gone: the reason that is propagating says why; the next session reaps

    def _measure(self, job: MeasureJob, tool: ToolInfo, job_dir: str, deadline: float, before: Conditions,
                 notes: list[str], diagnostics: dict[str, Any]) -> MeasureResult:
        base = dict(runtime={tool.name: tool.version}, conditions_before=before, diagnostics=diagnostics)
        setting, placement = self._setting(job, tool, job_dir, deadline, diagnostics)
        if isinstance(setting, MeasureResult):  # no candidate runs here, or the placement run failed
            return dataclasses.replace(setting, **base, notes=tuple(notes))
        if placement is not None:  # ONNX Runtime put nothing on the accelerator: nothing of it to measure
            delegation, why, more = acc.verdict(setting, placement, ort=True)
            if why:
                return MeasureResult(status=FAILED, reason=why, delegation=delegation, **base,
                                     notes=tuple(notes + more))
        cold_method = self._drop_caches()
        if cold_method == "not_obtained":
            notes.append("cold load not obtained: the phone is not rooted, so the page cache could not be dropped; "
                         "the 'cold' load may be warm")
        call = P.tool_call(job.backend, job.artifact_path, job, "cold", job_dir, flags=tool.flags,
                           accelerator=setting.args)
        report, text, extra_text = self._run(tool, call, job_dir, deadline, diagnostics)
        failure = self._failure(tool, call, report, text, job, deadline)
        delegation, why, more = self._delegation(tool, setting, placement, text, finished=failure is None)
        if failure is not None:
            if job.accelerator != "cpu" and delegation.words:
                failure["reason"] += f"; the tool said about the {job.accelerator}: {delegation.words}"
            return MeasureResult(**failure, **base, delegation=delegation, notes=tuple(notes))
        if why:  # the delegate did not apply: the runs were the CPU's, never kept as the accelerator's
            return MeasureResult(status=FAILED, reason=why, stderr_tail=text[-4000:], delegation=delegation, **base,
                                 notes=tuple(notes + more))
        notes.extend(more)
        try:
            log = tool_logs.parse_log(text, P.LOG_FAMILY[tool.name], result_file_text=extra_text)
        except tool_logs.ToolLogError as exc:
            return MeasureResult(status=FAILED, reason=f"{tool.name} log: {exc}", stderr_tail=text[-4000:], **base,
                                 notes=tuple(notes))
        timings, problem = self._timings(job, log)
        if problem is None and log.init_ns is None:
            problem = f"{tool.name} reported no load time"
        if problem:
            return MeasureResult(status=FAILED, reason=problem, stderr_tail=text[-4000:], **base, notes=tuple(notes))
        notes.extend(log.notes)
        if log.aggregate is not None:
            notes.append(f"timed runs: {log.tool} reports their summary (n, mean, std, min, max"
                         f"{', ' + ', '.join('p' + p for p in log.aggregate.percentiles) if log.aggregate.percentiles else ''}),"
                         " not each run: an aggregate, not samples")
        if tool.name == P.ORT_TOOL and log.first_infer_ns == 0:
            notes.append("first inference not obtained: onnxruntime_perf_test said 0 ms (it truncates to whole "
                         "milliseconds: under 1 ms)")
        polled = P.polled_memory(report, self.options.poll_interval_s)
        memory = _tool_memory(log.memory)
        # Primary reading: the tool's own figure when it states the growth since its start (LiteRT: the
        # model memory in its terms), else the polled peak (no baseline is visible from outside a tool).
        if any(m.growth_b is not None for m in memory):
            memory = memory + ((polled,) if polled else ())
        else:
            memory = ((polled,) if polled else ()) + memory
        if not report.tool_polls:
            notes.append("the tool finished before its /proc status could be read: pin and memory not verified")
        pinned = report.pinned_cpus
        pinning = (f"taskset {P.mask([self.core])} (cpu {self.core}); Cpus_allowed_list of the tool's pid "
                   f"{', '.join(report.cpus_seen) or 'not read'} in {len(report.polls)} polls of /proc/{report.pid}/status")
        if pinned and pinned != (self.core,):
            notes.append(f"the pin did not hold: asked for cpu {self.core}, the tool was allowed on {list(pinned)}")
        threads = {"tool_threads_max": report.max_threads, "flags": _thread_flags(call)}
        diagnostics["tool_log"] = {"units": dict(log.units), "extra": dict(log.extra),
                                   "wall_ns_of_its_timed_runs": log.wall_runs_ns}
        if log.warmup is not None:
            diagnostics["tool_log"]["warmup"] = dataclasses.asdict(log.warmup)

        warm_ns: list[int] = []
        status, reason, tail = OK, "", ""
        for i in range(job.warm_loads):
            wcall = P.tool_call(job.backend, job.artifact_path, job, "warm", job_dir, index=i + 1, flags=tool.flags,
                                accelerator=setting.args)
            wreport, wtext, _ = self._run(tool, wcall, job_dir, deadline, diagnostics)
            wfail = self._failure(tool, wcall, wreport, wtext, job, deadline)
            if wfail is None:
                try:
                    wload = tool_logs.parse_log(wtext, P.LOG_FAMILY[tool.name]).init_ns
                except tool_logs.ToolLogError as exc:
                    wload, why = None, str(exc)
                else:
                    why = f"{tool.name} reported no load time"
                if wload is None:
                    wfail = {"status": FAILED, "reason": why, "stderr_tail": wtext[-4000:]}
                else:
                    warm_ns.append(wload)
            if wfail is not None:
                status, reason, tail = wfail["status"], f"warm load {i + 1}: {wfail['reason']}", wfail["stderr_tail"]
                break
        after = self.conditions()
        diagnostics["stray_lines"] = report.stray[-20:]
        return MeasureResult(
            status=status, reason=reason, stderr_tail=tail, **timings,
            load_cold_ns=log.init_ns, cold_method=cold_method, load_warm_ns=tuple(warm_ns) if status == OK else (),
            memory=memory, pinned_cpus=pinned, pinning=pinning, threads=threads, conditions_after=after,
            delegation=delegation, notes=tuple(dict.fromkeys(notes)), **base)

    def _setting(self, job: MeasureJob, tool: ToolInfo, job_dir: str, deadline: float, diagnostics: dict[str, Any]
                 ) -> tuple[acc.Setting | MeasureResult, tool_logs.DelegateReading | None]:
        """The setting that asks this tool for the job's accelerator and, for ONNX Runtime off the CPU, where a
        session-creation run (``-v -n``, the same flags) placed the nodes. ONNX Runtime's ``-e`` lists providers
        the build may lack: the candidates are tried in order, the first the build has is kept for the session,
        and when none is, the result is a failed row naming what the tool said."""
        key = (tool.name, job.accelerator)
        candidates = tool.can_ask.candidates[job.accelerator]
        if tool.name != P.ORT_TOOL or job.accelerator == "cpu":
            return candidates[0], None
        if key in self.accelerator_found:
            candidates = (self.accelerator_found[key],)
        said = []
        for setting in candidates:
            call = P.tool_call(job.backend, job.artifact_path, job, "placement", job_dir, accelerator=setting.args)
            report, text, _ = self._run(tool, call, job_dir, deadline, diagnostics)
            missing = tool_logs.not_in_build(text)
            if missing:
                said.append(f"{' '.join(setting.args)}: {missing}")
                continue
            failure = self._failure(tool, call, report, text, job, deadline)
            if failure is not None:
                failure["reason"] = f"the placement run ({setting.setting} -v -n): {failure['reason']}"
                return MeasureResult(**failure, delegation=Delegation(job.accelerator, setting.setting, "unknown")), None
            self.accelerator_found[key] = setting
            diagnostics["placement_log"] = text[-4000:]
            return setting, tool_logs.read_placements(text, setting.delegate)
        why = f"{tool.name} cannot run the {job.accelerator} here: " + "; ".join(said)
        self.accelerator_refused[key] = why
        return MeasureResult(status=FAILED, reason=why), None

    def _delegation(self, tool: ToolInfo, setting: acc.Setting, placement: tool_logs.DelegateReading | None,
                    text: str, finished: bool) -> tuple[Delegation, str | None, list[str]]:
        """What the cold run's output (LiteRT) or the placement run (ONNX Runtime) says about the accelerator.
        ``finished``: the cold run ended well (a tool told to refuse CPU fallback then ran wholly on it)."""
        if tool.name == P.ORT_TOOL:
            return acc.verdict(setting, placement, ort=True)
        if tool.name == P.LITERT_TOOL:
            if setting.enforced and finished:
                return acc.verdict(setting, acc.enforced_reading(setting))
            delegate, requested = (setting.delegate, True) if setting.delegate else ("XNNPACK", False)
            return acc.verdict(setting, tool_logs.read_delegation(text, delegate, requested=requested))
        return acc.verdict(setting, tool_logs.DelegateReading(
            "unknown", words="decided at export (the XNNPACK partitioner); executor_runner prints nothing about what "
                             "was delegated"))

    def _timings(self, job: MeasureJob, log: tool_logs.ToolMeasurement) -> tuple[dict[str, Any], str | None]:
        """The job's timing fields from a tool's log, or why they cannot be made: the tool's aggregate of
        the timed runs (LiteRT), or its samples, whose first ``job.warmup`` are the warm-up (the tools that
        print every run have no warm-up of their own beyond the first inference)."""
        first = log.first_infer_ns if log.first_infer_ns else None  # perf_test's "0 ms" is under its resolution
        if log.aggregate is not None:
            if log.aggregate.n != job.runs:
                return {}, (f"{log.tool} ran {log.aggregate.n} timed runs, the job asked for {job.runs} "
                            "(its max_secs was reached?)")
            return {"infer_aggregate": log.aggregate, "first_infer_ns": first}, None
        want = job.warmup + job.runs
        if len(log.samples_ns) != want:
            return {}, (f"{log.tool} reported {len(log.samples_ns)} timed inferences, the job needs {want} "
                        f"({job.warmup} warm-up + {job.runs} timed)")
        return {"first_infer_ns": first, "warmup_ns": tuple(log.samples_ns[:job.warmup]),
                "infer_ns": tuple(log.samples_ns[job.warmup:])}, None

    def _failure(self, tool: ToolInfo, call: P.ToolCall, report: P.RunnerReport, text: str, job: MeasureJob,
                 deadline: float) -> dict[str, Any] | None:
        tail = text[-4000:]
        if report.timed_out or (not report.finished and time.monotonic() >= deadline):
            return {"status": TIMEOUT, "stderr_tail": tail,
                    "reason": f"{tool.name} ({call.phase}) did not finish within timeout_s={job.timeout_s:g}: "
                              f"killed on the phone"}
        if report.error:
            return {"status": FAILED, "stderr_tail": tail, "reason": f"runner: {report.error}"}
        sig = report.signal
        if sig is not None:
            try:
                name = signal.Signals(sig).name
            except ValueError:
                name = f"signal {sig}"
            return {"status": CRASHED, "stderr_tail": tail,
                    "reason": f"{tool.name} ({call.phase}) was killed by {name}"}
        if report.exit_code not in (0, None):
            last = next((ln for ln in reversed(text.splitlines()) if ln.strip()), "")
            return {"status": FAILED, "stderr_tail": tail,
                    "reason": f"{tool.name} ({call.phase}) exited with code {report.exit_code}: {last[:300]}"}
        if report.exit_code is None:
            return {"status": CRASHED, "stderr_tail": tail, "reason": f"{tool.name} ({call.phase}): no exit status"}
        return None

    def _run(self, tool: ToolInfo, call: P.ToolCall, job_dir: str, deadline: float,
             diagnostics: dict[str, Any]) -> tuple[P.RunnerReport, str, str | None]:
        """Start one tool process through the runner and read its report; then its output files."""
        n = len(diagnostics["calls"]) + 1
        out_file = f"{job_dir}/{call.phase}{n}-out.txt"
        pid_file = f"{self.layout.run}/{self.session_id}-{n}.pid"
        remaining = max(1.0, deadline - time.monotonic())
        script = P.runner_script(tool_path=tool.device_path, args=call.args, cpu=self.core, job_dir=job_dir,
                                 out_file=out_file, pid_file=pid_file, poll_s=self.options.poll_interval_s,
                                 timeout_s=remaining)
        others = [c.cpu for c in self.facts.cores if c.cpu != self.core]
        command = P.runner_command(script, others)
        diagnostics["calls"].append({"phase": call.phase, "argv": [tool.device_path, *call.args]})
        report = P.RunnerReport()
        self.running_pid_file = pid_file
        t0 = time.monotonic()
        try:
            for line in self.link.stream(command, idle_timeout_s=self.options.link_timeout_s):
                report.feed(line)
                if time.monotonic() > deadline + self.options.link_timeout_s + 10:
                    break  # the runner's own timeout did not fire: leave, the pid file lets close() kill it
        except ShellTimeout:
            raise DeviceUnavailable(self.device_id, f"the runner's heartbeat stopped for "
                                    f"{self.options.link_timeout_s:g} s while the phone still answers") from None
        diagnostics["calls"][-1].update(pid=report.pid, wall_s=round(time.monotonic() - t0, 3),
                                         exit_code=report.exit_code, polls=len(report.polls))
        if not report.finished:
            self._kill_pid_file(pid_file)
        else:
            self.running_pid_file = None
        text = self._read_file(out_file)
        tag = LOGCAT.get(tool.name) if tool.name == P.ET_TOOL or call.phase == "placement" else None
        if tag and report.pid and "logcat" in self.facts.commands:
            # The Android build of executor_runner logs only to logcat (tag ExecuTorch); ONNX Runtime's own
            # log (the placements of a verbose run) goes there too (AndroidLogSink, tag onnxruntime).
            text += self.link.shell(f"logcat -d --pid={report.pid} -s {tag}", timeout_s=60).output
        extra = self._read_file(call.result_file) if call.result_file else None
        return report, text, extra

    def _read_file(self, path: str) -> str:
        try:
            return self.link.pull_bytes(path).decode(errors="replace")
        except RemoteError:
            return ""

    def _kill_pid_file(self, pid_file: str) -> None:
        self.link.shell(P.kill_command(pid_file))
        self.running_pid_file = None

    def _drop_caches(self) -> str:
        command = P.drop_caches_command(self.facts.su)
        if command is None:
            return "not_obtained"
        return "drop_caches" if self.link.shell(command, timeout_s=120).exit_code == 0 else "not_obtained"

    def _cool_down(self) -> tuple[float, str | None, Conditions]:
        """Wait until the battery is below ``cool_below_c`` and the thermal status is NONE; (seconds
        waited, a note when the wait timed out, the conditions at the end of the wait)."""
        o = self.options
        t0 = time.monotonic()
        while True:
            c = self.conditions()
            level = P.thermal_level(c.thermal_status)
            hot = (c.battery_temp_c is not None and c.battery_temp_c >= o.cool_below_c) or (level or 0) > 0
            waited = time.monotonic() - t0
            if not hot:
                return waited, None, c
            if waited >= o.cool_timeout_s:
                return waited, (f"measured warm: after waiting {waited:.0f} s the battery was at {c.battery_temp_c} °C "
                                f"(threshold {o.cool_below_c:g} °C), thermal status {c.thermal_status}"), c
            time.sleep(min(o.cool_poll_s, max(0.0, o.cool_timeout_s - waited)))


def _tool_memory(readings: tuple[MemoryReading, ...]) -> tuple[MemoryReading, ...]:
    """The tool's readings, with LiteRT's growth of its peak RSS since its start as ``growth_b`` (the
    contract's place for a tool's own figure that has no baseline)."""
    out = []
    for m in readings:
        growth = m.detail.get("overall_delta_b")
        out.append(dataclasses.replace(m, growth_b=growth) if growth is not None and m.growth_b is None else m)
    return tuple(out)


def _thread_flags(call: P.ToolCall) -> str:
    a = call.args
    if call.tool == P.ORT_TOOL:
        return f"-x {a[a.index('-x') + 1]} -y {a[a.index('-y') + 1]}"
    return " ".join(x for x in a if x.startswith(("--num_threads", "--cpu_threads"))) or "none"


def agent_for(target: str, **options: Any) -> AndroidAgent:
    """The agent for ``android``, ``android:<serial>`` or ``android:<host>:<port>`` (not yet opened);
    ``options`` is the spec's ``[android]`` table."""
    address = parse_target(target)
    opts = AndroidOptions.from_options(options)
    opts.check_tools()
    return AndroidAgent(address, opts)
