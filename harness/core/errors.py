"""The one user-error type: caught once in the CLI and printed as one line."""

import errno


class UserError(Exception):
    """Bad input (spec, file, option). The message says what to fix; the CLI exits with ``exit_code``.

    Subclasses that are not the user's input but the situation (a busy directory, a full disk, a device
    that cannot be reached) carry exit codes of their own (see :mod:`harness.core.exitcodes`).
    """

    exit_code = 1  # harness.core.exitcodes.USAGE


def why_not_written(exc: OSError) -> str:
    """An OSError of a write in words: the disk is full, the file system is read-only, ..."""
    return {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exhausted",
            errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
            errno.EPERM: "permission denied", errno.EISDIR: "a directory of that name is in the way",
            errno.ENOTDIR: "a file is in the way of its directory"}.get(exc.errno, exc.strerror or str(exc))


class WriteFailed(UserError):
    """A directory splitbench must write cannot be written (full disk, read-only, no permission, something in
    the way): one line naming it and the fix. What was already written is whole."""

    exit_code = 6  # harness.core.exitcodes.WRITE_FAILED
