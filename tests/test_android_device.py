"""On a real phone: the checks of `splitbench doctor android` and one job per tool the host has.

Skipped unless ``SPLITBENCH_ANDROID_TEST_TARGET`` names a phone (``android``, ``android:<serial>`` or
``android:<host>:<port>``) and ``SPLITBENCH_ANDROID_TOOLS`` is the directory of the arm64 tools; the
phone must have USB debugging on and this computer allowed (``~/.android/adbkey``).
"""

from __future__ import annotations

import os

import pytest

from device_agents.android import agent as A
from device_agents.android import protocol as P
from device_agents.base import OK, open_agent
from tests.android_fixtures import artifact_ref, job, tiny_artifact

TARGET = os.environ.get("SPLITBENCH_ANDROID_TEST_TARGET")
pytestmark = [
    pytest.mark.device,
    pytest.mark.skipif(not TARGET, reason="no phone: set SPLITBENCH_ANDROID_TEST_TARGET=android (or android:<serial>, "
                                          "android:<host>:<port>) and SPLITBENCH_ANDROID_TOOLS to the arm64 tools"),
]


def test_doctor_finds_nothing_failing():
    checks = A.doctor(TARGET, probe_artifacts={b: tiny_artifact(b) for b in ("onnx", "litert", "executorch")})
    failed = [f"{c.name}: {c.detail} (fix: {c.fix})" for c in checks if c.ok is False]
    assert not failed, "\n".join(failed)


@pytest.mark.parametrize("backend", ["onnx", "litert", "executorch"])
def test_a_job_on_the_phone(backend):
    with open_agent(TARGET) as agent:
        if backend not in agent.backends:
            pytest.skip(f"no {P.TOOL_FOR_BACKEND[backend]} in SPLITBENCH_ANDROID_TOOLS")
        j = job(agent.prepare(artifact_ref(backend)), backend, runs=20, warmup=3, warm_loads=2)
        result = agent.measure(j)
    assert result.status == OK, f"{result.reason}\n{result.stderr_tail}"
    result.check(j)
    assert result.pinned_cpus == (agent.core,), result.pinning
    assert result.conditions_before.battery_temp_c is not None and result.memory
