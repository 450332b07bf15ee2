"""Scripted stand-ins for the orchestrator's tests: artifacts without an export, and a device agent (contract
v2) whose results are scripted per (configuration, backend) and per device.

The fake agent can play a phone: it can report an aggregate-only result (as LiteRT's benchmark_model
does), vanish mid-run (``DeviceUnavailable`` after N jobs), and several of them can share one target
name with different device ids (two phones of one model on one desk).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from device_agents.base import (CRASHED, OK, TIMEOUT, Aggregate, ArtifactFile, ArtifactRef, Conditions, DeviceAgent,
                                DeviceInfo, DeviceUnavailable, MeasureJob, MeasureResult, MemoryReading)

AGGREGATE = "aggregate"  # a script value: answer with a tool's aggregate instead of samples


@dataclass(frozen=True)
class FakeArtifact:
    """The fields of harness.export.cache.Artifact the orchestrator reads."""

    config: Any
    backend: str
    key: str
    path: Path | None
    status: str = "ok"
    verified: bool | None = True
    max_abs_err: float | None = 1e-6
    max_rel_err: float | None = 1e-5
    reason: str = ""
    artifact_bytes: int | None = 1234
    input_shape: tuple[int, ...] = (1, 3, 32, 32)
    output_shape: tuple[int, ...] = (1, 10)
    costs: dict = field(default_factory=lambda: {"params": 100, "macs": 2000, "flops": 4000,
                                                 "upload_bytes": 640, "mac_share": 0.5})
    converter: dict = field(default_factory=dict)
    precision: str = "float32"
    quantization: dict = field(default_factory=dict)

    def ref(self) -> ArtifactRef:
        return ArtifactRef(key=self.key, backend=self.backend, path=str(self.path), root=str(Path(self.path).parent),
                           files=(ArtifactFile(Path(self.path).name, 1234, "0" * 64),), sha256="0" * 64)


def fake_export(folder: Path, **fields):
    """A stand-in for ``orchestrate.export_artifacts``: one FakeArtifact per (configuration, backend), at
    ``folder/<configuration>__<backend>.bin`` (nothing is written there)."""
    from harness.split.configurations import configurations

    def export(spec, *, progress):
        return [FakeArtifact(config=c, backend=b, key=f"key-{c.name}-{b}", path=folder / f"{c.name}__{b}.bin", **fields)
                for c in configurations(spec) for b in spec.export.backends]

    return export


def record_hashes(d: Path) -> dict[str, str]:
    """The sha256 of every record of a results directory, by file name: what "nothing measured was lost" compares."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((d / "records").glob("*.json"))}


def samples(n: int, base_ns: int, seed: int) -> tuple[int, ...]:
    rng = np.random.default_rng(seed)
    return tuple(int(base_ns * (1 + 0.01 * x)) for x in rng.standard_normal(n))


class FakeAgent(DeviceAgent):
    """Returns scripted results; ``script`` maps (config name, backend) to a status, AGGREGATE or an exception.

    ``vanish_after``: the device goes away (``DeviceUnavailable``) at that measure call (1-based).
    ``raise_on_call``: Ctrl-C at that measure call. ``slow_s``: every measurement takes that long.
    ``block_after``: that measure call (1-based) never returns, as a hung tool; its process must be ended.
    """

    def __init__(self, target: str = "cpu-1core", script: dict | None = None, raise_on_call: int | None = None,
                 device_id: str = "fake:0", backends=("onnx", "litert", "executorch"), vanish_after: int | None = None,
                 speed: float = 1.0, slow_s: float = 0.0, block_after: int | None = None):
        self.target, self.device_id = target, device_id
        self.script = script or {}
        self.raise_on_call, self.vanish_after = raise_on_call, vanish_after
        self.runs_backends = tuple(backends)
        self.speed, self.slow_s, self.block_after = speed, slow_s, block_after
        self.calls: list[MeasureJob] = []
        self.prepared: list[str] = []
        self.opened = self.closed = 0

    def open(self) -> None:
        self.opened += 1

    def close(self) -> None:
        self.closed += 1

    def describe(self) -> DeviceInfo:
        return DeviceInfo(device_id=self.device_id, target=self.target, platform="fake", name=f"Fake {self.device_id}",
                          backends={b: f"{b}-runtime 1.0" for b in self.runs_backends},
                          fingerprint={"cpu_model": "Fake CPU", "kernel": "6.0", "uptime_s": 123.0})

    def prepare(self, artifact: ArtifactRef) -> str:
        self.prepared.append(artifact.key)
        return artifact.path

    def measure(self, job: MeasureJob) -> MeasureResult:
        self.calls.append(job)
        if self.vanish_after is not None and len(self.calls) >= self.vanish_after:
            raise DeviceUnavailable(self.device_id, "unplugged (scripted)")
        if self.raise_on_call is not None and len(self.calls) == self.raise_on_call:
            raise KeyboardInterrupt
        if self.block_after is not None and len(self.calls) >= self.block_after:
            import threading

            threading.Event().wait()  # forever: ended only with its process
        if self.slow_s:
            import time

            time.sleep(self.slow_s)
        name = Path(job.artifact_path).stem.split("__")[0]
        scripted = self.script.get((name, job.backend))
        if isinstance(scripted, BaseException):
            raise scripted
        if scripted in (CRASHED, TIMEOUT):
            return MeasureResult(status=scripted, reason=f"worker {scripted} (scripted)",
                                 stderr_tail="Traceback ...\nSegmentation fault")
        base = int((1_000_000 + 100_000 * len(self.calls)) * self.speed)
        common = dict(status=OK, load_cold_ns=20_000_000, cold_method="fadvise_dontneed",
                      load_warm_ns=(5_000_000, 6_000_000, 7_000_000)[: job.warm_loads],
                      memory=(MemoryReading("vmhwm_in_process", 50_000_000, 60_000_000, 62_000_000),),
                      uss_b=58_000_000, pinned_cpus=(0,), threads={"intra_op": 1}, runtime={job.backend: "1.0"},
                      conditions_before=Conditions(thermal_status="none", battery_temp_c=30.5),
                      conditions_after=Conditions(thermal_status="light", battery_temp_c=31.0))
        if scripted == AGGREGATE:
            return MeasureResult(**common, infer_aggregate=Aggregate(
                n=job.runs, mean_ns=float(base), std_ns=base * 0.02, min_ns=base * 0.95, max_ns=base * 1.1,
                percentiles={"5": base * 0.97, "50": float(base), "95": base * 1.04}, tool="benchmark_model (fake)"),
                first_infer_ns=3 * base)
        return MeasureResult(**common, infer_ns=samples(job.runs, base, len(self.calls)), first_infer_ns=3 * base,
                             warmup_ns=samples(job.warmup, base, 99), cpu_ns=job.runs * base,
                             wall_runs_ns=job.runs * base)
