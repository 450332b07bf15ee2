"""Transport to a worker that runs as a local process: start it, move lines, kill it.

The worker gets an explicit command line and an explicit environment (never the orchestrator's
thread settings by accident), and talks back over a dedicated pipe passed as an inherited file
descriptor, so a runtime that prints to stdout can never corrupt a message. Its stdout and stderr
go to a temporary file whose tail is kept for failed rows. The worker leads its own process group:
on any error or at the end, the whole group (the worker and every child it forked) is killed.
An adb transport will offer the same methods over ``adb shell``.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Thread-count variables understood by the libraries a runtime may pull in. Set to 1 in the
# worker's environment so no library sizes a thread pool from the machine's CPU count.
SINGLE_THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "VECLIB_MAXIMUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
    "BLIS_NUM_THREADS": "1",
    "TF_NUM_INTRAOP_THREADS": "1",
    "TF_NUM_INTEROP_THREADS": "1",
    "TFLITE_NUM_THREADS": "1",
    "XNNPACK_NUM_THREADS": "1",
    "TORCH_NUM_THREADS": "1",
    "ORT_NUM_THREADS": "1",
}
# glibc raises its mmap threshold each time a large mmapped block is freed, so where a runtime's big
# allocations land (and so how much resident memory a load adds) would depend on what the worker did
# before. A fixed threshold makes every child start from the same rules, whatever ran before it.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072"}
# Kept from the host's environment: what Python and the dynamic loader need to find things.
PASSED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "VIRTUAL_ENV", "LD_LIBRARY_PATH", "PYTHONPATH")
REPO_ROOT = Path(__file__).resolve().parents[2]


class TransportTimeout(Exception):
    """No complete message arrived before the deadline."""


class TransportClosed(Exception):
    """The worker closed its channel (it exited or was killed)."""


def worker_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The worker's whole environment: a few host variables, single-thread settings, the repo."""
    env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    env.update(SINGLE_THREAD_ENV)
    env["PYTHONHASHSEED"] = "0"
    env["PYTHONUNBUFFERED"] = "1"
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env.update(MALLOC_ENV)
    if sys.platform == "darwin":  # Core ML is used in children forked after its import
        env["OBJC_DISABLE_INITIALIZE_FORK_SAFETY"] = "YES"
    env.update(extra or {})
    return env


class LocalProcessTransport:
    """A worker started as ``python -m <module> --channel-fd N <args>`` in its own process group."""

    def __init__(self, module: str, args: list[str], env: dict[str, str] | None = None,
                 python: str = sys.executable):
        self.module, self.args, self.python = module, list(args), python
        self.env = worker_env() if env is None else env
        self.proc: subprocess.Popen | None = None
        self._read_fd: int | None = None
        self._buffer = b""
        self._log = tempfile.NamedTemporaryFile(prefix="splitbench-worker-", suffix=".log", delete=False)

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        read_fd, write_fd = os.pipe()
        argv = [self.python, "-m", self.module, "--channel-fd", str(write_fd), *self.args]
        try:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=self._log, stderr=self._log, env=self.env,
                cwd=str(REPO_ROOT), pass_fds=(write_fd,), close_fds=True, start_new_session=True,
            )
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)  # only the worker holds the write end: EOF means it is gone
        self._read_fd = read_fd

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def kill(self) -> None:
        """SIGKILL the worker's whole process group (the worker and its forked children).

        Done before the worker is reaped: while it is a zombie its process-group id cannot be
        reused, so the signal cannot reach an unrelated group.
        """
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def wait_exit(self, timeout_s: float) -> int | None:
        """The worker's exit status (negative: killed by that signal), or None if still running."""
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def close(self) -> None:
        """Kill whatever is left of the worker's group, reap it, release the pipe and the log."""
        self.kill()
        if self.proc is not None:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL does not wait
                pass
            if self.proc.stdin:
                try:
                    self.proc.stdin.close()
                except (OSError, ValueError):
                    pass
        if self._read_fd is not None:
            os.close(self._read_fd)
            self._read_fd = None
        self._log.close()
        Path(self._log.name).unlink(missing_ok=True)

    def __enter__(self) -> "LocalProcessTransport":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- data -----------------------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        """Write one message to the worker's stdin (it stays open for the next one)."""
        assert self.proc is not None and self.proc.stdin is not None
        try:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass  # the worker died before reading; the channel's EOF reports it

    def finish(self, timeout_s: float = 10.0) -> None:
        """Close the worker's stdin (no more jobs) and give it ``timeout_s`` to exit before the kill."""
        if self.proc is None:
            return
        if self.proc.stdin and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except BrokenPipeError:
                pass
        self.wait_exit(timeout_s)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def receive_line(self, deadline: float) -> bytes:
        """The next line from the channel, waiting until ``deadline`` (time.monotonic())."""
        assert self._read_fd is not None
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TransportTimeout()
            # poll, not select: a process with more than 1024 open files (a long-lived host) would break select
            poller = select.poll()
            poller.register(self._read_fd, select.POLLIN | select.POLLHUP | select.POLLERR)
            if not poller.poll(max(remaining * 1000, 0)):
                raise TransportTimeout()
            chunk = os.read(self._read_fd, 1 << 16)
            if not chunk:
                raise TransportClosed()
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line

    def log_offset(self) -> int:
        """Where the worker's output log ends now (a job's tail starts there)."""
        try:
            return os.path.getsize(self._log.name)
        except OSError:
            return 0

    def stderr_tail(self, max_bytes: int = 4000, since: int = 0) -> str:
        """The last bytes the worker wrote to stdout/stderr (after offset ``since``)."""
        try:
            with open(self._log.name, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(since, f.tell() - max_bytes))
                return f.read().decode(errors="replace")
        except OSError:
            return ""
