"""One device's session in a run, and what an executor hands back: what the serial and devices executors and a
lab's device host share (so a device host never imports the executors or the Ray driver).

A :class:`Session` is one device's agent, opened and leased, with the artifacts already placed on it: it
prepares each artifact once per content key, measures, and checks every result against the contract (a
failure of the job is a row; a device that went away raises :class:`~device_agents.base.DeviceUnavailable`).
"""

from __future__ import annotations

import dataclasses
import sys
import traceback
from dataclasses import dataclass
from typing import Any, Callable

from device_agents.base import (FAILED, ArtifactRef, ContractError, DeviceAgent, DeviceInfo, DeviceUnavailable,
                                MeasureJob, MeasureResult, target_platform)
from harness.config.spec import Spec
from harness.core import exitcodes
from harness.core.errors import UserError


class DeviceUnreachable(UserError):
    """A device named by the spec cannot be reached when the run starts."""

    exit_code = exitcodes.DEVICE_LOST


@dataclass
class Event:
    """What an executor hands back: a finished job, or a device that went away."""

    device_id: str
    job: Any = None  # harness.orchestrate.Job
    result: MeasureResult | None = None
    measure_job: MeasureJob | None = None
    started_at: str = ""
    duration_s: float | None = None
    lost: str | None = None  # why the device is gone (None for a finished job)
    left: int = 0  # jobs of that device never attempted



def device_options(spec: Spec, target: str) -> dict[str, Any]:
    """The spec's ``[android]`` / ``[ios]`` table for a target of that platform (the agent validates it)."""
    return dict(spec.devices.get(target_platform(target), {}))


def say_stderr(line: str) -> None:
    """One line on stderr at once (what executors print outside the progress bar)."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


class Session:
    """One device's agent session in a run: opened, leased, with the artifacts already placed on it."""

    def __init__(self, spec_target: str, agent: DeviceAgent, info: DeviceInfo):
        self.spec_target, self.agent, self.info = spec_target, agent, info
        self.prepared: dict[str, str] = {}  # artifact content key -> the path the device loads

    def measure(self, job) -> tuple[MeasureResult, MeasureJob | None]:
        """Prepare (once per content key) and measure one job. A failure of the job is a result; a device
        that went away raises DeviceUnavailable; Ctrl-C propagates."""
        return self.measure_artifact(job.artifact.key, job.artifact.ref, job.job)

    def measure_artifact(self, key: str, ref: Callable[[], ArtifactRef],
                         job: MeasureJob) -> tuple[MeasureResult, MeasureJob | None]:
        """:meth:`measure` from the artifact's content key, a function giving its :class:`ArtifactRef` (called
        only on the first use of that key) and the job: what a device host runs for a remote driver."""
        try:
            path = self.prepared.get(key)
            if path is None:
                path = self.agent.prepare(ref())
                self.prepared[key] = path
            mjob = dataclasses.replace(job, artifact_path=str(path))
            result = self.agent.measure(mjob)
        except (DeviceUnavailable, KeyboardInterrupt):
            raise
        except Exception as exc:  # noqa: BLE001 - the agent broke its contract; still a row, and the run goes on
            return MeasureResult(status=FAILED, reason=f"agent error: {type(exc).__name__}: {exc}",
                                 stderr_tail=traceback.format_exc()[-2000:]), job
        try:
            result.check(mjob)
        except ContractError as exc:
            return MeasureResult(status=FAILED, reason=f"the {self.info.platform} agent broke the contract: {exc}",
                                 stderr_tail=result.stderr_tail), mjob
        return result, mjob
