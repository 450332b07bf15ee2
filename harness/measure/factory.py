"""The executors by name: ``--executor serial | devices | ray``. The base executor never knows its Ray subclass:
this table loads the lab's driver only when it is asked for (Ray is an optional extra)."""

from __future__ import annotations

from harness.config.spec import Spec
from harness.core.errors import UserError
from harness.measure.executors import DevicesExecutor, Executor

EXECUTORS = ("serial", "devices", "ray")
RAY_INSTALL_HINT = "pip install 'splitbench[ray]'"


def make_executor(name: str, spec: Spec, *, ray_address: str | None = None) -> Executor:
    """The executor called ``name`` for ``spec`` (every target name is checked before anything is opened)."""
    if name == "serial":
        return Executor(spec)
    if name == "devices":
        return DevicesExecutor(spec)
    if name == "ray":
        try:
            from harness.measure.lab.driver import RayExecutor
        except ImportError as exc:
            raise UserError(f"--executor ray needs Ray ({exc}): {RAY_INSTALL_HINT}") from None
        return RayExecutor(spec, address=ray_address)
    raise UserError(f"--executor {name!r}: use one of {', '.join(EXECUTORS)}")
