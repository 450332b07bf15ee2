"""The exit codes of every splitbench command, in one place (README and ``--help`` list them).

They never collide: a usage error does not exit like a failed configuration, and "nothing fits the
budget" does not exit like bad input. 1 is also what Python exits with on an unexpected error, but
``main()`` catches those and exits ``INTERNAL`` (70, sysexits' EX_SOFTWARE) with the traceback.
"""

OK = 0
USAGE = 1  # bad input or usage: an unknown option or command, an invalid spec, a missing file (one line)
CONFIG_FAILED = 2  # the run finished, but some configuration failed: its row says why
NOTHING_FITS = 3  # recommend: no configuration fits the budget (one line names the closest)
DEVICE_LOST = 4  # a device became unavailable: its finished records are kept; --resume when it is back
BUSY = 5  # the results directory (or the device) is held by another run
WRITE_FAILED = 6  # the results directory cannot be written (full disk, read-only); written records are intact
REGRESSION = 7  # compare: a regression was found
NOT_COMPARABLE = 8  # compare: nothing could be compared
INTERNAL = 70  # a bug in splitbench: the traceback is printed
INTERRUPTED = 130  # Ctrl-C: everything finished is on disk; --resume completes the run

TABLE = (
    (OK, "success"),
    (USAGE, "usage error or bad input (one line says what to fix)"),
    (CONFIG_FAILED, "some configuration failed (its row says why; the rest was measured)"),
    (NOTHING_FITS, "recommend: nothing fits the budget"),
    (DEVICE_LOST, "a device was lost mid-run (finished records kept; --resume when it is back)"),
    (BUSY, "the results directory or device is in use by another run"),
    (WRITE_FAILED, "the results directory cannot be written (full or read-only)"),
    (REGRESSION, "compare: a regression was found"),
    (NOT_COMPARABLE, "compare: nothing comparable"),
    (INTERNAL, "internal error (a bug; the traceback is printed)"),
    (INTERRUPTED, "interrupted (finish with --resume)"),
)


def describe() -> str:
    """One line per code, for --help and the README."""
    return "; ".join(f"{code} {what}" for code, what in TABLE)
