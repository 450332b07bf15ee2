"""The phone-side protocol without a phone: the runner script run by the phone's own shell (mksh, with
toybox's commands only) on real processes (pin, polling, exit status, signal, timeout, hostile names),
what that shell says when a tool cannot run, and the parsing of what the phone's commands and the
tools print, from text in the documented formats."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from device_agents.android import protocol as P
from device_agents.android.session import AndroidOptions
from device_agents.android import adb_direct as D
from device_agents.android.transport import Address, parse_target
from device_agents.base import AgentError, MeasureJob
from tests.android_userland import MISSING, MKSH, SKIP_REASON, android_path

needs_userland = pytest.mark.skipif(bool(MISSING), reason=SKIP_REASON)

HOSTILE = "it's a \"name\" with $(touch PWNED) and `touch PWNED2`; rm -rf x & spaces"


def android_sh(tmp_path, script: str, **kw) -> subprocess.CompletedProcess:
    """``sh -c script`` as on the phone: mksh, with ``sh`` and toybox's applets only on the PATH."""
    system_bin = tmp_path / "system-bin"
    if not system_bin.exists():
        system_bin.mkdir()
        (system_bin / "sh").symlink_to(MKSH)
    return subprocess.run([MKSH, "-c", script], capture_output=True, text=True, timeout=60,
                          env={"PATH": android_path(system_bin)}, **kw)


def run_runner(tmp_path, argv: list[str], timeout_s: float = 30, poll_s: float = 0.05) -> P.RunnerReport:
    job_dir = tmp_path / HOSTILE
    job_dir.mkdir(parents=True, exist_ok=True)
    cpu = sorted(os.sched_getaffinity(0))[-1]
    script = P.runner_script(tool_path=argv[0], args=argv[1:], cpu=cpu, job_dir=str(job_dir),
                             out_file=str(job_dir / "out; $(touch PWNED3).txt"), pid_file=str(job_dir / "tool.pid"),
                             poll_s=poll_s, timeout_s=timeout_s)
    others = [c for c in os.sched_getaffinity(0) if c != cpu]
    out = android_sh(tmp_path, P.runner_command(script, others), cwd=tmp_path)
    report = P.RunnerReport()
    for line in out.stdout.splitlines():
        report.feed(line)
    report.cpu = cpu
    return report


@needs_userland
def test_runner_pins_polls_and_reports_the_exit_status(tmp_path):
    code = "import time; x = bytearray(30_000_000); time.sleep(0.4); print('done')"
    report = run_runner(tmp_path, [sys.executable, "-c", code])
    assert report.exit_code == 0 and report.pid and not report.timed_out
    assert report.pinned_cpus == (report.cpu,)  # read from the tool's real /proc/<pid>/status
    memory = P.polled_memory(report, 0.05)
    assert memory.method == "proc_status_polled" and memory.peak_b > 30_000_000
    assert memory.before_load_b is None  # no baseline is seen from outside a native tool
    assert {"VmRSS", "RssAnon", "RssFile", "VmSwap"} <= set(memory.detail)
    out = (tmp_path / HOSTILE / "out; $(touch PWNED3).txt").read_text()
    assert out.strip() == "done"
    assert not list(tmp_path.rglob("PWNED*"))
    assert not (tmp_path / HOSTILE / "tool.pid").exists()  # removed once the tool ended


@needs_userland
def test_runner_reports_a_signal_and_kills_a_hung_tool(tmp_path):
    crashed = run_runner(tmp_path, [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"])
    assert crashed.signal == 11 and not crashed.timed_out
    hung = run_runner(tmp_path, ["sleep", "30"], timeout_s=0.3)
    assert hung.timed_out and hung.signal == 9
    with pytest.raises(ProcessLookupError):
        os.kill(hung.pid, 0)


@needs_userland
def test_hostile_arguments_reach_the_tool_unchanged(tmp_path):
    report = run_runner(tmp_path, [sys.executable, "-c", "import sys; print(repr(sys.argv[1:]))", HOSTILE, "--graph=" + HOSTILE])
    assert report.exit_code == 0
    out = (tmp_path / HOSTILE / "out; $(touch PWNED3).txt").read_text()
    assert out.strip() == repr([HOSTILE, "--graph=" + HOSTILE])
    assert not list(tmp_path.rglob("PWNED*"))


@needs_userland
def test_hashes_command_quotes_paths_and_marks_missing_files(tmp_path):
    f = tmp_path / HOSTILE
    f.write_bytes(b"abc")
    out = android_sh(tmp_path, P.hashes_command([str(f), str(tmp_path / "missing $(touch PWNED)")]),
                     cwd=tmp_path).stdout
    assert P.parse_hashes(out) == ["ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", None]
    assert not list(tmp_path.rglob("PWNED*"))


@needs_userland
def test_a_tool_the_shell_cannot_start_is_told_by_its_words_as_well_as_its_code(tmp_path):
    elf = tmp_path / "tool"
    elf.write_bytes(b"\x7fELF\x02\x01\x01" + bytes(57))  # an ELF header for no machine this host runs
    elf.chmod(0o755)
    ran = android_sh(tmp_path, f"{elf} --help 2>&1 </dev/null")
    assert ran.returncode == 1 and "not executable" in ran.stdout  # mksh: exit 1, where dash exits 126
    assert "not executable" in P.exec_failure(ran.stdout, ran.returncode)
    missing = android_sh(tmp_path, f"{tmp_path}/nothing --help 2>&1 </dev/null")
    assert missing.returncode == 127 and P.exec_failure(missing.stdout, missing.returncode)
    # bionic's linker when a library is missing (exit 1; bionic linker/linker_main.cpp)
    linker = 'CANNOT LINK EXECUTABLE "./onnxruntime_perf_test": library "libonnxruntime.so" not found'
    assert P.exec_failure(linker + "\n", 1).startswith("exit 1: CANNOT LINK")
    # a tool that prints its flags and exits non-zero runs: benchmark_model's usage ends with an error line
    usage = "INFO: STARTING!\nERROR: usage: benchmark_model\nFlags:\n\t--graph=\tstring\toptional\tGraph\n"
    assert P.exec_failure(usage, 1) is None and P.exec_failure("", 0) is None
    assert P.exec_failure("Segmentation fault\n", 139).startswith("exit 139")


FACTS = """@@props
[ro.serialno]: [2A111FDH200ABC]
[ro.product.model]: [Pixel 7]
[ro.build.version.sdk]: [34]
@@cpus
cpu 0 max=1803000 min=300000 gov=sched_pixel
cpu 1 max=1803000 min=300000 gov=sched_pixel
cpu 6 max=2850000 min=500000 gov=sched_pixel
cpu 7 max=2850000 min=500000 gov=sched_pixel
cpu 4 max=2350000 min=400000 gov=sched_pixel
@@kernel
5.10.157-android13-4
@@uid
2000
@@su
@@commands
taskset
sha256sum
@@df
Filesystem      1K-blocks     Used Available Use% Mounted on
/dev/block/dm-46 115000000 60000000  55000000  53% /data
"""


def test_device_facts_and_the_fastest_core():
    f = P.parse_facts(FACTS)
    assert f.serial == "2A111FDH200ABC" and f.props["ro.product.model"] == "Pixel 7"
    assert [c.cpu for c in f.cores] == [0, 1, 4, 6, 7]
    assert P.fastest_core(f.cores) == 7  # the last of the cores with the highest cpuinfo_max_freq
    assert f.uid == 2000 and not f.rooted and f.free_b == 55000000 * 1024
    assert P.parse_facts(FACTS.replace("@@su\n", "@@su\n0\n")).su == "su"
    assert P.parse_facts(FACTS.replace("@@uid\n2000", "@@uid\n0")).su == "adbd"
    assert P.mask([7]) == "80" and P.mask([0, 1]) == "3"
    assert P.parse_cpu_list("0-3,6") == (0, 1, 2, 3, 6) and P.parse_cpu_list("7") == (7,)


def test_conditions_from_dumpsys():
    text = ("@@thermal\nThermal Status: 2\nCached temperatures:\n\tTemperature{mValue=30.1, mType=2, mName=battery, "
            "mStatus=0}\nCurrent temperatures from HAL:\n\tTemperature{mValue=41.5, mType=0, mName=cpu7, mStatus=2}\n"
            "@@battery\nCurrent Battery Service state:\n  level: 80\n  temperature: 326\n@@freq\n2850000\n"
            "@@governor\nschedutil\n")
    c = P.parse_conditions(text)
    assert (c.thermal_status, c.battery_temp_c, c.cpu_freq_khz, c.governor) == ("MODERATE", 32.6, 2850000, "schedutil")
    assert c.detail["hal_temperatures_c"] == {"cpu7": 41.5}
    assert P.thermal_level("MODERATE") == 2
    empty = P.parse_conditions("@@thermal\nCan't find service: thermalservice\n@@battery\n")
    assert empty.thermal_status is None and empty.battery_temp_c is None


def test_tool_calls_follow_the_job():
    job = MeasureJob(artifact_path="/p", backend="litert", input_shape=(1,), runs=60, warmup=5, warm_loads=2,
                     timeout_s=900)
    lite = P.tool_call("litert", "/w/m o.tflite", job, "cold", "/w/j")
    assert {"--graph=/w/m o.tflite", "--num_threads=1", "--warmup_runs=6", "--warmup_min_secs=0", "--num_runs=60",
            "--min_secs=0", "--max_secs=900", "--report_peak_memory_footprint=true"} == set(lite.args)
    assert "--num_runs=1" in P.tool_call("litert", "/m", job, "warm", "/j").args
    ort = P.tool_call("onnx", "/w/m.onnx", job, "cold", "/w/j")
    assert ort.args[:4] == ("-m", "times", "-r", "65") and ort.args[-2:] == ("/w/m.onnx", ort.result_file)
    assert ort.args[ort.args.index("-x") + 1] == "1" and ort.args[ort.args.index("-y") + 1] == "1"
    et = P.tool_call("executorch", "/m.pte", job, "cold", "/j")
    assert "--num_executions=66" in et.args and "--cpu_threads=1" in et.args
    old = P.tool_call("executorch", "/m.pte", job, "cold", "/j", flags=frozenset({"model_path", "num_executions"}))
    assert "--cpu_threads=1" not in old.args and "--print_output=none" not in old.args


def test_targets_and_options():
    assert parse_target("android") is None
    assert parse_target("android:2A111FDH200ABC") == Address("serial", serial="2A111FDH200ABC")
    assert parse_target("android:192.168.1.7:5555") == Address("tcp", host="192.168.1.7", port=5555)
    with pytest.raises(AgentError, match="serial"):
        parse_target("android:bad serial")
    with pytest.raises(AgentError, match="unknown key 'cores'"):
        AndroidOptions.from_options({"cores": 7})
    with pytest.raises(AgentError, match="unknown tool"):
        AndroidOptions.from_options({"tools": {"benchmark": "/x"}})
    with pytest.raises(AgentError, match="workdir"):
        AndroidOptions.from_options({"workdir": "relative"})
    with pytest.raises(AgentError, match="positive"):
        AndroidOptions.from_options({"cool_below_c": -1})
    with pytest.raises(AgentError, match="positive"):
        AndroidOptions.from_options({"link_timeout_s": "10"})
    o = AndroidOptions.from_options({"core": 7, "cool_timeout_s": 0, "workdir": "/data/local/tmp/sb/"})
    assert (o.core, o.cool_timeout_s, o.workdir) == (7, 0.0, "/data/local/tmp/sb")


def test_usb_errors_that_the_user_fixes_are_one_line():
    class USBErrorBusy(Exception):  # what libusb1 raises while the adb server holds the interface
        pass

    class USBErrorAccess(Exception):
        pass

    link = D.DirectLink(Address("serial", serial="X"))
    with pytest.raises(AgentError, match="adb kill-server"):
        link._raise_usb_hint(USBErrorBusy("LIBUSB_ERROR_BUSY [-6]"))
    with pytest.raises(AgentError, match="udev"):
        link._raise_usb_hint(USBErrorAccess("LIBUSB_ERROR_ACCESS [-3]"))
    link._raise_usb_hint(OSError("anything else"))  # not the user's to fix here: no AgentError
