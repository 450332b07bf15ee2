"""The Android agent's session on one phone: the adb link opened, the phone's facts read, the core
chosen, the work directory made (and what a lost session left running killed), the tools pushed by
hash and asked for their flags, the performance mode set and restored; and the spec's ``[android]``
table that drives it.

Measuring a job is ``measure.py``; ``splitbench devices`` / ``doctor`` / ``clean`` are ``upkeep.py``;
``agent.py`` is the face the orchestrator loads. The user-facing description is docs/android.md.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from device_agents.android import accelerators as acc
from device_agents.android import protocol as P
from device_agents.android.links import VIAS, choose, only_phone, open_link
from device_agents.android.transport import Address, DeviceFull, Link, RemoteError, ShellTimeout, tell_user
from device_agents.base import AgentError, Conditions, DeviceAgent, DeviceInfo, DeviceUnavailable, sha256_file

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
    via: str = "auto"  # "auto": the adb server when it lists the phone, else direct; "server"; "direct"

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
            elif key == "via":
                if value not in VIAS:
                    raise AgentError(f"[android].via must be one of {', '.join(repr(v) for v in VIAS)} (auto: the "
                                     f"adb server when it lists the phone, else direct), got {value!r}")
                values[key] = value
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
    accelerators: acc.ToolAccelerators | None = None  # what it can be asked for, from its --help

    @property
    def version(self) -> str:
        return f"{self.name} sha256:{self.sha256[:12]}"

    @property
    def can_ask(self) -> acc.ToolAccelerators:
        """What it can be asked for: from its --help, or only the CPU when it was not asked."""
        return self.accelerators or acc.for_tool(self.name, None)


# --------------------------------------------------------------------------------------------------
# The session


class AndroidSession(DeviceAgent):
    """A session on one phone: one adb link, the phone's facts, the chosen core, the tools on the phone.
    :class:`~device_agents.android.measure.AndroidAgent` adds the jobs."""

    target = "android"
    platform = "android"

    def __init__(self, address: Address | None = None, options: AndroidOptions | None = None,
                 notify: Callable[[str], None] = tell_user, install_tools: bool = True):
        self.address = address
        self.options = options or AndroidOptions()
        self.notify = notify
        self.install_tools = install_tools
        self.layout = P.Layout(self.options.workdir)
        self.link: Link | None = None
        self.facts: P.DeviceFacts | None = None
        self.device_id = address.serial if address and address.serial else (str(address) if address else "android")
        self.core: int | None = None
        self.tools: dict[str, ToolInfo] = {}
        self.tools_to_push: list[str] = []  # on this host, not yet on the phone (discovery installs nothing)
        self.tool_problems: dict[str, str] = {}  # pushed, but does not run on the phone: why
        self.session_id = f"{os.getpid()}-{int(time.time() * 1000) % 10**9}"  # names this session's scratch
        self.running_pid_file: str | None = None  # the pid file of a tool running now (killed by close)
        self._perf_mode_set = False
        # (tool, accelerator) -> the setting this tool's build runs, once a job found it (ONNX Runtime: the
        # first candidate whose execution provider the build has), or why none does
        self.accelerator_found: dict[tuple[str, str], acc.Setting] = {}
        self.accelerator_refused: dict[tuple[str, str], str] = {}

    # -- session -----------------------------------------------------------------------------------
    def open(self) -> None:
        """Connect, read the phone's facts, choose the core; with ``install_tools``: make the work
        directory, kill what a lost session left running, push the tools. A phone that refuses (no
        space, a read-only directory) is one :class:`AgentError` line; a phone gone, DeviceUnavailable."""
        reach = only_phone(self.options.via) if self.address is None else choose(self.address, self.options.via)
        self.address = reach.address
        self.link = open_link(reach, link_timeout_s=self.options.link_timeout_s, notify=self.notify)
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
        missing = P.missing_commands(self.facts)
        if missing and self.install_tools:
            raise AgentError(f"{self.device_id}: the phone's shell has no {', '.join(missing)} (needed to "
                             f"{'; to '.join(missing.values())}): splitbench needs Android's own commands (toybox, "
                             "Android 7 or later) on the shell's PATH")
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
                self.push_checked(info.host_path, info.device_path, info.sha256, 0o755)
            if self._ask_help(info):
                self.tools[name] = info

    def _ask_help(self, info: ToolInfo) -> bool:
        """Ask a tool on the phone for its flags (and so the accelerators it can be asked for); False, with
        the reason in ``tool_problems``, when it does not run there."""
        try:
            answer = self.link.shell(f"{P.q(info.device_path)} --help 2>&1 </dev/null", timeout_s=60)
        except ShellTimeout:
            self.tool_problems[info.name] = "did not answer --help within 60 s"
            return False
        broken = P.exec_failure(answer.output, answer.exit_code)  # --help exits non-zero for most tools
        if broken:
            self.tool_problems[info.name] = f"does not run on the phone ({broken})"
            return False
        info.flags = P.help_flags(answer.output) or None
        info.accelerators = acc.for_tool(info.name, answer.output)
        return True

    def _find_tools(self) -> None:
        """Without installing: the host's tools that are on the phone already with the same bytes, asked for
        their flags (the others are listed in ``tools_to_push``)."""
        for info, on_phone in self._host_tools():
            if not on_phone:
                self.tools_to_push.append(info.name)
            elif self._ask_help(info):
                self.tools[info.name] = info

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
                if self.running_pid_file:
                    cmds.append(P.kill_command(self.running_pid_file))
                cmds.append(f"rm -rf {P.q(self.layout.jobs)}/{P.q(self.session_id)}-*")
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
        f = self.require_open()
        props = f.props
        model = props.get("ro.product.model") or "Android phone"
        cores = [{"cpu": c.cpu, "max_khz": c.max_khz, "min_khz": c.min_khz, "governor": c.governor} for c in f.cores]
        fingerprint = {
            "model": model, "manufacturer": props.get("ro.product.manufacturer"),
            "soc": " ".join(x for x in (props.get("ro.soc.manufacturer"), props.get("ro.soc.model")) if x)
                   or props.get("ro.board.platform") or props.get("ro.hardware"),
            "board": props.get("ro.board.platform"), "android": props.get("ro.build.version.release"),
            "api_level": P.int_or_none(props.get("ro.build.version.sdk")), "abi": props.get("ro.product.cpu.abi"),
            "build": props.get("ro.build.fingerprint"), "kernel": f.kernel, "cores": cores,
            "pinned_cpu": self.core, "rooted": f.rooted, "root_method": f.su,
            "tools": {t.name: t.sha256 for t in self.tools.values()},
            # what may change between runs without changing a number (left out of the record key): how the
            # phone is reached, where splitbench works on it, its state now
            "now": {"address": str(self.address), "via": self.link.via, "workdir": self.options.workdir,
                    "workdir_free_b": f.free_b},
        }
        missing = P.missing_commands(f)
        if missing:
            fingerprint["now"]["missing_commands"] = ", ".join(missing)
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
        accelerators, notes = self.accelerators()
        return DeviceInfo(device_id=self.device_id, target="android", platform="android",
                          name=f"{model} ({self.device_id})",
                          backends={P.BACKEND_FOR_TOOL[t.name]: t.version for t in self.tools.values()},
                          fingerprint=fingerprint, threads=1, accelerators=accelerators, accelerator_notes=notes)

    def accelerators(self) -> tuple[dict[str, tuple[str, ...]], dict[str, str]]:
        """Per backend, the accelerators its tool can be asked for on this phone, and per ``backend/accelerator``
        it cannot, why (from the tool's --help; ONNX Runtime: also what a job found its build lacks)."""
        runs: dict[str, tuple[str, ...]] = {}
        notes: dict[str, str] = {}
        for t in self.tools.values():
            backend = P.BACKEND_FOR_TOOL[t.name]
            found = t.can_ask
            runs[backend] = tuple(a for a in found.accelerators if (t.name, a) not in self.accelerator_refused)
            notes.update({f"{backend}/{a}": why for a, why in found.missing.items()})
            notes.update({f"{backend}/{a}": why for (name, a), why in self.accelerator_refused.items() if name == t.name})
        return runs, notes

    def require_open(self) -> P.DeviceFacts:
        """The phone's facts; :class:`AgentError` when the session is not open."""
        if self.facts is None or self.link is None:
            raise AgentError("the Android agent is not open: use it as `with open_agent(target) as agent:`")
        return self.facts

    def conditions(self) -> Conditions:
        return P.parse_conditions(self.link.shell(P.conditions_command(self.core), timeout_s=60).output)

    # -- files -------------------------------------------------------------------------------------
    def storage_full(self, need: int, free: int | None, what: str = "the artifact") -> PhoneStorageFull:
        """The one line that says the phone is full: how much is needed and how to free it."""
        have = f"{free / 1e6:.0f} MB free" if free else "no space left"
        return PhoneStorageFull(self.device_id, f"out of storage: {have} in {self.options.workdir}, {what} needs "
                                f"{need / 1e6:.0f} MB (+{SPACE_MARGIN_B / 1e6:.0f} MB margin): free space on the phone, "
                                f"or remove splitbench's files with `splitbench clean --device {self.address.target}`")

    def push_checked(self, local: Path, remote: str, sha256: str, mode: int, need: int | None = None) -> None:
        """Push to ``<remote>.part``, check its sha256 on the phone, then rename (a half push never counts)."""
        part = remote + ".part"
        try:
            self.link.push(local, part, mode)
        except DeviceFull:
            self.link.shell(f"rm -f {P.q(part)}")
            raise self.storage_full(need or local.stat().st_size, 0, "the artifact" if need else local.name) from None
        got = P.parse_hashes(self.link.shell(P.hashes_command([part]), timeout_s=120).output)
        if got != [sha256]:
            self.link.shell(f"rm -f {P.q(part)}")
            raise RemoteError(f"{remote}: the pushed copy has sha256 {got[0] if got else 'none'}, expected {sha256}")
        self.link.check(f"mv -f {P.q(part)} {P.q(remote)}")
