"""A loopback Android device for the tests: a threaded TCP server on 127.0.0.1 that speaks the real ADB
wire protocol (``tests/loopback_adbd.py``: CNXN/AUTH, ``features=`` with ``shell_v2``, the ``shell:``,
``shell,v2:``, ``exec:`` and ``sync:`` services, stdin), so the real ``adb_shell`` client connects to it
as to a phone after ``adb tcpip 5555``, and Google's ``adb`` server as after ``adb connect``.

Every shell command runs under Android's own userland: ``mksh`` as ``sh``, with a PATH of ``toybox``
applets only (``tests/android_userland.py``; no ``/bin``, no ``/usr/bin``), the stand-ins for the
phone's other commands and for the tools aside. Without mksh and toybox the tests that need a phone
skip, saying so.

The device root. Phone paths are mapped into a temporary directory, ``root``:

- the sync service maps every absolute path ``/p`` to ``root/p``;
- a shell command is rewritten before it runs: each ``/data/``, ``/sdcard/``, ``/storage/``, ``/sys/``
  and ``/proc/sys/`` that starts a path (not preceded by a word character, ``.``, ``-`` or ``/``)
  becomes ``root/data/`` ...; so the work directory, the CPU topology in
  ``/sys/devices/system/cpu/cpu*/cpufreq`` and ``/proc/sys/vm/drop_caches`` are the root's, while
  ``/proc/<pid>/status`` of a running tool stays the real one (its pin and VmHWM are real);
- ``root/system/bin`` comes first on the PATH and holds ``sh`` (mksh) and stand-ins for ``getprop``,
  ``dumpsys``, ``id``, ``su`` (when rooted), ``df`` (toybox's, or a full disk), ``logcat`` and ``cmd``;
  then toybox (``taskset``, ``sha256sum``, ``sleep``, ``cat`` ...), whose ``taskset MASK cmd`` is the
  phone's own;
- the fake CPUs are this host's real CPUs (``cpu0`` .. ``cpuN-1``), each given a max frequency, so
  the agent's choice of core is a real pin.

Knobs for the tests: :meth:`LoopbackPhone.unplug` (close every connection, refuse new ones),
:meth:`replug`, :meth:`unplug_when` (unplug once a matching shell command has run for a while),
:meth:`set_tool_behaviour` (a tool hangs or crashes with SIGSEGV), :meth:`set_accelerators` (what a tool's
build has and what its delegates do), :meth:`set_full` (storage full),
battery temperatures and the thermal status; constructor arguments: ``rooted``, ``without`` (toybox
applets the phone lacks), ``features`` (the banner's; ``()`` for a phone older than Android 7).
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path

from tests.android_userland import MKSH, TOYBOX, android_path
from tests.loopback_adbd import Connection

HERE = Path(__file__).resolve().parent
TOOLS_DIR = HERE / "android_tools"
FEATURES = ("shell_v2", "fixed_push_mkdir")  # what the loopback's adbd does (transport.cpp kFeature*)
# PKCS#1 v1.5 DigestInfo for SHA-1: adbd verifies the token signature with RSA_verify(NID_sha1, ...).
_SHA1_DIGEST_INFO = bytes.fromhex("3021300906052b0e03021a05000414")

_PATH_PREFIX = re.compile(r"(?<![\w./-])(/data/|/sdcard/|/storage/|/sys/|/proc/sys/)")


# --------------------------------------------------------------------------------------------------
# The phone


class LoopbackPhone:
    """One fake phone: a device root on disk and an ADB server on 127.0.0.1:``port``."""

    def __init__(self, root: str | Path, *, serial: str = "LOOPBACK0001", model: str = "Loopback Phone",
                 rooted: bool = False, cpu_max_khz: list[int] | None = None, require_auth: bool = False,
                 accept_new_keys: bool = True, python: str = sys.executable, logcat_pal: bool = False,
                 without: tuple[str, ...] = (), features: tuple[str, ...] = FEATURES):
        self.root = Path(root).resolve()
        self.serial, self.model = serial, model
        self.require_auth, self.accept_new_keys = require_auth, accept_new_keys
        self.python = python
        self.features = features
        self.path = android_path(self.root / "system/bin", without)  # raises where mksh/toybox are missing
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._conns: set[Connection] = set()
        self._procs: list[subprocess.Popen] = []
        self._plugged = False
        self._triggers: list[list] = []  # [pattern, after_s, matches to go]
        self.port = 0
        ncpu = len(os.sched_getaffinity(0))
        # Default: the last CPU is the fastest, as on a big.LITTLE phone whose prime core is last.
        self.cpu_max_khz = cpu_max_khz or [1_800_000] * (ncpu - 1) + [2_400_000]
        if len(self.cpu_max_khz) > ncpu:
            raise ValueError(f"this host has {ncpu} CPUs; the loopback phone's CPUs are real ones")
        self._build_root(rooted, logcat_pal)

    # -- the device root ---------------------------------------------------------------------------
    def _build_root(self, rooted: bool, logcat_pal: bool) -> None:
        r = self.root
        for d in ("data/local/tmp", "system/bin", "proc/sys/vm", "state/logcat", "sys/class/thermal"):
            (r / d).mkdir(parents=True, exist_ok=True)
        (r / "proc/sys/vm/drop_caches").write_text("")
        cpus = r / "sys/devices/system/cpu"
        for i, khz in enumerate(self.cpu_max_khz):
            f = cpus / f"cpu{i}" / "cpufreq"
            f.mkdir(parents=True, exist_ok=True)
            for name, value in (("cpuinfo_max_freq", khz), ("cpuinfo_min_freq", 300_000),
                                ("scaling_cur_freq", khz), ("scaling_governor", "schedutil")):
                (f / name).write_text(f"{value}\n")
        (cpus / "possible").write_text(f"0-{len(self.cpu_max_khz) - 1}\n")
        props = {
            "ro.serialno": self.serial, "ro.product.model": self.model, "ro.product.manufacturer": "Splitbench",
            "ro.product.brand": "splitbench", "ro.product.device": "loopback", "ro.soc.manufacturer": "Loopback",
            "ro.soc.model": "LB-2", "ro.board.platform": "loopback", "ro.hardware": "loopback",
            "ro.build.version.release": "14", "ro.build.version.sdk": "34", "ro.product.cpu.abi": "arm64-v8a",
            "ro.build.fingerprint": "splitbench/loopback/loopback:14/LB1/1:user/release-keys",
        }
        self.write_state("props.json", json.dumps(props))
        self.write_state("rooted", "1" if rooted else "0")
        self.write_state("thermal_status", "0")
        self.write_state("battery_temps", "285\n")
        self.write_state("perf_mode", "false")
        self.write_state("logcat_pal", "1" if logcat_pal else "0")
        self.write_state("adb_keys", "")
        (r / "system/bin/sh").symlink_to(MKSH)  # /system/bin/sh is mksh
        for name in ("getprop", "dumpsys", "id", "su", "df", "logcat", "cmd"):
            script = r / "system/bin" / name
            script.write_text(f'#!{MKSH}\nexec {self.python} {TOOLS_DIR / "device_commands.py"} {name} "$@"\n')
            script.chmod(0o755)

    @property
    def state(self) -> Path:
        return self.root / "state"

    def write_state(self, name: str, text: str) -> None:
        tmp = self.state / f".{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, self.state / name)

    def read_state(self, name: str) -> str:
        return (self.state / name).read_text()

    def device_path(self, path: str) -> Path:
        """Where a phone path lives on this host."""
        return self.root / path.lstrip("/")

    def rewrite(self, command: str) -> str:
        """A shell command with its phone paths mapped into the device root."""
        return _PATH_PREFIX.sub(lambda m: str(self.root) + m.group(1), command)

    def env(self) -> dict[str, str]:
        return {"PATH": self.path, "HOME": str(self.root / "data/local/tmp"), "TMPDIR": str(self.root / "data/local/tmp"),
                "LOOPBACK_STATE": str(self.state), "LOOPBACK_ROOT": str(self.root), "LOOPBACK_SH": MKSH,
                "LOOPBACK_TOYBOX": TOYBOX}

    # -- knobs -------------------------------------------------------------------------------------
    def set_battery_temps(self, tenths: list[int]) -> None:
        """Battery temperatures in tenths of a degree, one per ``dumpsys battery``; the last one stays."""
        self.write_state("battery_temps", "".join(f"{t}\n" for t in tenths))

    def set_thermal_status(self, status: int) -> None:
        self.write_state("thermal_status", str(status))

    def set_full(self, full: bool = True, *, df_knows: bool = True) -> None:
        """Storage full: a push fails with ENOSPC, and ``df`` reports 1 MB available (unless
        ``df_knows`` is False: the space went between the check and the push)."""
        for name in ("full", "full_df"):
            (self.state / name).unlink(missing_ok=True)
        if full:
            self.write_state("full", "1")
            if df_knows:
                self.write_state("full_df", "1")

    @property
    def full(self) -> bool:
        return (self.state / "full").exists()

    def set_tool_behaviour(self, tool: str, behaviour: str, *, after_lines: int = 3) -> None:
        """``hang`` (sleep forever) or ``crash`` (SIGSEGV) after printing ``after_lines`` lines; ``ok``."""
        self.write_state(f"behaviour_{tool}", json.dumps({"behaviour": behaviour, "after_lines": after_lines}))

    def set_accelerators(self, tool: str, **build) -> None:
        """What this phone's build of ``tool`` has and what its delegates do with a graph (the stand-ins'
        ``accelerators_<tool>`` knob): ``benchmark_model``: ``gpu_build`` (bool), ``GPU`` / ``NNAPI`` (``completely``,
        ``partially``, ``not``, ``failed``, ``unsupported``); ``onnxruntime_perf_test``: ``listed`` (its ``-e``
        values), ``providers`` (those the build was made with), ``placement`` ({provider: ``all``, ``partial``,
        ``none``})."""
        self.write_state(f"accelerators_{tool}", json.dumps(build))

    def unplug_when(self, pattern: str, after_s: float = 0.3, nth: int = 1) -> None:
        """Unplug ``after_s`` seconds after the ``nth`` shell command matching ``pattern`` (a regex) starts."""
        self._triggers.append([re.compile(pattern), after_s, nth])

    # -- server ------------------------------------------------------------------------------------
    def start(self) -> int:
        self._listen()
        return self.port

    def _listen(self) -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(8)
        self.port = s.getsockname()[1]
        self._listener, self._plugged = s, True
        threading.Thread(target=self._accept, args=(s,), daemon=True, name="loopback-accept").start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as adbd: no Nagle delay on small packets
            with self._lock:
                if not self._plugged:
                    sock.close()
                    continue
                conn = Connection(self, sock)
                self._conns.add(conn)
            conn.start()

    def unplug(self) -> None:
        """The cable is pulled: every connection closes and new ones are refused. Processes on the
        phone go on running, as on a real phone."""
        with self._lock:
            self._plugged = False
            listener, self._listener = self._listener, None
            conns, self._conns = set(self._conns), set()
        if listener is not None:
            listener.close()
        for conn in conns:
            conn.close()

    def replug(self) -> None:
        if not self._plugged:
            self._listen()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        """Unplug and kill everything the phone's shells started (the tests' teardown)."""
        self.unplug()
        with self._lock:
            procs, self._procs = list(self._procs), []
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        # Tools started in the background by a runner live in their own groups: kill by pid file.
        for pidfile in self.root.rglob("*.pid"):
            try:
                os.kill(int(pidfile.read_text().split()[0]), signal.SIGKILL)
            except (ValueError, OSError, IndexError):
                pass

    def __enter__(self) -> "LoopbackPhone":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- services ----------------------------------------------------------------------------------
    def run_shell(self, command: str, separate_stderr: bool = False) -> subprocess.Popen:
        """``sh -c COMMAND`` (mksh) in the device root, stdin a pipe the stream feeds; stderr apart for
        the shell protocol, merged with stdout otherwise."""
        for trigger in list(self._triggers):
            pattern, after_s, nth = trigger
            if pattern.search(command):
                trigger[2] = nth - 1
                if nth == 1:
                    self._triggers.remove(trigger)
                    threading.Timer(after_s, self.unplug).start()
        proc = subprocess.Popen([MKSH, "-c", self.rewrite(command)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE if separate_stderr else subprocess.STDOUT, env=self.env(),
                                cwd=str(self.root), start_new_session=True)
        with self._lock:
            self._procs.append(proc)
        return proc

    def check_key(self, token: bytes, signature: bytes) -> bool:
        for line in self.read_state("adb_keys").splitlines():
            try:
                blob = base64.b64decode(line.split()[0])
                _, _, modulus, _, exponent = struct.unpack("<LL256s256sL", blob)
            except (ValueError, IndexError, struct.error):
                continue
            n = int.from_bytes(modulus, "little")
            m = pow(int.from_bytes(signature, "big"), exponent, n).to_bytes(256, "big")
            if m.startswith(b"\x00\x01") and m.endswith(_SHA1_DIGEST_INFO + token):
                return True
        return False

    def add_key(self, public_key: bytes) -> None:
        line = public_key.rstrip(b"\0").decode(errors="replace").strip()
        self.write_state("adb_keys", self.read_state("adb_keys") + line + "\n")

    def banner(self) -> bytes:
        """adbd's connection string (adb.cpp ``get_connection_string``)."""
        return (f"device::ro.product.name=loopback;ro.product.model={self.model};"
                f"ro.product.device=loopback;features={','.join(self.features)}").encode()


# --------------------------------------------------------------------------------------------------
# Host-side tool files for [android.tools]


def write_tool_wrappers(directory: str | Path, python: str = sys.executable) -> dict[str, Path]:
    """Executable stand-ins for the three tools, as a user's arm64 binaries would sit on the host.

    Each is a two-line shell script that ``exec``\\s the Python stand-in, so the tool's pid is the
    process that loads the model (its /proc/<pid>/status is the one the agent polls).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    out = {}
    for name in ("benchmark_model", "onnxruntime_perf_test", "executor_runner"):
        path = directory / name
        path.write_text(f'#!{MKSH or "/bin/sh"}\nexec {python} {TOOLS_DIR / (name + ".py")} "$@"\n')
        path.chmod(0o755)
        out[name] = path
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

