"""The loopback iPhone's fixtures and helpers, shared by the iOS agent's tests (pytest fixtures are
imported by the test modules that use them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from device_agents.base import ArtifactRef, MeasureJob
from device_agents.ios.agent import IosAgent
from device_agents.ios.session import parse_options
from tests import loopback_ios as lb

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "device_agents" / "ios" / "app" / "SplitbenchAgentTests" / "Fixtures" / "tiny.mlpackage"
SHAPE = (1, 3, 4, 4)


@pytest.fixture
def new_phone(tmp_path):
    """``new_phone(name="phone", **kwargs)``: a LoopbackPhone in ``tmp_path / name``, shut down after the test."""
    made: list[lb.LoopbackPhone] = []

    def make(name: str = "phone", **kwargs) -> lb.LoopbackPhone:
        made.append(lb.LoopbackPhone(tmp_path / name, **kwargs))
        return made[-1]

    yield make
    for p in made:
        p.shutdown()


@pytest.fixture
def phone(new_phone):
    return new_phone()


def make_agent(*phones: lb.LoopbackPhone, target: str | None = None, **options) -> IosAgent:
    target = target or f"ios:{phones[0].udid}"
    return IosAgent(target, parse_options(options), services=lb.services(*phones), crash_report_wait_s=0.5)


def tiny(key: str = "tinykey", path: Path = TINY) -> ArtifactRef:
    return ArtifactRef.from_path(path, key=key, backend="coreml")


def job(path: str, *, runs: int = 5, warm_loads: int = 1, timeout_s: float = 30, key: str = "tinykey",
        accelerator: str = "cpu") -> MeasureJob:
    return MeasureJob(artifact_path=path, backend="coreml", input_shape=SHAPE, runs=runs, warmup=2,
                      warm_loads=warm_loads, timeout_s=timeout_s, artifact_key=key, accelerator=accelerator)


def leftovers(phone: lb.LoopbackPhone) -> list[str]:
    """Job and result files, compiled models left in the container (a job cleans up after itself)."""
    docs = phone.container() / "Documents" / "splitbench"
    return sorted(str(p.relative_to(docs)) for sub in ("jobs", "results", "compiled") if (docs / sub).exists()
                  for p in (docs / sub).iterdir())
