"""A loopback Android device for the tests: a threaded TCP server on 127.0.0.1 that speaks the real ADB
wire protocol, so the real ``adb_shell`` client connects to it as to a phone after ``adb tcpip 5555``.

What it implements (``../shared/research/adb_ci_scaleout.md`` part A, checked against adb_shell 0.4.4):

- messages: 24-byte header (command, arg0, arg1, length, byte-sum "checksum", magic) + payload; the
  byte sum is filled in because adb_shell checks it on every packet (A.1);
- handshake: the host's CNXN is answered with CNXN (no AUTH), or, with ``require_auth``, with an AUTH
  token; a signature by a key in ``state/adb_keys`` is accepted, an unknown public key is added there
  (the user "tapped Allow") when ``accept_new_keys`` is set (A.4);
- streams: OPEN is answered with OKAY and a non-zero local id; one WRTE outstanding per stream until
  the host's OKAY; every host WRTE is acknowledged with OKAY; a host CLSE is answered with CLSE (A.5);
- ``shell:<cmd>`` (v1: stdout and stderr merged, no exit code): ``/bin/sh -c`` on this host, inside the
  device root (below) (A.6);
- ``sync:``: a byte stream across WRTEs carrying STAT, LIST, RECV, SEND (+DATA/DONE), QUIT (A.9).

The device root. Phone paths are mapped into a temporary directory, ``root``:

- the sync service maps every absolute path ``/p`` to ``root/p``;
- a shell command is rewritten before it runs: each ``/data/``, ``/sdcard/``, ``/storage/``, ``/sys/``
  and ``/proc/sys/`` that starts a path (not preceded by a word character, ``.``, ``-`` or ``/``)
  becomes ``root/data/`` ...; so the work directory, the CPU topology in
  ``/sys/devices/system/cpu/cpu*/cpufreq`` and ``/proc/sys/vm/drop_caches`` are the root's, while
  ``/proc/<pid>/status`` of a running tool stays the real one (its pin and VmHWM are real);
- ``root/system/bin`` comes first on the PATH and holds stand-ins for ``getprop``, ``dumpsys``,
  ``id``, ``su`` (when rooted), ``df``, ``logcat`` and ``cmd``; everything else (``taskset``,
  ``sha256sum``, ``sleep``, ``kill``) is this host's, whose util-linux ``taskset MASK cmd`` takes the
  same hex mask as toybox's;
- the fake CPUs are this host's real CPUs (``cpu0`` .. ``cpuN-1``), each given a max frequency, so
  the agent's choice of core is a real pin.

Knobs for the tests: :meth:`LoopbackPhone.unplug` (close every connection, refuse new ones),
:meth:`replug`, :meth:`unplug_when` (unplug once a matching shell command has run for a while),
:meth:`set_tool_behaviour` (a tool hangs or crashes with SIGSEGV), :meth:`set_full` (storage full),
battery temperatures and the thermal status, and ``rooted`` (a constructor argument).
"""

from __future__ import annotations

import base64
import itertools
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

HERE = Path(__file__).resolve().parent
TOOLS_DIR = HERE / "android_tools"

# -- wire constants (adb.h, protocol.md; the same values adb_shell/constants.py uses) -------------------
A_CNXN, A_AUTH, A_OPEN, A_OKAY, A_CLSE, A_WRTE = (int.from_bytes(c, "little") for c in
                                                  (b"CNXN", b"AUTH", b"OPEN", b"OKAY", b"CLSE", b"WRTE"))
A_VERSION = 0x01000000  # what adbd negotiates down to with adb_shell (A.3)
MAX_PAYLOAD = 1024 * 1024
AUTH_TOKEN, AUTH_SIGNATURE, AUTH_RSAPUBLICKEY = 1, 2, 3
SYNC_DATA_MAX = 64 * 1024
_HEADER = struct.Struct("<6I")
# PKCS#1 v1.5 DigestInfo for SHA-1: adbd verifies the token signature with RSA_verify(NID_sha1, ...).
_SHA1_DIGEST_INFO = bytes.fromhex("3021300906052b0e03021a05000414")

_PATH_PREFIX = re.compile(r"(?<![\w./-])(/data/|/sdcard/|/storage/|/sys/|/proc/sys/)")


def _packet(command: int, arg0: int, arg1: int, data: bytes = b"") -> bytes:
    return _HEADER.pack(command, arg0, arg1, len(data), sum(data) & 0xFFFFFFFF, command ^ 0xFFFFFFFF) + data


class _Closed(Exception):
    pass


# --------------------------------------------------------------------------------------------------
# The phone


class LoopbackPhone:
    """One fake phone: a device root on disk and an ADB server on 127.0.0.1:``port``."""

    def __init__(self, root: str | Path, *, serial: str = "LOOPBACK0001", model: str = "Loopback Phone",
                 rooted: bool = False, cpu_max_khz: list[int] | None = None, require_auth: bool = False,
                 accept_new_keys: bool = True, python: str = sys.executable, logcat_pal: bool = False):
        self.root = Path(root).resolve()
        self.serial, self.model = serial, model
        self.require_auth, self.accept_new_keys = require_auth, accept_new_keys
        self.python = python
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._conns: set[_Connection] = set()
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
        for name in ("getprop", "dumpsys", "id", "su", "df", "logcat", "cmd"):
            script = r / "system/bin" / name
            script.write_text(f'#!/bin/sh\nexec {self.python} {TOOLS_DIR / "device_commands.py"} {name} "$@"\n')
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
        return {"PATH": f"{self.root / 'system/bin'}:/usr/bin:/bin", "HOME": str(self.root / "data/local/tmp"),
                "TMPDIR": str(self.root / "data/local/tmp"), "LANG": "C.UTF-8",
                "LOOPBACK_STATE": str(self.state), "LOOPBACK_ROOT": str(self.root)}

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
                conn = _Connection(self, sock)
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
    def _run_shell(self, command: str) -> subprocess.Popen:
        for trigger in list(self._triggers):
            pattern, after_s, nth = trigger
            if pattern.search(command):
                trigger[2] = nth - 1
                if nth == 1:
                    self._triggers.remove(trigger)
                    threading.Timer(after_s, self.unplug).start()
        proc = subprocess.Popen(["/bin/sh", "-c", self.rewrite(command)], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=self.env(),
                                cwd=str(self.root), start_new_session=True)
        with self._lock:
            self._procs.append(proc)
        return proc

    def _check_key(self, token: bytes, signature: bytes) -> bool:
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

    def _add_key(self, public_key: bytes) -> None:
        line = public_key.rstrip(b"\0").decode(errors="replace").strip()
        self.write_state("adb_keys", self.read_state("adb_keys") + line + "\n")

    def banner(self) -> bytes:
        return (f"device::ro.product.name=loopback;ro.product.model={self.model};"
                f"ro.product.device=loopback;").encode()


# --------------------------------------------------------------------------------------------------
# One ADB connection


class _Stream:
    def __init__(self, conn: "_Connection", local_id: int, remote_id: int):
        self.conn, self.local_id, self.remote_id = conn, local_id, remote_id
        self.acked = threading.Event()
        self.closed = threading.Event()

    def write(self, data: bytes) -> None:
        """One WRTE, then wait for the host's OKAY (one outstanding write per stream)."""
        for i in range(0, len(data), self.conn.max_payload):
            if self.closed.is_set():
                raise _Closed()
            self.acked.clear()
            self.conn.send(A_WRTE, self.local_id, self.remote_id, data[i:i + self.conn.max_payload])
            while not self.acked.wait(0.5):
                if self.closed.is_set():
                    raise _Closed()

    def close_from_device(self) -> None:
        if not self.closed.is_set():
            self.closed.set()
            self.conn.forget(self.local_id)
            try:
                self.conn.send(A_CLSE, self.local_id, self.remote_id)
            except OSError:
                pass

    def host_closed(self) -> None:
        self.closed.set()
        self.acked.set()

    def feed(self, data: bytes) -> None:  # bytes the host wrote
        pass


class _ShellStream(_Stream):
    def __init__(self, conn, local_id, remote_id, command: str):
        super().__init__(conn, local_id, remote_id)
        self.command = command

    def run(self) -> None:
        proc = self.conn.phone._run_shell(self.command)
        fd = proc.stdout.fileno()
        try:
            while True:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                self.write(chunk)
        except (_Closed, OSError):
            pass
        finally:
            # As adbd: the host's side went away or the command ended; our end of the pipe closes, so a
            # shell still writing gets SIGPIPE, while background jobs with their own files go on.
            proc.stdout.close()
            if not self.closed.is_set():
                proc.wait()
                self.close_from_device()


class _SyncStream(_Stream):
    """The file-sync service: a byte stream across WRTEs (adb_shell packs several requests in one)."""

    def __init__(self, conn, local_id, remote_id):
        super().__init__(conn, local_id, remote_id)
        self.buffer = b""
        self.cond = threading.Condition()
        self.send_file = None  # (path, mode, open file) during a SEND

    def feed(self, data: bytes) -> None:
        with self.cond:
            self.buffer += data
            self.cond.notify_all()

    def host_closed(self) -> None:
        super().host_closed()
        with self.cond:
            self.cond.notify_all()

    def _take(self, n: int) -> bytes:
        with self.cond:
            while len(self.buffer) < n:
                if self.closed.is_set():
                    raise _Closed()
                self.cond.wait(0.5)
            out, self.buffer = self.buffer[:n], self.buffer[n:]
            return out

    def run(self) -> None:
        phone = self.conn.phone
        try:
            while True:
                ident, length = struct.unpack("<4sI", self._take(8))
                if ident == b"QUIT":
                    break
                if ident in (b"STAT", b"LIST", b"RECV", b"SEND"):
                    path = self._take(length).decode(errors="surrogateescape")
                if ident == b"STAT":
                    try:
                        st = os.lstat(phone.device_path(path))
                        self.write(struct.pack("<4s3I", b"STAT", st.st_mode & 0xFFFFFFFF, st.st_size & 0xFFFFFFFF,
                                               int(st.st_mtime)))
                    except OSError:  # adbd answers a missing file with zeros
                        self.write(struct.pack("<4s3I", b"STAT", 0, 0, 0))
                elif ident == b"LIST":
                    d = phone.device_path(path)
                    out = b""
                    for name in sorted(os.listdir(d)) if d.is_dir() else []:
                        st = os.lstat(d / name)
                        raw = name.encode(errors="surrogateescape")
                        out += struct.pack("<4s4I", b"DENT", st.st_mode, st.st_size & 0xFFFFFFFF,
                                           int(st.st_mtime), len(raw)) + raw
                    self.write(out + struct.pack("<4s4I", b"DONE", 0, 0, 0, 0))
                elif ident == b"RECV":
                    try:
                        with open(phone.device_path(path), "rb") as f:
                            while chunk := f.read(SYNC_DATA_MAX):
                                self.write(struct.pack("<4sI", b"DATA", len(chunk)) + chunk)
                        self.write(struct.pack("<4sI", b"DONE", 0))
                    except OSError as exc:
                        self._fail(f"open failed: {exc.strerror}")
                elif ident == b"SEND":
                    self._receive_file(path)
                else:
                    self._fail(f"unknown sync request {ident!r}")
                    break
        except (_Closed, OSError):
            pass
        finally:
            if not self.closed.is_set():
                self.close_from_device()

    def _fail(self, message: str) -> None:
        raw = message.encode()
        self.write(struct.pack("<4sI", b"FAIL", len(raw)) + raw)

    def _receive_file(self, spec: str) -> None:
        path, _, mode = spec.rpartition(",")  # adbd splits at the last comma (do_send_v1)
        target = self.conn.phone.device_path(path)
        error = None
        f = None
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            f = open(target, "wb")
        except OSError as exc:
            error = f"couldn't create file: {exc.strerror}"
        while True:
            ident, length = struct.unpack("<4sI", self._take(8))
            if ident == b"DATA":
                data = self._take(length)
                if f is not None and error is None:
                    if self.conn.phone.full:
                        error = "write failed: No space left on device"
                    else:
                        f.write(data)
            elif ident == b"DONE":
                break
            else:
                error = f"unexpected {ident!r} in SEND"
                break
        if f is not None:
            f.close()
        if error is None and self.conn.phone.full:
            error = "write failed: No space left on device"
        if error is not None:
            target.unlink(missing_ok=True)
            self._fail(error)
            return
        os.chmod(target, int(mode, 0) & 0o7777 if mode else 0o644)
        self.write(struct.pack("<4sI", b"OKAY", 0))


class _Connection(threading.Thread):
    _ids = itertools.count(1)

    def __init__(self, phone: LoopbackPhone, sock: socket.socket):
        super().__init__(daemon=True, name="loopback-conn")
        self.phone, self.sock = phone, sock
        self.max_payload = 4096
        self.streams: dict[int, _Stream] = {}
        self._send_lock = threading.Lock()
        self._closed = False

    def send(self, command: int, arg0: int, arg1: int, data: bytes = b"") -> None:
        with self._send_lock:
            if self._closed:
                raise OSError("connection closed")
            self.sock.sendall(_packet(command, arg0, arg1, data))

    def _recv_exact(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise _Closed()
            out += chunk
        return out

    def _read(self) -> tuple[int, int, int, bytes]:
        command, arg0, arg1, length, check, magic = _HEADER.unpack(self._recv_exact(_HEADER.size))
        data = self._recv_exact(length) if length else b""
        return command, arg0, arg1, data

    def forget(self, local_id: int) -> None:
        self.streams.pop(local_id, None)

    def close(self) -> None:
        with self._send_lock:
            self._closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        for s in list(self.streams.values()):
            s.host_closed()

    def _handshake(self) -> bool:
        phone = self.phone
        command, _, maxdata, _ = self._read()
        while command != A_CNXN:
            command, _, maxdata, _ = self._read()
        self.max_payload = max(1024, min(maxdata, MAX_PAYLOAD))
        if phone.require_auth:
            token = os.urandom(20)
            self.send(A_AUTH, AUTH_TOKEN, 0, token)
            while True:
                command, kind, _, data = self._read()
                if command != A_AUTH:
                    continue
                if kind == AUTH_SIGNATURE:
                    if phone._check_key(token, data):
                        break
                    token = os.urandom(20)
                    self.send(A_AUTH, AUTH_TOKEN, 0, token)
                elif kind == AUTH_RSAPUBLICKEY:
                    if not phone.accept_new_keys:
                        return False  # the user never taps "Allow": the host times out
                    phone._add_key(data)
                    break
        self.send(A_CNXN, A_VERSION, MAX_PAYLOAD, phone.banner())
        return True

    def run(self) -> None:
        try:
            if not self._handshake():
                while True:
                    self._read()
            while True:
                command, arg0, arg1, data = self._read()
                if command == A_OPEN:
                    service = data.rstrip(b"\0").decode(errors="surrogateescape")
                    local_id = next(self._ids)
                    if service.startswith("shell:"):
                        stream = _ShellStream(self, local_id, arg0, service[len("shell:"):])
                    elif service.startswith("sync:"):
                        stream = _SyncStream(self, local_id, arg0)
                    else:  # adbd refuses with CLSE (adb_shell then times out, as with a real phone)
                        self.send(A_CLSE, 0, arg0)
                        continue
                    self.streams[local_id] = stream
                    self.send(A_OKAY, local_id, arg0)
                    threading.Thread(target=stream.run, daemon=True, name=f"loopback-{service[:5]}").start()
                elif command == A_OKAY:
                    stream = self.streams.get(arg1)
                    if stream is not None:
                        stream.acked.set()
                elif command == A_WRTE:
                    stream = self.streams.get(arg1)
                    if stream is not None:
                        stream.feed(data)
                        self.send(A_OKAY, arg1, arg0)
                elif command == A_CLSE:
                    stream = self.streams.pop(arg1, None)
                    if stream is not None:
                        stream.host_closed()
                        self.send(A_CLSE, arg1, arg0)
        except (_Closed, OSError, struct.error):
            pass
        finally:
            self.close()


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
        path.write_text(f'#!/bin/sh\nexec {python} {TOOLS_DIR / (name + ".py")} "$@"\n')
        path.chmod(0o755)
        out[name] = path
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

