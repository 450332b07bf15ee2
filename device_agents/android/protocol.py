"""What is said to the phone and what it says back: every command line the agent sends (built with
``shlex.quote`` around every path and name), the tools' flags for a job, the runner that starts a
tool pinned to one core and polls its ``/proc/<pid>/status``, and the parsing of what comes back.

Nothing here talks to a phone (that is ``transport.py``) or decides what to measure (``agent.py``);
the tools' logs are read by ``tool_logs/`` (one module per tool). Sources of the formats: ``../shared/research/android.md``
(sections 1-5, 8).
"""

from __future__ import annotations

import math
import re
import shlex
from dataclasses import dataclass, field
from typing import Any, Iterable

from device_agents.base import Conditions, MeasureJob, MemoryReading

q = shlex.quote

# -- the tools ------------------------------------------------------------------------------------
LITERT_TOOL, ORT_TOOL, ET_TOOL = "benchmark_model", "onnxruntime_perf_test", "executor_runner"
TOOL_FOR_BACKEND = {"litert": LITERT_TOOL, "onnx": ORT_TOOL, "executorch": ET_TOOL}
LOG_FAMILY = {LITERT_TOOL: "litert", ORT_TOOL: "onnxruntime", ET_TOOL: "executorch"}  # tool_logs' names
BACKEND_FOR_TOOL = {v: k for k, v in TOOL_FOR_BACKEND.items()}
TOOLS = tuple(TOOL_FOR_BACKEND.values())

THERMAL_STATUS = {0: "NONE", 1: "LIGHT", 2: "MODERATE", 3: "SEVERE", 4: "CRITICAL", 5: "EMERGENCY", 6: "SHUTDOWN"}


# --------------------------------------------------------------------------------------------------
# The work directory on the phone


@dataclass(frozen=True)
class Layout:
    """Where splitbench keeps things under its work directory on the phone."""

    workdir: str

    @property
    def artifacts(self) -> str:
        return f"{self.workdir}/artifacts"

    def artifact_dir(self, key: str) -> str:
        return f"{self.artifacts}/{key}"

    @property
    def bin(self) -> str:
        return f"{self.workdir}/bin"

    def tool(self, name: str) -> str:
        return f"{self.bin}/{name}"

    @property
    def jobs(self) -> str:
        return f"{self.workdir}/jobs"

    @property
    def run(self) -> str:
        return f"{self.workdir}/run"  # pid files of tools running now


def sections(text: str) -> dict[str, str]:
    """Split the output of a command that printed ``@@name`` before each part."""
    out: dict[str, list[str]] = {}
    current = ""
    for line in text.splitlines():
        if line.startswith("@@"):
            current = line[2:].strip()
            out.setdefault(current, [])
        else:
            out.setdefault(current, []).append(line)
    return {k: "\n".join(v) for k, v in out.items()}


# --------------------------------------------------------------------------------------------------
# Device facts

# The commands the agent runs on every phone, with what for (toybox's and mksh's on Android 7+); a phone
# that lacks one is refused at the start with its name, not failed later by a "not found" mid-job.
NEEDED_COMMANDS = {
    "getprop": "read the phone's properties", "cat": "read the CPUs and the tools' pids", "uname": "read the kernel",
    "id": "tell whether adbd runs as root", "df": "check the free space", "dirname": "find the work directory's disk",
    "mkdir": "make the work directory", "rm": "remove scratch files", "mv": "place a checked push",
    "sha256sum": "check what was pushed", "taskset": "pin the tool to one core", "sleep": "poll the tool",
    "kill": "stop a tool past its timeout",
}
OPTIONAL_COMMANDS = ("logcat", "dumpsys", "cmd")  # executor_runner's log, thermals, performance mode


def facts_command(workdir: str) -> str:
    """One round trip for the fingerprint: properties, CPUs, kernel, uid, root, tools, free space."""
    return "; ".join([
        "echo @@props", "getprop",
        "echo @@cpus",
        "for d in /sys/devices/system/cpu/cpu[0-9]*; do n=${d##*/cpu}; "
        "printf 'cpu %s max=%s min=%s gov=%s\\n' \"$n\" \"$(cat \"$d/cpufreq/cpuinfo_max_freq\" 2>/dev/null)\" "
        "\"$(cat \"$d/cpufreq/cpuinfo_min_freq\" 2>/dev/null)\" \"$(cat \"$d/cpufreq/scaling_governor\" 2>/dev/null)\"; "
        "done",
        "echo @@kernel", "uname -r",
        "echo @@uid", "id -u",
        "echo @@su", "{ su -c 'id -u' </dev/null 2>/dev/null || su 0 id -u </dev/null 2>/dev/null; }",
        "echo @@commands", f"for c in {' '.join(sorted(NEEDED_COMMANDS) + list(OPTIONAL_COMMANDS))}; do "
                           "command -v \"$c\" >/dev/null 2>&1 && echo \"$c\"; done",
        # df needs an existing path: the work directory, or its nearest existing parent
        "echo @@df", f"p={q(workdir)}; while [ ! -e \"$p\" ] && [ \"$p\" != / ]; do p=$(dirname \"$p\"); done; "
                     "df -k \"$p\" 2>&1",
    ])


@dataclass(frozen=True)
class Core:
    cpu: int
    max_khz: int | None
    min_khz: int | None
    governor: str | None


@dataclass(frozen=True)
class DeviceFacts:
    props: dict[str, str]
    cores: tuple[Core, ...]
    kernel: str
    uid: int | None
    su: str | None  # how to become root: "adbd" (adbd runs as root), "su -c", "su 0", or None
    commands: frozenset[str]
    free_b: int | None

    @property
    def serial(self) -> str | None:
        return self.props.get("ro.serialno") or None

    @property
    def rooted(self) -> bool:
        return self.su is not None


_PROP = re.compile(r"^\[(?P<k>[^\]]*)\]: \[(?P<v>.*)\]$")


def parse_facts(text: str) -> DeviceFacts:
    s = sections(text)
    props = {m["k"]: m["v"] for m in map(_PROP.match, s.get("props", "").splitlines()) if m}
    cores = []
    for line in s.get("cpus", "").splitlines():
        parts = line.split()
        if len(parts) < 2 or parts[0] != "cpu" or not parts[1].isdigit():
            continue
        kv = dict(p.split("=", 1) for p in parts[2:] if "=" in p)
        cores.append(Core(int(parts[1]), int_or_none(kv.get("max")), int_or_none(kv.get("min")), kv.get("gov") or None))
    cores.sort(key=lambda c: c.cpu)
    uid = int_or_none(s.get("uid", "").strip())
    su_out = s.get("su", "").strip().splitlines()
    su = "adbd" if uid == 0 else ("su" if su_out and su_out[-1].strip() == "0" else None)
    return DeviceFacts(props=props, cores=tuple(cores), kernel=s.get("kernel", "").strip(), uid=uid, su=su,
                       commands=frozenset(s.get("commands", "").split()), free_b=parse_df_available(s.get("df", "")))


def int_or_none(v: Any) -> int | None:
    try:
        return int(str(v).strip())
    except (TypeError, ValueError):
        return None


def missing_commands(facts: DeviceFacts) -> dict[str, str]:
    """The needed commands the phone's shell does not have, with what each is for."""
    return {c: why for c, why in NEEDED_COMMANDS.items() if c not in facts.commands}


def parse_df_available(text: str) -> int | None:
    """Bytes available from ``df -k PATH`` (toybox and coreutils: the field before ``Use%``)."""
    for line in reversed(text.strip().splitlines()):
        fields = line.split()
        for i, f in enumerate(fields):
            if f.endswith("%") and i >= 1 and fields[i - 1].isdigit():
                return int(fields[i - 1]) * 1024
    return None


def fastest_core(cores: Iterable[Core]) -> int | None:
    """The core with the highest ``cpuinfo_max_freq`` (the last of equals: the prime core is usually last)."""
    known = [c for c in cores if c.max_khz]
    if not known:
        return None
    best = max(c.max_khz for c in known)
    return max(c.cpu for c in known if c.max_khz == best)


def mask(cpus: Iterable[int]) -> str:
    """toybox/util-linux ``taskset`` hex mask of a set of CPUs (``1 << cpu`` each)."""
    return format(sum(1 << c for c in set(cpus)), "x")


def parse_cpu_list(text: str) -> tuple[int, ...]:
    """``Cpus_allowed_list`` (``7``, ``0-3,6``) as CPU numbers."""
    out: set[int] = set()
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        lo, _, hi = part.partition("-")
        try:
            out.update(range(int(lo), int(hi or lo) + 1))
        except ValueError:
            return ()
    return tuple(sorted(out))


# --------------------------------------------------------------------------------------------------
# Conditions


def conditions_command(cpu: int | None) -> str:
    parts = ["echo @@thermal", "dumpsys thermalservice 2>&1", "echo @@battery", "dumpsys battery 2>&1"]
    if cpu is not None:
        base = f"/sys/devices/system/cpu/cpu{cpu}/cpufreq"
        parts += ["echo @@freq", f"cat {q(base + '/scaling_cur_freq')} 2>/dev/null",
                  "echo @@governor", f"cat {q(base + '/scaling_governor')} 2>/dev/null"]
    return "; ".join(parts)


_TEMPERATURE = re.compile(r"Temperature\{mValue=(?P<v>-?[\d.]+), mType=(?P<t>-?\d+), mName=(?P<n>[^,]*), "
                          r"mStatus=(?P<s>-?\d+)\}")


def parse_conditions(text: str) -> Conditions:
    """Thermal status (``Thermal Status: N`` of ``dumpsys thermalservice``, Android 10+), battery
    temperature (``temperature: 326`` = 32.6 °C of ``dumpsys battery``), the core's frequency and governor."""
    s = sections(text)
    thermal = s.get("thermal", "")
    m = re.search(r"^\s*Thermal Status:\s*(\d+)", thermal, re.M)
    status = THERMAL_STATUS.get(int(m.group(1)), m.group(1)) if m else None
    temps: dict[str, float] = {}
    hal = thermal.split("Current temperatures from HAL:", 1)
    for t in _TEMPERATURE.finditer(hal[1] if len(hal) > 1 else thermal):
        temps[t["n"]] = float(t["v"])
    b = re.search(r"^\s*temperature:\s*(-?\d+)", s.get("battery", ""), re.M)
    detail: dict[str, Any] = {}
    if temps:
        detail["hal_temperatures_c"] = temps
    level = re.search(r"^\s*level:\s*(\d+)", s.get("battery", ""), re.M)
    if level:
        detail["battery_level"] = int(level.group(1))
    return Conditions(thermal_status=status, battery_temp_c=int(b.group(1)) / 10 if b else None,
                      cpu_freq_khz=int_or_none(s.get("freq")), governor=(s.get("governor") or "").strip() or None,
                      detail=detail)


def thermal_level(status: str | None) -> int | None:
    for k, v in THERMAL_STATUS.items():
        if v == status:
            return k
    return None


# --------------------------------------------------------------------------------------------------
# Files on the phone


def hashes_command(paths: Iterable[str]) -> str:
    """sha256 of each file, one line each, in order; ``missing`` where a file is not there. Reading from
    stdin keeps the file name (which may hold anything) out of the output."""
    return "; ".join(f"{{ sha256sum < {q(p)} || echo missing; }} 2>/dev/null" for p in paths)


def parse_hashes(text: str) -> list[str | None]:
    out: list[str | None] = []
    for line in text.splitlines():
        word = line.split()[0] if line.split() else ""
        if re.fullmatch(r"[0-9a-f]{64}", word):
            out.append(word)
        elif word == "missing":
            out.append(None)
    return out


def kill_command(pid_file: str) -> str:
    """Kill the tool a runner's pid file names, and remove the file."""
    f = q(pid_file)
    return f"[ -f {f} ] && kill -9 $(cat {f}) 2>/dev/null; rm -f {f}"


def kill_all_command(run_dir: str) -> str:
    """Kill the tool of every pid file in ``run_dir`` (one a lost session left running), removing the files."""
    return (f"for f in {q(run_dir)}/*.pid; do [ -f \"$f\" ] || continue; p=$(cat \"$f\"); "
            f"[ -n \"$p\" ] && kill -9 \"$p\" 2>/dev/null; rm -f \"$f\"; done")


def drop_caches_command(su: str | None) -> str | None:
    """Drop the page cache (clean pages only, hence ``sync`` first); needs root."""
    inner = "sync; echo 3 > /proc/sys/vm/drop_caches"
    if su == "adbd":
        return inner
    if su == "su":
        return f"su -c {q(inner)} </dev/null || su 0 sh -c {q(inner)} </dev/null"
    return None


# --------------------------------------------------------------------------------------------------
# The tools' command lines


@dataclass(frozen=True)
class ToolCall:
    """One process of a tool: its arguments, the files it writes beside its output, and what it measures."""

    tool: str
    args: tuple[str, ...]
    phase: str  # "cold" (load, first inference, warm-up, timed runs), "warm" (a load only) or "placement"
    result_file: str | None = None  # onnxruntime_perf_test's per-run file


def tool_call(backend: str, model: str, job: MeasureJob, phase: str, job_dir: str, index: int = 0,
              flags: frozenset[str] | None = None, accelerator: tuple[str, ...] = ()) -> ToolCall:
    """The arguments that make a tool follow the job's protocol on one thread.

    ``flags``: the flags the tool's ``--help`` listed (None: unknown, assume a current build).
    ``accelerator``: the arguments that ask for the job's accelerator (``accelerators.Setting.args``): added
    to LiteRT's and ExecuTorch's, in place of ONNX Runtime's ``-e cpu``; none for the cpu (today's command line).
    Phase ``placement`` (ONNX Runtime only) creates the session and exits, verbose, for its node placements."""
    has = (lambda f: True) if flags is None else (lambda f: f in flags)  # noqa: E731
    cold = phase == "cold"
    provider = tuple(accelerator) or ("-e", "cpu")
    if phase == "placement":
        if backend != "onnx":
            raise ValueError(f"only onnxruntime_perf_test has a placement phase, not {backend!r}")
        return ToolCall(ORT_TOOL, (*provider, "-x", "1", "-y", "1", "-v", "-n", "-I", model), phase)
    if backend == "litert":
        # benchmark_model's loop runs while `run < num_runs || now < min_secs`: min_secs=0 makes num_runs
        # exact; the first warm-up run is the first inference, so one more than the job's warm-up runs.
        args = [f"--graph={model}", "--num_threads=1", f"--max_secs={max(job.timeout_s, 1):g}", "--min_secs=0",
                "--warmup_min_secs=0"]
        if cold:
            args += [f"--warmup_runs={job.warmup + 1}", f"--num_runs={job.runs}",
                     "--report_peak_memory_footprint=true"]
        else:
            args += ["--warmup_runs=0", "--num_runs=1"]
        return ToolCall(LITERT_TOOL, (*args, *accelerator), phase)
    if backend == "onnx":
        # perf_test runs one untimed warm-up of its own (the first inference), then -r timed runs: the
        # first job.warmup of those are the warm-up samples.
        result = f"{job_dir}/{phase}{index}-runs.csv" if cold else None
        args = ["-m", "times", "-r", str(job.warmup + job.runs if cold else 1), "-x", "1", "-y", "1", *provider,
                "-I", model]
        if result:
            args.append(result)
        return ToolCall(ORT_TOOL, tuple(args), phase, result_file=result)
    if backend == "executorch":
        # executor_runner has no warm-up: execution 1 is the first inference, the next job.warmup are
        # the warm-up, the rest the timed runs. A warm load runs two: its log is read like any other
        # (a lone execution is only a first inference, which the log reader refuses as a run).
        n = 1 + job.warmup + job.runs if cold else 2
        args = [f"--model_path={model}", f"--num_executions={n}"]
        if has("cpu_threads"):
            args.append("--cpu_threads=1")
        if has("print_output"):
            args.append("--print_output=none")
        return ToolCall(ET_TOOL, (*args, *accelerator), phase)
    raise ValueError(f"no Android tool for backend {backend!r}")


# What a shell says when it cannot start a program at all: mksh ("<path>: not executable: 64-bit ELF
# file", exit 1, where dash exits 126), dash and bash ("Exec format error", "cannot execute"), a missing
# file or ELF interpreter ("inaccessible or not found", "not found"), and bionic's linker for a missing
# library ("CANNOT LINK EXECUTABLE", exit 1: bionic linker/linker_main.cpp).
_EXEC_FAILURE = re.compile(r": (not executable|inaccessible or not found|Exec format error|cannot execute|"
                           r"Permission denied)|^CANNOT LINK EXECUTABLE|: not found$", re.M)


def exec_failure(output: str, exit_code: int) -> str | None:
    """Why a tool asked for its ``--help`` does not run on the phone, or None when it ran (most tools
    exit non-zero after printing their flags). The shell's words count as well as its code: mksh, the
    phone's ``sh``, exits 1 for a binary of another ABI."""
    lines = [ln for ln in output.splitlines() if ln.strip()]
    said = next((ln for ln in lines if _EXEC_FAILURE.search(ln)), None)
    if exit_code != 0 and said is not None:
        return f"exit {exit_code}: {said.strip()[:160]}"
    if exit_code in (126, 127) or exit_code >= 128:
        return f"exit {exit_code}: {(lines[-1] if lines else '').strip()[:160]}"
    return None


def help_flags(text: str) -> frozenset[str]:
    """The flag names a tool's ``--help`` lists (gflags ``-name``, TFLite ``--name=``, getopt ``-x``)."""
    return frozenset(re.findall(r"(?<![\w-])--?([A-Za-z][\w]*)", text))


# --------------------------------------------------------------------------------------------------
# The runner: a tool pinned to one core, its /proc status polled while it runs

RUNNER_TAG = "SBR"
LAUNCHERS = frozenset({"sh", "mksh", "dash", "bash", "taskset", "toybox"})  # process names before the tool's exec
_STATUS_KEYS = {"Name:": "name", "State:": "state", "VmHWM:": "hwm", "VmRSS:": "rss", "RssAnon:": "anon",
                "RssFile:": "file", "RssShmem:": "shmem", "VmSwap:": "swap", "Threads:": "threads",
                "Cpus_allowed_list:": "cpus"}


FAST_POLLS = 20


def runner_script(*, tool_path: str, args: Iterable[str], cpu: int, job_dir: str, out_file: str, pid_file: str,
                  poll_s: float, timeout_s: float) -> str:
    """A POSIX ``sh`` script (mksh on the phone, dash here) that starts the tool with ``taskset`` on
    ``cpu``, prints its pid, then every ``poll_s`` one line of its ``/proc/<pid>/status`` (read with
    the shell's own ``read``: no process per poll but ``sleep``), kills it after ``timeout_s`` and
    prints its exit status. The lines double as a heartbeat, so a silent tool never trips the adb
    read timeout, and a stalled stream means a lost link.

    Every line it prints starts with ``SBR``; the tool's own output goes to ``out_file``.
    """
    # The first FAST_POLLS polls come every 10 ms: a launcher (the shell, taskset) may still be what runs
    # at the first one, and a short job may end before a second poll at the full interval.
    polls = max(1, math.ceil(timeout_s / poll_s)) + FAST_POLLS
    reads = " ".join(f"{k}) {v}=$b ;;" for k, v in _STATUS_KEYS.items())
    fields = " ".join(f"{v}=${v}" for v in _STATUS_KEYS.values() if v != "state")
    command = " ".join(q(a) for a in (tool_path, *args))
    return "\n".join([
        f"cd {q(job_dir)} || {{ echo '{RUNNER_TAG} error cannot enter the job directory'; exit 0; }}",
        f"taskset {mask([cpu])} {command} </dev/null >{q(out_file)} 2>&1 &",
        "pid=$!",
        f"echo \"$pid\" > {q(pid_file)}",
        f"echo \"{RUNNER_TAG} start pid=$pid\"",
        "n=0",
        "while :; do",
        "  " + "; ".join(f"{v}=" for v in _STATUS_KEYS.values()),
        f"  while read -r a b c; do case \"$a\" in {reads} esac; done 2>/dev/null </proc/$pid/status",
        "  case \"$state\" in ''|Z|X) break ;; esac",
        f"  echo \"{RUNNER_TAG} poll n=$n {fields}\"",
        "  n=$((n+1))",
        f"  if [ \"$n\" -ge {polls} ]; then kill -9 \"$pid\" 2>/dev/null; echo \"{RUNNER_TAG} timeout polls=$n\"; break; fi",
        f"  if [ \"$n\" -le {FAST_POLLS} ]; then sleep 0.01; else sleep {poll_s:g}; fi",
        "done",
        "wait \"$pid\"",
        f"echo \"{RUNNER_TAG} exit rc=$?\"",
        f"rm -f {q(pid_file)}",
    ])


def runner_command(script: str, other_cpus: Iterable[int]) -> str:
    """Run the runner on the other cores, so its polling never lands on the measured core."""
    others = sorted(set(other_cpus))
    if not others:
        return f"sh -c {q(script)}"
    return f"taskset {mask(others)} sh -c {q(script)}"


@dataclass
class RunnerReport:
    """What the runner said about one tool process."""

    pid: int | None = None
    polls: list[dict[str, str]] = field(default_factory=list)
    exit_code: int | None = None
    timed_out: bool = False
    error: str | None = None
    stray: list[str] = field(default_factory=list)  # lines not from the runner (kept for diagnostics)

    def feed(self, line: str) -> None:
        if not line.startswith(RUNNER_TAG + " "):
            if line.strip():
                self.stray.append(line)
            return
        kind, _, rest = line[len(RUNNER_TAG) + 1:].partition(" ")
        kv = dict(p.split("=", 1) for p in rest.split() if "=" in p)
        if kind == "start":
            self.pid = int_or_none(kv.get("pid"))
        elif kind == "poll":
            self.polls.append(kv)
        elif kind == "timeout":
            self.timed_out = True
        elif kind == "exit":
            self.exit_code = int_or_none(kv.get("rc"))
        elif kind == "error":
            self.error = rest

    @property
    def finished(self) -> bool:
        return self.exit_code is not None or self.error is not None

    @property
    def signal(self) -> int | None:
        """The signal that killed the tool (sh reports 128 + signal)."""
        return self.exit_code - 128 if self.exit_code is not None and 128 < self.exit_code < 160 else None

    @property
    def tool_polls(self) -> list[dict[str, str]]:
        """Polls of the tool itself: a first poll may catch the forked shell or ``taskset`` before it
        sets the mask and execs the tool."""
        return [p for p in self.polls if p.get("name") not in LAUNCHERS]

    @property
    def pinned_cpus(self) -> tuple[int, ...]:
        """The CPUs the tool was allowed on, as seen in every poll of it (empty when they disagreed or none)."""
        seen = set(self.cpus_seen)
        return parse_cpu_list(seen.pop()) if len(seen) == 1 else ()

    @property
    def cpus_seen(self) -> list[str]:
        return sorted({p.get("cpus", "") for p in self.tool_polls if p.get("cpus")})

    @property
    def max_threads(self) -> int | None:
        t = [v for v in (int_or_none(p.get("threads")) for p in self.tool_polls) if v is not None]
        return max(t) if t else None


def polled_memory(report: RunnerReport, poll_s: float) -> MemoryReading | None:
    """The tool's memory as read from ``/proc/<pid>/status`` while it ran: the peak is the largest
    VmHWM seen (the kernel's high-water mark, so a peak between polls is still caught), with VmRSS,
    RssAnon, RssFile, RssShmem and VmSwap of the sample where it was reached. No baseline before the
    load: a native tool cannot be seen from outside between its start and its load."""
    samples = []
    for p in report.tool_polls:
        hwm = int_or_none(p.get("hwm"))
        if hwm is not None:
            samples.append((hwm, p))
    if not samples:
        return None
    hwm, at = max(samples, key=lambda s: s[0])
    detail = {name: int_or_none(at.get(key)) * 1024 for key, name in (("rss", "VmRSS"), ("anon", "RssAnon"),
              ("file", "RssFile"), ("shmem", "RssShmem"), ("swap", "VmSwap")) if int_or_none(at.get(key)) is not None}
    # zram: anonymous pages swapped out leave RSS and VmHWM; RSS + swap bounds what the process held.
    rss_swap = [(int_or_none(p.get("rss")) or 0) + (int_or_none(p.get("swap")) or 0) for _, p in samples]
    detail["VmRSS_plus_VmSwap_max"] = max(rss_swap) * 1024
    detail["samples"] = len(report.polls)
    detail["poll_interval_ms"] = int(round(poll_s * 1000))
    return MemoryReading(method="proc_status_polled", peak_b=hwm * 1024, detail=detail)
