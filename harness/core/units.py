"""Numbers as people read them: every printed number carries its precision.

Three significant digits, or a unit that fits (microseconds under a millisecond), never "0.00" for a
12 microsecond median. Tables on disk (``summary.csv``) stay raw; these are for terminals and reports.
"""

from __future__ import annotations

import math

NS_PER_MS = 1e6  # records keep nanoseconds; tables and people read milliseconds
B_PER_MB = 1e6  # every MB splitbench prints or writes is SI: 10^6 bytes (not MiB)


def ns_to_ms(ns: float | int | None) -> float | None:
    """Nanoseconds (as records keep them) to milliseconds; None stays None."""
    return None if ns is None else float(ns) / NS_PER_MS


def b_to_mb(b: float | int | None) -> float | None:
    """Bytes to SI megabytes (10^6 bytes); None stays None."""
    return None if b is None else float(b) / B_PER_MB


def _missing(x: float | None) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def sig(x: float | None, digits: int = 3) -> str:
    """``x`` with ``digits`` significant digits, without scientific notation for ordinary magnitudes."""
    if _missing(x):
        return "—"
    if x == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(x)))
    if magnitude >= 6 or magnitude < -4:
        return f"{x:.{digits - 1}e}"
    decimals = max(digits - 1 - magnitude, 0)
    return f"{x:,.{decimals}f}" if magnitude >= 3 else f"{x:.{decimals}f}"


def _three_units(x: float | None, digits: int, small: str, unit: str, big: str) -> str:
    """``x`` (in ``unit``) in ``small`` (x 1000) under 1, in ``big`` (/ 1000) from 1000 on."""
    if _missing(x):
        return "—"
    if abs(x) < 1:
        return f"{sig(x * 1000, digits)} {small}"
    if abs(x) >= 1000:
        return f"{sig(x / 1000, digits)} {big}"
    return f"{sig(x, digits)} {unit}"


def fmt_ms(ms: float | None, digits: int = 3) -> str:
    """A duration given in milliseconds: ``12.3 µs``, ``4.56 ms``, ``1.23 s``."""
    return _three_units(ms, digits, "µs", "ms", "s")


def fmt_mb(mb: float | None, digits: int = 3) -> str:
    """A size given in MB (10^6 bytes): ``512 kB``, ``12.3 MB``, ``1.20 GB``."""
    return _three_units(mb, digits, "kB", "MB", "GB")


def fmt_bytes(n: float | None, digits: int = 3) -> str:
    """A byte count: ``640 B``, ``2.05 kB``, ``12.3 MB`` (SI)."""
    if _missing(n):
        return "—"
    if abs(n) < 1000:
        return f"{int(n)} B"
    return fmt_mb(n / B_PER_MB, digits)


def fmt_count(n: float | None, digits: int = 3) -> str:
    """A count such as parameters or MACs: ``640``, ``12.3 k``, ``4.56 M``, ``1.20 G`` (SI)."""
    if _missing(n):
        return "—"
    for scale, suffix in ((1e9, " G"), (1e6, " M"), (1e3, " k")):
        if abs(n) >= scale:
            return f"{sig(n / scale, digits)}{suffix}"
    return f"{int(n)}" if float(n).is_integer() else sig(n, digits)


def fmt_ratio(value: float | None, reference: float | None, digits: int = 3) -> str:
    """``value`` against ``reference`` as the papers print it: ``+44.0%``, ``−22.1%`` (DPFE, Osia et al.),
    or ``×12.3`` once the change passes +1000%. ``—`` when either is missing or the reference is 0."""
    if _missing(value) or _missing(reference) or reference == 0:
        return "—"
    ratio = value / reference
    if ratio >= 11:
        return f"×{sig(ratio, digits)}"
    change = (ratio - 1) * 100
    if change == 0:
        return "±0%"
    text = sig(abs(change), digits)
    return f"+{text}%" if change > 0 else f"\u2212{text}%"
