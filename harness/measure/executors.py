"""Executors: who runs the planned jobs, and where. The orchestrator writes every result itself.

- ``serial`` (the default): one job at a time, in plan order, in the calling thread.
- ``devices``: every device attached to this host at the same time, one job per device at a time
  (a thread per device session; agents are not shared between threads).
- ``ray``: many hosts (:mod:`harness.measure.lab.driver`, an optional extra).

Every executor opens one agent session per device (``with open_agent(target)``), holds the device's
lease for the whole run (two runs on one host never measure on the same CPU or phone at once),
prepares each artifact once per device and content key, checks every result against the contract,
and reports a device that went away as one ``lost`` event: that device's remaining jobs are not
attempted, and no other device is touched. A job is never moved to another device.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from typing import Any, Callable, Iterator

from device_agents.base import DeviceInfo, DeviceUnavailable, open_agent
from harness.measure.session import DeviceUnreachable, Event, Session, device_options, say_stderr
from harness.results import store
from harness.core.errors import UserError
from harness.config.spec import Spec
from harness.core.clock import utc_now


class Executor:
    """The serial executor, and the base of the others: sessions, leases, and the job loop of one device."""

    parallel = 1

    def __init__(self, spec: Spec, *, lease_timeout_s: float | None = None):
        self.spec = spec
        self.sessions: dict[str, Session] = {}  # spec target -> session
        self._stack = contextlib.ExitStack()
        self._stop = threading.Event()
        self.lease_timeout_s = lease_timeout_s
        # Check every target name before anything is opened: an unknown one is one line, before any work.
        self.agents = {t: open_agent(t, **device_options(spec, t)) for t in spec.run.targets}

    def open_devices(self) -> dict[str, DeviceInfo]:
        """Open every device's session and take its lease; spec target -> DeviceInfo."""
        seen: dict[str, str] = {}
        for target, agent in self.agents.items():
            try:
                self._stack.enter_context(agent)
                info = agent.describe()
            except DeviceUnavailable as exc:
                raise DeviceUnreachable(f"{target} is unavailable: {exc.reason}; make it available (or remove it "
                                        "from [run].targets) and run again") from None
            if info.device_id in seen:
                raise UserError(f"targets {seen[info.device_id]} and {target} are the same device "
                                f"({info.device_id}); list it once")
            seen[info.device_id] = target
            self._stack.enter_context(store.device_lease(info.device_id, say=say_stderr,
                                                         timeout_s=self.lease_timeout_s))
            self.sessions[target] = Session(target, agent, info)
        return {t: s.info for t, s in self.sessions.items()}

    def device_jobs(self, session: Session, jobs: list, start: Callable[[str], None]) -> Iterator[Event]:
        """Run one device's jobs in order; stop at the first DeviceUnavailable (one lost event)."""
        for i, job in enumerate(jobs):
            if self._stop.is_set():
                return
            start(job.label)
            started_at, t0 = utc_now(), time.monotonic()
            try:
                result, mjob = session.measure(job)
            except DeviceUnavailable as exc:
                yield Event(session.info.device_id, lost=exc.reason, left=len(jobs) - i)
                return
            yield Event(session.info.device_id, job=job, result=result, measure_job=mjob, started_at=started_at,
                        duration_s=time.monotonic() - t0)

    def _by_session(self, jobs: list) -> list[tuple[Session, list]]:
        return [(s, [j for j in jobs if j.spec_target == t]) for t, s in self.sessions.items()]

    def run(self, jobs: list, *, say: Callable[[str], None], start: Callable[[str], None]) -> Iterator[Event]:
        """Serial: the jobs in plan order (configuration-major across devices), a lost device skipped."""
        gone: set[str] = set()
        for i, job in enumerate(jobs):
            session = self.sessions[job.spec_target]
            if session.info.device_id in gone:
                continue
            if self._stop.is_set():
                return
            for event in self.device_jobs(session, [job], start):
                if event.lost is not None:
                    gone.add(event.device_id)
                    event.left = sum(1 for j in jobs[i:] if j.spec_target == job.spec_target)
                yield event

    def describe(self) -> dict[str, Any]:
        """For the manifest: which executor ran the jobs (a cluster's also says where each device was)."""
        return {"name": "serial"}

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        """Close every session (agents undo what they changed on the device) and release the leases."""
        self._stop.set()
        self._stack.close()


class DevicesExecutor(Executor):
    """Every device of this host at the same time: one thread per device session, one job per device at a
    time. Results come back through a queue to the one writer (the orchestrator's thread)."""

    @property
    def parallel(self) -> int:  # type: ignore[override]
        return max(len(self.sessions), 1)

    def describe(self) -> dict[str, Any]:
        return {"name": "devices"}

    def run(self, jobs: list, *, say: Callable[[str], None], start: Callable[[str], None]) -> Iterator[Event]:
        results: queue.Queue = queue.Queue()
        done = object()

        def drive(session: Session, mine: list) -> None:
            try:
                for event in self.device_jobs(session, mine, lambda label: None):
                    results.put(event)
            except BaseException as exc:  # noqa: BLE001 - handed to the writer's thread, raised there
                results.put(exc)
            finally:
                results.put(done)

        threads = [threading.Thread(target=drive, args=(s, mine), name=f"device {s.info.device_id}", daemon=True)
                   for s, mine in self._by_session(jobs) if mine]
        self._threads = threads
        for t in threads:
            t.start()
        running = len(threads)
        while running:
            item = results.get()
            if item is done:
                running -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield item

    def close(self) -> None:
        self._stop.set()
        self._stack.close()  # agents closed: a job in flight ends at once (its result is not written)
        for t in getattr(self, "_threads", []):
            t.join(timeout=30)
