"""The Android agent (``android``, ``android:<serial>``, ``android:<host>:<port>``): each job is
measured on the phone by the runtime's own native benchmark tool, pinned with ``taskset`` to one core
and held to one thread, as the papers measured on a Nexus 6P.

Per job (``measure``):
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

Module functions for the CLI: :func:`agent_for`, :func:`discover`, :func:`doctor`, :func:`clean`.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from device_agents.android import protocol as P
from device_agents.android import tool_logs
from device_agents.android.transport import (INSTALL_HINT, Address, AdbLink, DeviceFull, RemoteError, ShellTimeout,
                                             adb_shell_modules, key_path, parse_target, tcp_addresses_from_env,
                                             tell_user, usb_module, usb_serials)
from device_agents.base import (CRASHED, FAILED, OK, TIMEOUT, AgentError, ArtifactRef, Check, Conditions,
                                DeviceAgent, DeviceInfo, DeviceUnavailable, MeasureJob, MeasureResult, MemoryReading,
                                sha256_file)

TOOLS_ENV = "SPLITBENCH_ANDROID_TOOLS"  # a directory holding benchmark_model, onnxruntime_perf_test, executor_runner
DEFAULT_WORKDIR = "/data/local/tmp/splitbench"
SPACE_MARGIN_B = 16 * 2**20  # left free on the phone beyond an artifact's bytes

WHERE_TO_GET = {
    P.LITERT_TOOL: "LiteRT's prebuilt arm64 benchmark_model: "
                   "https://storage.googleapis.com/litert/binaries/latest/android_arm64/benchmark_model, or build it "
                   "in google-ai-edge/LiteRT with `bazel build -c opt --config=android_arm64 "
                   "//tflite/tools/benchmark:benchmark_model`",
    P.ORT_TOOL: "ONNX Runtime ships no Android perf_test: build it from source with `./build.sh --android "
                "--android_abi arm64-v8a --android_api 29 --android_sdk_path <sdk> --android_ndk_path <ndk> "
                "--config Release`, then take build/Android/Release/onnxruntime_perf_test",
    P.ET_TOOL: "build it in pytorch/executorch: `cmake --preset android-arm64-v8a -DANDROID_PLATFORM=android-26 "
               "-DEXECUTORCH_BUILD_EXECUTOR_RUNNER=ON -DEXECUTORCH_BUILD_XNNPACK=ON -DEXECUTORCH_ENABLE_LOGGING=ON "
               "-DCMAKE_BUILD_TYPE=Release -B cmake-out-android && cmake --build cmake-out-android --target "
               "executor_runner` (devtools/scripts/benchmark_android.sh does the same)",
}


class PhoneStorageFull(DeviceUnavailable):
    """No room on the phone for an artifact. Like a phone that went away, it takes no more jobs until
    the user frees space; ``--resume`` then goes on. The reason is one line that says what to do."""


# --------------------------------------------------------------------------------------------------
# Options


@dataclass(frozen=True)
class AndroidOptions:
    """The spec's ``[android]`` table (and ``[android.tools]``), validated."""

    tools: dict[str, str] = field(default_factory=dict)  # tool name -> host path of the arm64 binary
    core: int | None = None  # the CPU to pin to; None: the fastest by cpuinfo_max_freq
    cool_below_c: float = 40.0  # battery temperature a job waits for
    cool_timeout_s: float = 300.0
    cool_poll_s: float = 10.0
    workdir: str = DEFAULT_WORKDIR
    performance_mode: bool = False  # `cmd power set-fixed-performance-mode-enabled true` for the session
    poll_interval_s: float = 0.1  # /proc/<pid>/status polling while a tool runs
    link_timeout_s: float = 15.0  # silence on a running stream after which the link counts as lost

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> "AndroidOptions":
        known = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for key, value in options.items():
            if key not in known:
                raise AgentError(f"[android]: unknown key {key!r}; known keys: {', '.join(known)}")
            if key == "tools":
                if not isinstance(value, dict):
                    raise AgentError("[android.tools] must be a table of tool = \"host path of the arm64 binary\"")
                for name, path in value.items():
                    if name not in P.TOOLS:
                        raise AgentError(f"[android.tools]: unknown tool {name!r}; tools: {', '.join(P.TOOLS)}")
                    if not isinstance(path, (str, os.PathLike)):
                        raise AgentError(f"[android.tools].{name} must be a path, got {path!r}")
                values[key] = {k: str(v) for k, v in value.items()}
            elif key == "core":
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise AgentError(f"[android].core must be a CPU number >= 0, got {value!r}")
                values[key] = value
            elif key == "workdir":
                if not isinstance(value, str) or not value.startswith("/") or value.rstrip("/") in ("", "/data"):
                    raise AgentError(f"[android].workdir must be an absolute directory of its own on the phone "
                                     f"such as {DEFAULT_WORKDIR}, got {value!r}")
                values[key] = value.rstrip("/")
            elif key == "performance_mode":
                if not isinstance(value, bool):
                    raise AgentError(f"[android].performance_mode must be true or false, got {value!r}")
                values[key] = value
            else:
                number = not isinstance(value, bool) and isinstance(value, (int, float))
                minimum_ok = number and (value >= 0 if key == "cool_timeout_s" else value > 0)  # 0: never wait
                if not minimum_ok:
                    raise AgentError(f"[android].{key} must be a positive number of "
                                     f"{'°C' if key.endswith('_c') else 'seconds'}, got {value!r}")
                values[key] = float(value)
        return cls(**values)

    def tool_paths(self) -> dict[str, Path]:
        """Host paths of the tools: ``[android.tools]`` first, then ``$SPLITBENCH_ANDROID_TOOLS/<name>``."""
        out: dict[str, Path] = {}
        env_dir = os.environ.get(TOOLS_ENV)
        for name in P.TOOLS:
            if name in self.tools:
                out[name] = Path(self.tools[name]).expanduser()
            elif env_dir and (Path(env_dir) / name).is_file():
                out[name] = Path(env_dir) / name
        return out

    def check_tools(self) -> None:
        """:class:`AgentError` for a tool ``[android.tools]`` names that is not a file on this host."""
        for name, path in self.tools.items():
            if not Path(path).expanduser().is_file():
                raise AgentError(f"[android.tools].{name}: no such file {path}; {WHERE_TO_GET[name]}")


@dataclass
class ToolInfo:
    """A tool on the phone: where it came from, its content hash (its identity: the tools print no version)."""

    name: str
    host_path: Path
    sha256: str
    device_path: str
    flags: frozenset[str] | None = None  # what its --help lists (None: not asked)

    @property
    def version(self) -> str:
        return f"{self.name} sha256:{self.sha256[:12]}"


# --------------------------------------------------------------------------------------------------
# The agent


class AndroidAgent(DeviceAgent):
    """A session on one phone: one adb link, the tools pushed, artifacts placed once per content key."""

    target = "android"
    platform = "android"

    def __init__(self, address: Address | None = None, options: AndroidOptions | None = None,
                 notify: Callable[[str], None] = tell_user, install_tools: bool = True):
        self.address = address
        self.options = options or AndroidOptions()
        self.notify = notify
        self.install_tools = install_tools
        self.layout = P.Layout(self.options.workdir)
        self.link: AdbLink | None = None
        self.facts: P.DeviceFacts | None = None
        self.device_id = address.serial if address and address.serial else (str(address) if address else "android")
        self.core: int | None = None
        self.tools: dict[str, ToolInfo] = {}
        self.tools_to_push: list[str] = []  # on this host, not yet on the phone (discovery installs nothing)
        self.tool_problems: dict[str, str] = {}  # pushed, but does not run on the phone: why
        self._placed: dict[str, str] = {}  # artifact key -> device path of what a runtime loads
        self._session = f"{os.getpid()}-{int(time.time() * 1000) % 10**9}"
        self._jobs = itertools.count(1)
        self._perf_mode_set = False
        self._running_pid_file: str | None = None

    # -- session -----------------------------------------------------------------------------------
    def open(self) -> None:
        """Connect, read the phone's facts, choose the core; with ``install_tools``: make the work
        directory, kill what a lost session left running, push the tools. A phone that refuses (no
        space, a read-only directory) is one :class:`AgentError` line; a phone gone, DeviceUnavailable."""
        if self.address is None:
            self.address = only_phone()
        self.link = AdbLink(self.address, link_timeout_s=self.options.link_timeout_s, notify=self.notify)
        try:
            self._open()
        except (RemoteError, ShellTimeout) as exc:
            raise AgentError(f"{self.device_id}: cannot set up splitbench on the phone: {exc}") from None

    def _open(self) -> None:
        self.link.connect()
        self.facts = P.parse_facts(self.link.check(P.facts_command(self.options.workdir), timeout_s=60))
        self.device_id = self.facts.serial or self.address.serial or str(self.address)
        self.link.device_id = self.device_id
        self.core = self._choose_core()
        if self.install_tools:
            self._make_workdir()
            self._install_tools()
            if self.options.performance_mode:
                self._set_performance_mode(True)
            elif self.link.shell(f"[ -f {P.q(self.layout.run + '/performance_mode')} ]").exit_code == 0:
                self._set_performance_mode(False)  # left on by a session that lost the phone
        else:
            self._find_tools()

    def _choose_core(self) -> int:
        cores = [c.cpu for c in self.facts.cores]
        if self.options.core is not None:
            if cores and self.options.core not in cores:
                raise AgentError(f"[android].core = {self.options.core}, but {self.device_id} has CPUs {cores}")
            return self.options.core
        fastest = P.fastest_core(self.facts.cores)
        if fastest is None:
            if not cores:
                raise AgentError(f"{self.device_id}: no CPU in /sys/devices/system/cpu; set [android].core")
            return cores[-1]
        return fastest

    def _make_workdir(self) -> None:
        """Make the work directory, then kill tools a previous session left running (it lost the phone
        mid-job) and drop its scratch; one round trip, in which only a failed mkdir is an error."""
        lay = self.layout
        jobs = P.q(lay.jobs)
        self.link.check(f"mkdir -p {P.q(lay.artifacts)} {P.q(lay.bin)} {jobs} {P.q(lay.run)} && "
                        f"{{ {P.kill_all_command(lay.run)}; rm -rf {jobs} && mkdir -p {jobs}; true; }}")

    def _host_tools(self) -> list[tuple[ToolInfo, bool]]:
        """The host's tools, each with whether the phone has the same bytes already (one round trip)."""
        paths = {n: p for n, p in self.options.tool_paths().items() if p.is_file()}
        if not paths:
            return []
        infos = [ToolInfo(n, p, sha256_file(p), self.layout.tool(n)) for n, p in paths.items()]
        have = P.parse_hashes(self.link.shell(P.hashes_command([i.device_path for i in infos])).output)
        return [(info, h == info.sha256) for info, h in zip(infos, have + [None] * len(infos))]

    def _install_tools(self) -> None:
        """Push each tool the host has (once per content hash) and ask it for its flags."""
        self.options.check_tools()
        for info, on_phone in self._host_tools():
            name = info.name
            if not on_phone:
                self._push_checked(info.host_path, info.device_path, info.sha256, 0o755)
            try:
                answer = self.link.shell(f"{P.q(info.device_path)} --help 2>&1 </dev/null", timeout_s=60)
            except ShellTimeout:
                self.tool_problems[name] = "did not answer --help within 60 s"
                continue
            # --help exits non-zero for most tools; 126/127 (cannot execute: another ABI) or a signal is broken
            if answer.exit_code in (126, 127) or answer.exit_code >= 128:
                last = next((ln for ln in reversed(answer.output.splitlines()) if ln.strip()), "")
                self.tool_problems[name] = f"does not run on the phone (exit {answer.exit_code}: {last[:160]})"
                continue
            info.flags = P.help_flags(answer.output) or None
            self.tools[name] = info

    def _find_tools(self) -> None:
        """Without installing: the host's tools that are on the phone already with the same bytes (the
        others are listed in ``tools_to_push``)."""
        for info, on_phone in self._host_tools():
            if on_phone:
                self.tools[info.name] = info
            else:
                self.tools_to_push.append(info.name)

    def _set_performance_mode(self, on: bool) -> None:
        """Fixed performance mode on or off; a marker file on the phone remembers that splitbench turned it
        on, so a session that lost the phone before restoring it is undone by the next one."""
        marker = P.q(f"{self.layout.run}/performance_mode")
        r = self.link.shell(f"cmd power set-fixed-performance-mode-enabled {'true' if on else 'false'}")
        ok = r.exit_code == 0
        if ok:
            self.link.shell(f"touch {marker}" if on else f"rm -f {marker}")
        self._perf_mode_set = on and ok

    def close(self) -> None:
        """Kill a tool still running, remove this session's scratch, restore what was changed. Never raises."""
        if self.link is None:
            return
        try:
            if self.install_tools:
                cmds = []
                if self._running_pid_file:
                    cmds.append(P.kill_command(self._running_pid_file))
                cmds.append(f"rm -rf {P.q(self.layout.jobs)}/{P.q(self._session)}-*")
                self.link.shell("; ".join(cmds), timeout_s=15)
                if self._perf_mode_set:
                    self._set_performance_mode(False)
        except Exception:  # noqa: BLE001 - the phone may be gone; nothing more can be undone
            pass
        finally:
            self.link.close()

    # -- DeviceAgent -------------------------------------------------------------------------------
    @property
    def backends(self) -> tuple[str, ...]:
        return tuple(P.BACKEND_FOR_TOOL[t] for t in self.tools)

    def describe(self) -> DeviceInfo:
        f = self._facts()
        props = f.props
        model = props.get("ro.product.model") or "Android phone"
        cores = [{"cpu": c.cpu, "max_khz": c.max_khz, "min_khz": c.min_khz, "governor": c.governor} for c in f.cores]
        fingerprint = {
            "model": model, "manufacturer": props.get("ro.product.manufacturer"),
            "soc": " ".join(x for x in (props.get("ro.soc.manufacturer"), props.get("ro.soc.model")) if x)
                   or props.get("ro.board.platform") or props.get("ro.hardware"),
            "board": props.get("ro.board.platform"), "android": props.get("ro.build.version.release"),
            "api_level": P._int(props.get("ro.build.version.sdk")), "abi": props.get("ro.product.cpu.abi"),
            "build": props.get("ro.build.fingerprint"), "kernel": f.kernel, "cores": cores,
            "pinned_cpu": self.core, "rooted": f.rooted, "root_method": f.su,
            "tools": {t.name: t.sha256 for t in self.tools.values()},
            # what may change between runs without changing a number (left out of the record key): how the
            # phone is reached, where splitbench works on it, its state now
            "now": {"address": str(self.address), "workdir": self.options.workdir, "workdir_free_b": f.free_b},
        }
        if self.tool_problems:
            fingerprint["now"]["tools_that_do_not_run"] = "; ".join(f"{k}: {v}" for k, v in self.tool_problems.items())
        if self.tools_to_push:
            fingerprint["now"]["tools_not_on_the_phone"] = (", ".join(self.tools_to_push)
                                                           + " (a run or `splitbench doctor android` pushes them)")
        try:
            c = self.conditions()
            fingerprint["now"].update(thermal_status=c.thermal_status, battery_temp_c=c.battery_temp_c)
        except (RemoteError, ShellTimeout):
            pass
        return DeviceInfo(device_id=self.device_id, target="android", platform="android",
                          name=f"{model} ({self.device_id})",
                          backends={P.BACKEND_FOR_TOOL[t.name]: t.version for t in self.tools.values()},
                          fingerprint=fingerprint, threads=1)

    def _facts(self) -> P.DeviceFacts:
        if self.facts is None or self.link is None:
            raise AgentError("the Android agent is not open: use it as `with open_agent(target) as agent:`")
        return self.facts

    def conditions(self) -> Conditions:
        return P.parse_conditions(self.link.shell(P.conditions_command(self.core), timeout_s=60).output)

    def prepare(self, artifact: ArtifactRef) -> str:
        """Place the artifact's files under ``<workdir>/artifacts/<key>/`` once, checked by sha256; the
        free space is checked before anything is pushed."""
        self._facts()
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
                raise self._full(need, free)
            dirs = sorted({r.rsplit("/", 1)[0] for _, r in todo})
            self.link.check("mkdir -p " + " ".join(P.q(d) for d in dirs))
            for f, r in todo:
                self._push_checked(Path(artifact.root) / f.relpath, r, f.sha256, 0o644, need=need)
        path = f"{key_dir}/{artifact.relpath}"
        self._placed[artifact.key] = path
        return path

    def _full(self, need: int, free: int | None, what: str = "the artifact") -> "PhoneStorageFull":
        have = f"{free / 1e6:.0f} MB free" if free else "no space left"
        return PhoneStorageFull(self.device_id, f"out of storage: {have} in {self.options.workdir}, {what} needs "
                                f"{need / 1e6:.0f} MB (+{SPACE_MARGIN_B / 1e6:.0f} MB margin): free space on the phone, "
                                f"or remove splitbench's files with `splitbench clean --device {self.address.target}`")

    def _push_checked(self, local: Path, remote: str, sha256: str, mode: int, need: int | None = None) -> None:
        """Push to ``<remote>.part``, check its sha256 on the phone, then rename (a half push never counts)."""
        part = remote + ".part"
        try:
            self.link.push(local, part, mode)
        except DeviceFull:
            self.link.shell(f"rm -f {P.q(part)}")
            raise self._full(need or local.stat().st_size, 0, "the artifact" if need else local.name) from None
        got = P.parse_hashes(self.link.shell(P.hashes_command([part]), timeout_s=120).output)
        if got != [sha256]:
            self.link.shell(f"rm -f {P.q(part)}")
            raise RemoteError(f"{remote}: the pushed copy has sha256 {got[0] if got else 'none'}, expected {sha256}")
        self.link.check(f"mv -f {P.q(part)} {P.q(remote)}")

    # -- measuring ---------------------------------------------------------------------------------
    def measure(self, job: MeasureJob) -> MeasureResult:
        """One job on the phone. :class:`DeviceUnavailable` when the phone goes away; every failure of
        the job itself is the result's status."""
        self._facts()
        tool_name = P.TOOL_FOR_BACKEND.get(job.backend)
        tool = self.tools.get(tool_name) if tool_name else None
        if tool is None:
            why = (f"no Android tool runs {job.backend}" if tool_name is None else
                   f"{tool_name} is not installed: give its arm64 binary in [android.tools] or {TOOLS_ENV}; "
                   f"{WHERE_TO_GET[tool_name]}")
            return MeasureResult(status=FAILED, reason=why)
        deadline = time.monotonic() + job.timeout_s
        diagnostics: dict[str, Any] = {"tool": tool.version, "core": self.core, "calls": []}
        notes: list[str] = []
        cooled_s, cool_note, before = self._cool_down()
        diagnostics["cool_wait_s"] = round(cooled_s, 3)
        if cool_note:
            notes.append(cool_note)
        job_dir = f"{self.layout.jobs}/{self._session}-{next(self._jobs)}"
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
        cold_method = self._drop_caches()
        if cold_method == "not_obtained":
            notes.append("cold load not obtained: the phone is not rooted, so the page cache could not be dropped; "
                         "the 'cold' load may be warm")
        call = P.tool_call(job.backend, job.artifact_path, job, "cold", job_dir, flags=tool.flags)
        report, text, extra_text = self._run(tool, call, job_dir, deadline, diagnostics)
        failure = self._failure(tool, call, report, text, job, deadline)
        if failure is not None:
            return MeasureResult(**failure, **base, notes=tuple(notes))
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
            wcall = P.tool_call(job.backend, job.artifact_path, job, "warm", job_dir, index=i + 1, flags=tool.flags)
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
            notes=tuple(dict.fromkeys(notes)), **base)

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
        pid_file = f"{self.layout.run}/{self._session}-{n}.pid"
        remaining = max(1.0, deadline - time.monotonic())
        script = P.runner_script(tool_path=tool.device_path, args=call.args, cpu=self.core, job_dir=job_dir,
                                 out_file=out_file, pid_file=pid_file, poll_s=self.options.poll_interval_s,
                                 timeout_s=remaining)
        others = [c.cpu for c in self.facts.cores if c.cpu != self.core]
        command = P.runner_command(script, others)
        diagnostics["calls"].append({"phase": call.phase, "argv": [tool.device_path, *call.args]})
        report = P.RunnerReport()
        self._running_pid_file = pid_file
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
            self._running_pid_file = None
        text = self._read_file(out_file)
        if tool.name == P.ET_TOOL and report.pid and "logcat" in self.facts.commands:
            # The Android build of executor_runner logs only to logcat, tag ExecuTorch.
            text += self.link.shell(f"logcat -d --pid={report.pid} -s ExecuTorch:I", timeout_s=60).output
        extra = self._read_file(call.result_file) if call.result_file else None
        return report, text, extra

    def _read_file(self, path: str) -> str:
        try:
            return self.link.pull_bytes(path).decode(errors="replace")
        except RemoteError:
            return ""

    def _kill_pid_file(self, pid_file: str) -> None:
        self.link.shell(P.kill_command(pid_file))
        self._running_pid_file = None

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


# --------------------------------------------------------------------------------------------------
# Module functions


def agent_for(target: str, **options: Any) -> AndroidAgent:
    """The agent for ``android``, ``android:<serial>`` or ``android:<host>:<port>`` (not yet opened);
    ``options`` is the spec's ``[android]`` table."""
    address = parse_target(target)
    opts = AndroidOptions.from_options(options)
    opts.check_tools()
    return AndroidAgent(address, opts)


def reachable_addresses() -> tuple[list[Address], list[str]]:
    """Phones on USB and those listed in ``SPLITBENCH_ANDROID_TCP``; notes for what could not be asked."""
    addresses, notes = [], []
    try:
        for serial in usb_serials():
            addresses.append(Address("usb", serial=serial))
    except AgentError as exc:
        notes.append(str(exc))
    except Exception as exc:  # noqa: BLE001 - libusb errors vary by platform
        notes.append(f"USB: {type(exc).__name__}: {exc}")
    addresses.extend(tcp_addresses_from_env())
    return addresses, notes


def only_phone() -> Address:
    """The one phone attached, for the bare ``android`` target."""
    adb_shell_modules()
    addresses, notes = reachable_addresses()
    if not addresses:
        why = f" ({'; '.join(notes)})" if notes else ""
        raise AgentError(f"no Android phone attached{why}: plug one in with USB debugging on, or connect over TCP "
                         "with --target android:<host>:<port> after `adb tcpip 5555`")
    if len(addresses) > 1:
        raise AgentError(f"{len(addresses)} phones attached ({', '.join(str(a) for a in addresses)}): choose one with "
                         "--target " + " or --target ".join(a.target for a in addresses))
    return addresses[0]


def discover(**options: Any) -> list[DeviceInfo]:
    """Every phone this host reaches (USB, and ``SPLITBENCH_ANDROID_TCP``), described without
    installing anything on it. :class:`AgentError` when adb-shell is missing or no phone could be asked
    while some could not."""
    adb_shell_modules()
    opts = AndroidOptions.from_options(options)
    addresses, notes = reachable_addresses()
    found = []
    for address in addresses:
        agent = AndroidAgent(address, opts, install_tools=False)
        try:
            agent.open()
            found.append(agent.describe())
        except (AgentError, DeviceUnavailable, RemoteError, ShellTimeout) as exc:
            notes.append(f"{address}: {exc}")
        finally:
            agent.close()
    if notes and not found:
        raise AgentError("; ".join(notes))
    return found


def clean(target: str, **options: Any) -> list[str]:
    """Remove what splitbench put on the phone (pushed artifacts, tools, scratch; a tool still running is
    killed); what was removed. Only splitbench's own subdirectories are deleted, then the work directory
    if it is left empty: a work directory set to a shared place never loses anything else."""
    agent = agent_for(target, **options)
    agent.install_tools = False
    with agent:
        lay = agent.layout
        ours = [lay.artifacts, lay.bin, lay.jobs, lay.run]
        present = agent.link.shell("; ".join(f"[ -e {P.q(d)} ] && echo y || echo n" for d in ours)).output.split()
        found = [d for d, flag in zip(ours, present) if flag == "y"]
        if not found:
            return []
        agent.link.check(f"{P.kill_all_command(lay.run)}; rm -rf {' '.join(P.q(d) for d in found)}; "
                         f"rmdir {P.q(lay.workdir)} 2>/dev/null; true", timeout_s=300)
        return [f"{agent.device_id}:{d}" for d in found]


def doctor(target: str = "android", probe_artifacts: dict[str, str | Path] | None = None,
           made_by: dict[str, str] | None = None, **options: Any) -> list[Check]:
    """What ``splitbench doctor android`` checks: the library, the key, the phone, the pin, thermals,
    root, and each tool (pushed, runs, reads this splitbench's .tflite/.onnx/.pte), with how to fix."""
    checks: list[Check] = []
    try:
        import adb_shell

        checks.append(Check("adb-shell", True, f"adb_shell {getattr(adb_shell, '__version__', '?')}"))
    except ImportError as exc:
        return [Check("adb-shell", False, str(exc), INSTALL_HINT)]
    try:
        address = parse_target(target)
        opts = AndroidOptions.from_options(options)
    except AgentError as exc:
        return checks + [Check("target and options", False, str(exc), "fix the target or the [android] table")]
    if address is None or address.kind == "usb":
        try:
            usb_module()
            checks.append(Check("libusb1", True, "USB available"))
        except AgentError as exc:
            checks.append(Check("libusb1", False, str(exc), INSTALL_HINT))
    path, is_adb = key_path()
    checks.append(Check("adb key", True if path.is_file() else None,
                        f"{path}{' (adb’s own)' if is_adb else ''}" + ("" if path.is_file() else " (will be generated)"),
                        "" if path.is_file() else "accept the USB debugging prompt on the phone at the first connection"))
    agent = AndroidAgent(address, opts)
    try:
        agent.open()
    except (AgentError, DeviceUnavailable) as exc:
        agent.close()
        return checks + [Check("phone", False, str(exc), "plug the phone in with USB debugging on (Developer options), "
                                                          "or `adb tcpip 5555` and use android:<ip>:5555")]
    try:
        info = agent.describe()
        fp = info.fingerprint
        checks.append(Check("phone", True, f"{info.name}: Android {fp['android']} (API {fp['api_level']}), {fp['abi']}, "
                                           f"{fp['soc']}"))
        free = agent.facts.free_b
        checks.append(Check("work directory", free is None or free > 500e6,
                            f"{opts.workdir}: {free / 1e9:.1f} GB free" if free is not None else opts.workdir,
                            f"free space on the phone, or `splitbench clean --device {agent.address.target}`"))
        pin = agent.link.shell(f"taskset {P.mask([agent.core])} sh -c 'grep Cpus_allowed_list /proc/self/status'")
        seen = pin.output.split(":")[-1].strip() if pin.exit_code == 0 else ""
        checks.append(Check("taskset pin", P.parse_cpu_list(seen) == (agent.core,),
                            f"core {agent.core} ({'fastest by cpuinfo_max_freq' if opts.core is None else 'from [android].core'}); "
                            f"a pinned process sees Cpus_allowed_list {seen or pin.output.strip()[-80:]}",
                            "choose another core with [android].core (a cpuset may exclude this one)"))
        c = agent.conditions()
        checks.append(Check("thermal", c.thermal_status is not None and c.battery_temp_c is not None,
                            f"thermal status {c.thermal_status}, battery {c.battery_temp_c} °C",
                            "Android 10+ reports thermal status through `dumpsys thermalservice`"))
        rooted = agent.facts.rooted
        # Not rooted is a limitation, not a failure: "?" with what it means, never a failing doctor.
        checks.append(Check("root", True if rooted else None, "rooted: cold loads drop the page cache first" if rooted
                            else "not rooted: cold loads are marked 'not obtained' (the page cache cannot be dropped)",
                            "" if rooted else "optional: a rooted phone (or `adb root` on a userdebug build) gives "
                                              "true cold loads"))
        # the tiny models the host exported for the tools to read (``harness.measure.devices`` makes them with this
        # splitbench's converters); none given: the tools are checked to run, not what files they read
        probes = {k: Path(v) for k, v in (probe_artifacts or {}).items()}
        for name in P.TOOLS:
            checks.append(_check_tool(agent, name, probes, made_by or {}))
    except (DeviceUnavailable, RemoteError, ShellTimeout) as exc:
        checks.append(Check("phone", False, f"lost during the checks: {exc}", "check the cable or the network"))
    finally:
        agent.close()
    return checks


def _check_tool(agent: AndroidAgent, name: str, probes: dict[str, Path], made_by: dict[str, str]) -> Check:
    backend = P.BACKEND_FOR_TOOL[name]
    tool = agent.tools.get(name)
    if name in agent.tool_problems:
        return Check(name, False, f"{agent.tool_problems[name]}", f"give an arm64-v8a Android build; {WHERE_TO_GET[name]}")
    if tool is None:
        return Check(name, False, f"not configured (no [android.tools].{name}, nothing in ${TOOLS_ENV})",
                     WHERE_TO_GET[name])
    detail = f"{tool.version} from {tool.host_path}"
    if not tool.flags:
        return Check(name, False, f"{detail}: does not run on the phone (--help printed nothing it understands)",
                     f"give an arm64-v8a Android build; {WHERE_TO_GET[name]}")
    probe = probes.get(backend)
    if probe is None:
        return Check(name, None, f"{detail}: runs; no {backend} converter here to test which files it reads")
    ref = ArtifactRef.from_path(probe, key="", backend=backend)  # hashes every file once; keyed by that content
    ref = dataclasses.replace(ref, key=f"doctor-{backend}-{ref.sha256[:16]}")
    job = MeasureJob(artifact_path=agent.prepare(ref), backend=backend, input_shape=(1, 3, 16, 16), runs=2, warmup=1,
                     warm_loads=0, timeout_s=120)
    o = agent.options
    agent.options = dataclasses.replace(o, cool_timeout_s=0.0)
    try:
        result = agent.measure(job)
    finally:
        agent.options = o
    made_by = made_by.get(backend, backend)
    if result.ok:
        return Check(name, True, f"{detail}: runs, reads the {probe.suffix} files this splitbench writes ({made_by})")
    return Check(name, False, f"{detail}: cannot run a {probe.suffix} from {made_by}: {result.status}: {result.reason}",
                 f"use a build of the runtime that reads this version, or pin the converter; {WHERE_TO_GET[name]}")
