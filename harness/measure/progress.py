"""What a run shows while it measures: one line per finished job above a progress bar with the time left."""

from __future__ import annotations

from harness.core.text import markup, visible
from harness.core.units import fmt_ms
from harness.results.records import SKIPPED, ResultRecord
from harness.results.stats import compute_stats
from harness.results.tables import short_reason


class Progress:
    """A rich progress bar on stderr with the time left estimated from the jobs finished so far."""

    def __init__(self, total: int, enabled: bool):
        from rich.console import Console

        self.console = Console(stderr=True, highlight=False)
        self.enabled = enabled and total > 0
        self.total = total
        self.durations: list[float] = []
        self._bar = None
        self._task = None

    def __enter__(self) -> "Progress":
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeElapsedColumn

            self._bar = Bar(TextColumn("measuring"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            TextColumn("{task.fields[left]}"), TextColumn("{task.description}"),
                            console=self.console, transient=True)
            self._bar.__enter__()
            self._task = self._bar.add_task("", total=self.total, left="time left: estimating")
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def say(self, line: str) -> None:
        """One line above the bar, as text: a name holding markup, an escape or a bidi override is shown, not obeyed."""
        self.console.print(visible(line), markup=False, soft_wrap=True)

    def start(self, label: str) -> None:
        if self._bar is not None:
            self._bar.update(self._task, description=markup(label))

    def done(self, line: str, duration_s: float | None, remaining_measured: int, parallel: int = 1) -> None:
        """One finished job: its line above the bar; the estimate is the mean duration of measured jobs."""
        if duration_s is not None:
            self.durations.append(duration_s)
        self.say(line)
        if self._bar is not None:
            left = "time left: estimating"
            if self.durations:
                secs = sum(self.durations) / len(self.durations) * remaining_measured / max(parallel, 1)
                left = f"time left ~{fmt_clock(secs)}"
            self._bar.update(self._task, advance=1, left=left)


def fmt_clock(secs: float) -> str:
    """Seconds as a clock: ``4:05``, or ``1:02:03`` from an hour on."""
    secs = int(round(secs))
    return f"{secs // 3600}:{secs // 60 % 60:02d}:{secs % 60:02d}" if secs >= 3600 else f"{secs // 60}:{secs % 60:02d}"


def job_line(record: ResultRecord, spec_target: str, note: str = "") -> str:
    """One finished job as a line: configuration, backend, target, median inference, status and warnings."""
    s = compute_stats(record)
    median = fmt_ms(s.infer_ms_median) if s.infer_ms_median is not None else "—"
    status = record.status if record.ok else f"{record.status}: {short_reason(record.reason, 90)}"
    if s.timing_kind == "aggregate":
        status += " (the tool's aggregate, not samples)"
    if record.status == SKIPPED:
        status = short_reason(record.reason, 90)
    warn = f"  [{', '.join(w.code for w in s.warnings)}]" if s.warnings else ""
    name = record.config + "".join(f" {v}" for v, default in ((record.precision, "float32"),
                                                              (record.accelerator, "cpu")) if v != default)
    return (f"{visible(name):<22s} {visible(record.backend):<10s} {visible(spec_target):<18s} {median:>12s}  "
            f"{visible(status)}{warn}{note}")
