"""The device side of the ADB wire protocol for the loopback phone (``tests/loopback_adb.py``): one
connection per host (``adb-shell`` directly, or Google's ``adb`` server after ``adb connect``), its
streams and the services a real adbd offers our clients.

The protocol as AOSP's adbd speaks it (packages/modules/adb at GrapheneOS/platform_packages_modules_adb
@4d73d56b; notes in ``../shared/research/adb_ci_scaleout.md`` part A):

- messages (docs/dev/protocol.md): a 24-byte header (command, arg0, arg1, length, "checksum", magic)
  and the payload. The checksum is the payload's byte sum while the negotiated version is below
  ``A_VERSION_SKIP_CHECKSUM``, and 0 from it on (transport.cpp ``send_packet``): adb-shell announces
  0x01000000 and checks the sum, Google's adb announces 0x01000001;
- handshake: CNXN answered with CNXN carrying ``A_VERSION`` and the banner
  ``device::ro.product.name=..;ro.product.model=..;ro.product.device=..;features=..``
  (adb.cpp ``send_connect``, ``get_connection_string``), or AUTH first when the phone asks for a key;
- streams: OPEN answered with OKAY, one WRTE outstanding until the host's OKAY, every host WRTE
  acknowledged, a host CLSE answered with CLSE (sockets.cpp);
- ``shell[,arg,...]:<command>`` (daemon/services.cpp ``ShellService``): without ``v2`` the raw service,
  stdout and stderr merged, no exit code; with ``v2`` the shell protocol (shell_protocol.h): packets of
  a 1-byte id and a 4-byte length, stdout (1) and stderr (2) apart, the exit code (3, one byte:
  ``0x80 | signal`` for a signal, daemon/shell_service.cpp ``WaitForExit``), stdin (0) and close-stdin
  (4) from the host, window size (5) ignored (no pty here: ``pty`` runs as ``raw``);
- ``exec:<command>``: the raw service, always (services.cpp);
- stdin: the host's bytes go to the command's stdin (raw: the WRTE payloads; v2: stdin packets), which
  close-stdin (v2) or the host's CLSE closes, as adbd does;
- ``sync:`` (docs/dev/sync.md, daemon/file_sync_service.cpp): a byte stream across WRTEs carrying STAT,
  LIST (``.`` and ``..`` first, as ``readdir`` gives them to ``do_list``; DONE padded to a dent's 20
  bytes), RECV, SEND (+DATA/DONE) and QUIT.
"""

from __future__ import annotations

import itertools
import os
import queue
import socket
import struct
import threading

# -- wire constants (adb.h, protocol.md; the same values adb_shell/constants.py uses) -------------------
A_CNXN, A_AUTH, A_OPEN, A_OKAY, A_CLSE, A_WRTE = (int.from_bytes(c, "little") for c in
                                                  (b"CNXN", b"AUTH", b"OPEN", b"OKAY", b"CLSE", b"WRTE"))
A_VERSION_MIN, A_VERSION_SKIP_CHECKSUM = 0x01000000, 0x01000001
A_VERSION = A_VERSION_SKIP_CHECKSUM  # what adbd sends in its CNXN (adb.h)
MAX_PAYLOAD = 1024 * 1024
AUTH_TOKEN, AUTH_SIGNATURE, AUTH_RSAPUBLICKEY = 1, 2, 3
SYNC_DATA_MAX = 64 * 1024
# shell protocol ids (shell_protocol.h)
ID_STDIN, ID_STDOUT, ID_STDERR, ID_EXIT, ID_CLOSE_STDIN, ID_WINDOW_SIZE = 0, 1, 2, 3, 4, 5
HEADER = struct.Struct("<6I")


def packet(command: int, arg0: int, arg1: int, data: bytes = b"", checksum: bool = True) -> bytes:
    check = sum(data) & 0xFFFFFFFF if checksum else 0
    return HEADER.pack(command, arg0, arg1, len(data), check, command ^ 0xFFFFFFFF) + data


class Closed(Exception):
    pass


class Stream:
    def __init__(self, conn: "Connection", local_id: int, remote_id: int):
        self.conn, self.local_id, self.remote_id = conn, local_id, remote_id
        self.acked = threading.Event()
        self.closed = threading.Event()
        self.write_lock = threading.Lock()

    def write(self, data: bytes) -> None:
        """WRTEs of at most the negotiated payload, each waiting for the host's OKAY."""
        with self.write_lock:
            for i in range(0, len(data), self.conn.max_payload):
                if self.closed.is_set():
                    raise Closed()
                self.acked.clear()
                self.conn.send(A_WRTE, self.local_id, self.remote_id, data[i:i + self.conn.max_payload])
                while not self.acked.wait(0.5):
                    if self.closed.is_set():
                        raise Closed()

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


class ShellStream(Stream):
    """``shell:``, ``shell,v2,...:`` and ``exec:``: the command under the phone's ``sh``."""

    def __init__(self, conn, local_id, remote_id, command: str, protocol: bool):
        super().__init__(conn, local_id, remote_id)
        self.command, self.protocol = command, protocol
        self.stdin: queue.Queue[bytes | None] = queue.Queue()
        self.pending = b""

    def feed(self, data: bytes) -> None:
        if not self.protocol:
            self.stdin.put(data)
            return
        self.pending += data
        while len(self.pending) >= 5:
            kind, length = self.pending[0], struct.unpack("<I", self.pending[1:5])[0]
            if len(self.pending) < 5 + length:
                return
            body, self.pending = self.pending[5:5 + length], self.pending[5 + length:]
            if kind == ID_STDIN:
                self.stdin.put(body)
            elif kind == ID_CLOSE_STDIN:
                self.stdin.put(None)

    def host_closed(self) -> None:
        super().host_closed()
        self.stdin.put(None)

    def _send(self, kind: int, data: bytes) -> None:
        self.write(struct.pack("<BI", kind, len(data)) + data if self.protocol else data)

    def _pump_stdin(self, proc) -> None:
        try:
            while (data := self.stdin.get()) is not None:
                proc.stdin.write(data)
                proc.stdin.flush()
        except (OSError, ValueError):
            pass
        finally:
            try:
                proc.stdin.close()
            except OSError:
                pass

    def _pump_output(self, fd: int, kind: int) -> None:
        try:
            while chunk := os.read(fd, 65536):
                self._send(kind, chunk)
        except (Closed, OSError):
            pass

    def run(self) -> None:
        proc = self.conn.phone.run_shell(self.command, separate_stderr=self.protocol)
        threading.Thread(target=self._pump_stdin, args=(proc,), daemon=True, name="loopback-stdin").start()
        readers = [threading.Thread(target=self._pump_output, args=(proc.stdout.fileno(), ID_STDOUT), daemon=True)]
        if self.protocol:
            readers.append(threading.Thread(target=self._pump_output, args=(proc.stderr.fileno(), ID_STDERR),
                                            daemon=True))
        for r in readers:
            r.start()
        for r in readers:
            r.join()
        # As adbd: the host's side went away or the command ended; our ends of the pipes close, so a
        # shell still writing gets SIGPIPE, while background jobs with their own files go on.
        for f in (proc.stdout, proc.stderr):
            if f is not None:
                f.close()
        try:
            if self.closed.is_set():
                return
            code = proc.wait()
            try:
                if self.protocol:
                    self._send(ID_EXIT, bytes([0x80 | -code if code < 0 else code & 0xFF]))
            except (Closed, OSError):
                pass
            self.close_from_device()
        finally:
            # The command is over (or the host left): the stdin pump ends and closes our end of its pipe. Without
            # this a stream the device closed kept a pipe and a thread for the rest of the test session.
            self.stdin.put(None)


class SyncStream(Stream):
    """The file-sync service: a byte stream across WRTEs (adb_shell packs several requests in one)."""

    def __init__(self, conn, local_id, remote_id):
        super().__init__(conn, local_id, remote_id)
        self.buffer = b""
        self.cond = threading.Condition()

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
                    raise Closed()
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
                    self._list(phone.device_path(path))
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
        except (Closed, OSError):
            pass
        finally:
            if not self.closed.is_set():
                self.close_from_device()

    def _list(self, d) -> None:
        out = b""
        names = [".", ".."] + sorted(os.listdir(d)) if d.is_dir() else []
        for name in names:
            try:
                st = os.lstat(d / name)
            except OSError:
                continue
            raw = name.encode(errors="surrogateescape")
            out += struct.pack("<4s4I", b"DENT", st.st_mode & 0xFFFFFFFF, st.st_size & 0xFFFFFFFF,
                               int(st.st_mtime), len(raw)) + raw
        self.write(out + struct.pack("<4s4I", b"DONE", 0, 0, 0, 0))

    def _fail(self, message: str) -> None:
        raw = message.encode()
        self.write(struct.pack("<4sI", b"FAIL", len(raw)) + raw)

    def _receive_file(self, spec: str) -> None:
        path, _, mode = spec.rpartition(",")  # adbd splits at the last comma (do_send_v1)
        phone = self.conn.phone
        target = phone.device_path(path)
        error = None
        f = None
        try:
            target.parent.mkdir(parents=True, exist_ok=True)  # fixed_push_mkdir
            f = open(target, "wb")
        except OSError as exc:
            error = f"couldn't create file: {exc.strerror}"
        while True:
            ident, length = struct.unpack("<4sI", self._take(8))
            if ident == b"DATA":
                data = self._take(length)
                if f is not None and error is None:
                    if phone.full:
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
        if error is None and phone.full:
            error = "write failed: No space left on device"
        if error is not None:
            target.unlink(missing_ok=True)
            self._fail(error)
            return
        os.chmod(target, int(mode, 0) & 0o7777 if mode else 0o644)
        self.write(struct.pack("<4sI", b"OKAY", 0))


class Connection(threading.Thread):
    _ids = itertools.count(1)

    def __init__(self, phone, sock: socket.socket):
        super().__init__(daemon=True, name="loopback-conn")
        self.phone, self.sock = phone, sock
        self.max_payload = 4096
        self.version = A_VERSION_MIN
        self.streams: dict[int, Stream] = {}
        self._send_lock = threading.Lock()
        self._closed = False

    def send(self, command: int, arg0: int, arg1: int, data: bytes = b"") -> None:
        with self._send_lock:
            if self._closed:
                raise OSError("connection closed")
            self.sock.sendall(packet(command, arg0, arg1, data, checksum=self.version < A_VERSION_SKIP_CHECKSUM))

    def _recv_exact(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise Closed()
            out += chunk
        return out

    def _read(self) -> tuple[int, int, int, bytes]:
        command, arg0, arg1, length, check, magic = HEADER.unpack(self._recv_exact(HEADER.size))
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
        command, version, maxdata, _ = self._read()
        while command != A_CNXN:
            command, version, maxdata, _ = self._read()
        self.version = min(version, A_VERSION)  # transport.cpp update_version
        self.max_payload = max(1024, min(maxdata, MAX_PAYLOAD))
        if phone.require_auth:
            token = os.urandom(20)
            self.send(A_AUTH, AUTH_TOKEN, 0, token)
            while True:
                command, kind, _, data = self._read()
                if command != A_AUTH:
                    continue
                if kind == AUTH_SIGNATURE:
                    if phone.check_key(token, data):
                        break
                    token = os.urandom(20)
                    self.send(A_AUTH, AUTH_TOKEN, 0, token)
                elif kind == AUTH_RSAPUBLICKEY:
                    if not phone.accept_new_keys:
                        return False  # the user never taps "Allow": the host times out
                    phone.add_key(data)
                    break
        self.send(A_CNXN, A_VERSION, MAX_PAYLOAD, phone.banner())
        return True

    def _open(self, service: str, remote_id: int) -> None:
        local_id = next(self._ids)
        if service.startswith("shell"):
            args, sep, command = service[len("shell"):].partition(":")
            if not sep or (args and not args.startswith(",")):
                self.send(A_CLSE, 0, remote_id)
                return
            stream: Stream = ShellStream(self, local_id, remote_id, command, protocol="v2" in args.split(","))
        elif service.startswith("exec:"):
            stream = ShellStream(self, local_id, remote_id, service[len("exec:"):], protocol=False)
        elif service.startswith("sync:"):
            stream = SyncStream(self, local_id, remote_id)
        else:  # adbd refuses with CLSE (adb_shell then times out, as with a real phone)
            self.send(A_CLSE, 0, remote_id)
            return
        self.streams[local_id] = stream
        self.send(A_OKAY, local_id, remote_id)
        threading.Thread(target=stream.run, daemon=True, name=f"loopback-{service[:5]}").start()

    def run(self) -> None:
        try:
            if not self._handshake():
                while True:
                    self._read()
            while True:
                command, arg0, arg1, data = self._read()
                if command == A_OPEN:
                    self._open(data.rstrip(b"\0").decode(errors="surrogateescape"), arg0)
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
        except (Closed, OSError, struct.error):
            pass
        finally:
            self.close()
