"""The iOS profile (``ios``, ``ios:<udid>``): Core ML measured on an iPhone by the splitbench agent app,
driven from a Linux or macOS host with pymobiledevice3.

A session checks the preconditions one by one (each failure is one line saying how to fix it), installs
the agent app when the spec gives one, and asks the app who it is (``session.py``). ``prepare`` pushes an
``.mlpackage`` into the app's container once per content key; ``measure`` writes one job file per launch
and launches the app once per phase (compile, cold, each warm load: fresh processes), polls it, kills it
on timeout and reads its result (``measure.py``, the files are ``protocol.py``'s). How bytes reach the
phone is ``transport.py``'s business. ``discover``, ``doctor`` and ``clean`` are ``doctor.py``'s.

Faults: the phone unplugged, locked, or full is :class:`DeviceUnavailable` (the job gets no row, the run
goes on with other devices and ``--resume`` finishes it); the app ended by the system without a result is a
``crashed`` row with what the system logged (jetsam or crash report); an app that does not finish in time
is killed and is a ``timeout`` row; Core ML refusing the model is a ``failed`` row with its error.
"""

from __future__ import annotations

from typing import Any

from device_agents.base import AgentError, ArtifactRef, DeviceAgent, DeviceInfo, MeasureJob, MeasureResult
from device_agents.ios.doctor import clean, discover, doctor
from device_agents.ios.measure import APP_EXECUTABLE, Launcher
from device_agents.ios.protocol import COMPUTE_UNITS_FOR, SCHEMA_VERSION
from device_agents.ios.session import (IosOptions, Preconditions, find_services, one_line, parse_options, phone_name,
                                       require, resolve_udid, usb_udids, wanted_udid)
from device_agents.ios.errors import TransportError
from device_agents.ios.transport import IosTransport, Services

__all__ = ["IosAgent", "agent_for", "clean", "discover", "doctor"]

ACCELERATORS = tuple(COMPUTE_UNITS_FOR)  # Core ML runs each: cpuOnly, cpuAndGPU, cpuAndNeuralEngine


class IosAgent(DeviceAgent):
    """Core ML on one iPhone, through the splitbench agent app."""

    backends = ("coreml",)

    def __init__(self, target: str = "ios", options: IosOptions | None = None, *, services: Services | None = None,
                 crash_report_wait_s: float = 5.0):
        """``services``: the pymobiledevice3 entry points (default the real ones; the tests give a loopback).
        ``crash_report_wait_s``: how long to wait for the system's report after the app ended without a result."""
        self.target, self.wanted_udid = target, wanted_udid(target)
        self.options = options or IosOptions()
        self._services = services
        self.crash_report_wait_s = crash_report_wait_s
        self.transport: IosTransport | None = None
        self.udid: str | None = None
        self._launcher: Launcher | None = None
        self._info: DeviceInfo | None = None

    # -- session ---------------------------------------------------------------------------------
    def open(self) -> None:
        """Check the preconditions in order (an unmet one: :class:`AgentError` with its fix), install the app
        when asked, say hello. A phone that drops during the checks raises :class:`DeviceUnavailable`."""
        services = self._services or find_services()
        self.udid = resolve_udid(usb_udids(services), self.wanted_udid)
        self.transport = IosTransport(self.udid, services, tunnel=self.options.tunnel)
        launcher = Launcher(self.transport, self.options, self.udid, crash_report_wait_s=self.crash_report_wait_s)
        pre = Preconditions(self.transport, self.options, install=True, launcher=launcher.launch,
                            cleaner=launcher.clean_job)
        try:
            require(pre, self.udid)
        except TransportError as exc:
            self.close()
            raise AgentError(one_line(f"iPhone {self.udid}: {type(exc).__name__}: {exc}")) from None
        except BaseException:
            self.close()
            raise
        assert pre.hello is not None
        launcher.executable = (pre.app or {}).get("CFBundleExecutable") or APP_EXECUTABLE
        self._launcher = launcher
        self._info = self._device_info(pre.hello)

    def close(self) -> None:
        self._launcher = None
        if self.transport is not None:
            self.transport.close()
            self.transport = None

    def _device_info(self, hello: dict[str, Any]) -> DeviceInfo:
        assert self.transport is not None and self.udid is not None
        v = self.transport.values
        d, rt = hello["device"], hello["runtime"]
        standin = " — loopback stand-in, not an iPhone, not Core ML" if d["standin"] else ""
        fingerprint = {
            "platform": "ios", "product_type": v.get("ProductType"), "hardware_model": v.get("HardwareModel"),
            "cpu_architecture": v.get("CPUArchitecture"), "device_class": v.get("DeviceClass"),
            "ios_version": v.get("ProductVersion"), "ios_build": v.get("BuildVersion"),
            "app_device_model": d["model"], "simulator": d["simulator"], "standin": d["standin"],
            "agent_app_version": hello["app"]["version"], "agent_app_build": hello["app"]["build"],
            "agent_bundle_id": hello["app"]["bundle_id"], "schema_version": SCHEMA_VERSION,
            "runtime": f"{rt['name']} {rt['version']}",
        }
        return DeviceInfo(device_id=self.udid, target="ios", platform="ios", name=f"{phone_name(v)}{standin}",
                          backends={"coreml": f"{rt['name']} {rt['version']}"}, fingerprint=fingerprint, threads=None,
                          accelerators={"coreml": ACCELERATORS})

    def describe(self) -> DeviceInfo:
        if self._info is None:
            raise RuntimeError("open the agent first (use it in a `with` block)")
        return self._info

    def _open_launcher(self) -> Launcher:
        if self._launcher is None:
            raise RuntimeError("open the agent first (use it in a `with` block)")
        return self._launcher

    # -- artifacts and jobs (measure.py) ---------------------------------------------------------
    def prepare(self, artifact: ArtifactRef) -> str:
        """Push the ``.mlpackage`` into the app's Documents once per content key; return its path there."""
        return self._open_launcher().prepare(artifact)

    def measure(self, job: MeasureJob) -> MeasureResult:
        return self._open_launcher().measure(job)


def agent_for(target: str, **options: Any) -> IosAgent:
    """The agent for ``ios`` or ``ios:<udid>``; ``options`` is the spec's ``[ios]`` table."""
    return IosAgent(target, parse_options(options))
