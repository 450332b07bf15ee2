"""The results directory on disk: atomic files, records, one writer at a time, one run per device.

- Every file is written to a temporary name and renamed (``os.replace``), so a reader (or a crash)
  sees the old file or the new one, never half of one; files get the user's umask, like any other.
- ``DIR/records/<record_key>.json``: one record per job, written the moment it finishes.
- A results directory has one writer: :class:`ResultsLock` (``fcntl.flock`` on ``DIR/.splitbench.lock``)
  is held for a whole run; a second run into the same directory is refused with one line.
- A device is measured by one run at a time: :func:`device_lease` holds a lock per device id in a
  host-wide directory, and a second run waits for it (saying so), so two runs on one host never
  measure on the same CPU or phone at once.
- A full disk or a read-only directory is one :class:`ResultsWriteError` line; every record already
  written stays valid (it was renamed into place whole).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from harness.core import exitcodes
from harness.config.backends import rank
from harness.config.spec import PRECISIONS
from harness.core.errors import UserError, WriteFailed, why_not_written
from harness.core.text import visible
from harness.results.records import ResultRecord
from harness.results.layout import LOCK_FILE, RECORDS_DIR, RETRIED_DIR



def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_current_umask()  # what open() would give: mkstemp alone gives 0600


class ResultsWriteError(WriteFailed):
    """The results directory cannot be written (full, read-only, no permission). One line; the records
    already on disk are whole."""

    exit_code = exitcodes.WRITE_FAILED


RUN_FIX = ("every record already written is intact: free space (or choose a writable --out) and finish with "
           "--resume")


def _write_error(path: Path, exc: OSError, fix: str = RUN_FIX) -> ResultsWriteError:
    return ResultsWriteError(f"cannot write {visible(path)}: {why_not_written(exc)}; {fix}")


def atomic_write_bytes(path: Path, data: bytes, *, fix: str = RUN_FIX) -> None:
    """Write ``path`` so a reader sees the old file or the new one, never a half-written one.

    An OSError from the file system (full, read-only) is raised as :class:`ResultsWriteError`, whose line ends
    with ``fix`` (default: a run's, finish with --resume).
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), _FILE_MODE)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise _write_error(path, exc, fix) from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n").encode())


def record_path(out: str | Path, record_key: str) -> Path:
    return Path(out) / RECORDS_DIR / f"{record_key}.json"


def write_record(out: str | Path, record: ResultRecord) -> Path:
    """Write one record atomically as ``out/records/<record_key>.json``; returns its path."""
    path = record_path(out, record.record_key)
    atomic_write_json(path, record.to_dict())
    return path


def keep_retried(out: str | Path, record_key: str) -> Path | None:
    """Move an earlier record of the same job (a failure being retried) to ``records/retried/``."""
    old = record_path(out, record_key)
    if not old.is_file():
        return None
    kept = old.parent / RETRIED_DIR / f"{record_key}-{time.strftime('%Y%m%dT%H%M%S')}-{time.time_ns() % 10**9}.json"
    try:
        kept.parent.mkdir(parents=True, exist_ok=True)
        os.replace(old, kept)
    except OSError as exc:
        raise _write_error(kept, exc) from None
    return kept


def read_record(path: Path) -> ResultRecord:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: not a readable result record ({exc}); delete it and run with --resume") from None
    try:
        return ResultRecord.from_dict(data)
    except (KeyError, TypeError) as exc:
        raise UserError(f"{path}: not a result record of this splitbench ({type(exc).__name__}: {exc}); "
                        "delete it and run with --resume") from None


def load_records(out: str | Path, *, latest_only: bool = False) -> list[ResultRecord]:
    """Every record under ``out/records``, in model order (configuration, backend, target, device).

    With ``latest_only``, one record per identity (see :class:`harness.results.records.Identity`): the last
    finished. A results directory keeps every record it was given (a resumed run with more runs adds
    one); the tables show the newest per identity, and never merge or hide records whose identities differ
    (two phones with the same target are two rows).
    """
    folder = Path(out) / RECORDS_DIR
    if not folder.is_dir():
        return []
    records = [read_record(p) for p in sorted(folder.glob("*.json")) if not p.name.startswith(".")]
    if latest_only:
        records = list(newest_per_identity(records).values())
    return sorted(records, key=model_order)


def newest_per_identity(records: list[ResultRecord]) -> dict[tuple, ResultRecord]:
    """The last finished record of each identity, by :meth:`harness.results.records.Identity.key`."""
    newest: dict[tuple, ResultRecord] = {}
    for r in sorted(records, key=lambda r: r.finished_at):
        newest[r.identity.key()] = r
    return newest


def model_order(r: ResultRecord) -> tuple:
    """Model order: configuration, precision (float32 first), backend, target, device."""
    precision = PRECISIONS.index(r.precision) if r.precision in PRECISIONS else len(PRECISIONS)
    return (r.model, r.order, precision, r.precision, rank(r.backend), r.backend, r.target, r.device_id,
            r.accelerator)


# --------------------------------------------------------------------------------------------------
# One writer per results directory


class ResultsBusy(UserError):
    """Another run holds the results directory or the device."""

    exit_code = exitcodes.BUSY


class ResultsLock:
    """An exclusive lock on a results directory for the whole of one run (``fcntl.flock``, released by the
    kernel if the process dies). Acquiring it when another run holds it raises :class:`ResultsBusy`."""

    def __init__(self, out: Path):
        self.path = Path(out) / LOCK_FILE
        self._fd: int | None = None

    def __enter__(self) -> "ResultsLock":
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, _FILE_MODE)
        except OSError as exc:
            raise _write_error(self.path, exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise ResultsBusy(f"{self.path.parent} is being written by another splitbench run ({holder}); wait for "
                              "it to finish or choose another --out") from None
        _write_holder(fd)
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _write_holder(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}: "
                      f"{' '.join(sys.argv[:4])}".encode(), 0)


def _read_holder(fd: int) -> str:
    with contextlib.suppress(OSError):
        text = os.pread(fd, 500, 0).decode(errors="replace").strip()
        if text:
            return text
    return "pid unknown"


# --------------------------------------------------------------------------------------------------
# One run per device


def lease_dir() -> Path:
    """Where device leases live on this host: ``$SPLITBENCH_LEASE_DIR``, else a per-user runtime directory."""
    base = os.environ.get("SPLITBENCH_LEASE_DIR")
    if base:
        return Path(base)
    runtime = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    return Path(runtime) / f"splitbench-leases-{os.getuid()}"


@contextlib.contextmanager
def device_lease(device_id: str, *, say: Callable[[str], None] | None = None,
                 timeout_s: float | None = None, poll_s: float = 0.5) -> Iterator[None]:
    """Hold the host-wide lease of ``device_id`` while the block runs; wait (saying so once) while another
    run holds it. ``timeout_s`` None waits as long as it takes; else :class:`ResultsBusy` after it."""
    folder = lease_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (re.sub(r"[^A-Za-z0-9._-]", "_", device_id) + ".lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        start = time.monotonic()
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if timeout_s is not None and time.monotonic() - start > timeout_s:
                    raise ResultsBusy(f"device {device_id} is in use by another run ({_read_holder(fd)})") from None
                if not told and say is not None:
                    say(f"waiting for device {device_id}: another run is measuring on it ({_read_holder(fd)})")
                    told = True
                time.sleep(poll_s)
        _write_holder(fd)
        yield
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
