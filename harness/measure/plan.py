"""The plan of a run: every (configuration, backend, device) as a :class:`Job` with the identity and record
key its result is written under, and the record a finished job becomes.

Rows that need no device (an export that failed, a backend the device cannot run) are planned with the
row to write at once (:attr:`Job.skip`) instead of a :class:`~device_agents.base.MeasureJob`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from device_agents.base import FAILED, DeviceInfo, MeasureJob
from harness import __version__
from harness.config.backends import not_runnable_reason, rank
from harness.config.spec import PRECISIONS, Spec
from harness.core.clock import utc_now
from harness.results.records import SKIPPED, Identity, ResultRecord, device_essentials, make_record_key
from harness.split.configurations import ModelIdentity


@dataclass(frozen=True)
class Job:
    """One planned (configuration, backend, device)."""

    artifact: Any  # harness.export.cache.Artifact (or a record with its fields)
    spec_target: str  # the spec's target string that names the device ("android:127.0.0.1:5555")
    identity: Identity
    record_key: str
    job: MeasureJob | None  # None when there is nothing to measure (export failed, backend not runnable)
    skip: tuple[str, str] | None = None  # (status, reason) of the row written at once when job is None

    @property
    def device_id(self) -> str:
        return self.identity.device_id

    @property
    def label(self) -> str:
        extra = "".join(f" {v}" for v, default in ((self.identity.precision, "float32"),
                                                    (self.identity.accelerator, "cpu")) if v != default)
        return f"{self.artifact.config.name}{extra} {self.artifact.backend} {self.spec_target}"


def measure_job(spec: Spec, artifact: Any, accelerator: str = "cpu") -> MeasureJob:
    """What the device agent is asked to do with one artifact: the spec's protocol (runs, warm-up, ...) on one
    accelerator."""
    return MeasureJob(artifact_path=str(artifact.path) if artifact.path else "", backend=artifact.backend,
                      input_shape=tuple(artifact.input_shape or ()), runs=spec.run.runs, warmup=spec.run.warmup,
                      warm_loads=spec.run.warm_loads, timeout_s=spec.run.timeout_s, seed=spec.model.seed,
                      artifact_key=artifact.key, accelerator=accelerator)


def identity_of(ident: ModelIdentity, artifact: Any, info: DeviceInfo, accelerator: str = "cpu") -> Identity:
    c = artifact.config
    return Identity(model=c.model, model_definition=ident.definition_hash, weights=ident.weights_id, cut=c.cut,
                    embedding=c.embedding, reduced_dim=c.reduced_dim, backend=artifact.backend,
                    artifact_key=artifact.key, target=info.target, device_id=info.device_id,
                    runtime_version=info.backends.get(artifact.backend, ""), threads=info.threads,
                    precision=getattr(artifact, "precision", "float32"), accelerator=accelerator)


def plan_jobs(spec: Spec, ident: ModelIdentity, artifacts: list, devices: dict[str, DeviceInfo]) -> list[Job]:
    """Every (configuration, precision, backend, device, accelerator) in model order: configuration, precision,
    backend, then device, then accelerator."""
    jobs = []
    order = {p: i for i, p in enumerate(PRECISIONS)}
    for a in sorted(artifacts, key=lambda a: (a.config.order, order.get(getattr(a, "precision", "float32"), 0),
                                              rank(a.backend))):
        for spec_target, info in devices.items():
            for accelerator in spec.run.accelerators:
                mjob = measure_job(spec, a, accelerator)
                identity = identity_of(ident, a, info, accelerator)
                protocol = mjob.protocol()
                skip = None
                if a.status != "ok":
                    protocol["export_status"] = a.status  # never the same key as a measured row
                    skip = (FAILED, f"export failed: {a.reason or 'no reason given'}")
                elif a.backend not in info.backends:
                    protocol["skipped"] = True
                    skip = (SKIPPED, not_runnable_reason(a.backend, info.target, list(info.backends)))
                elif (why := info.cannot_run(a.backend, accelerator)) is not None:
                    protocol["skipped"] = True
                    skip = (SKIPPED, why)
                key = make_record_key(identity, device_essentials(info.fingerprint), protocol)
                jobs.append(Job(a, spec_target, identity, key, None if skip is not None else mjob, skip))
    return jobs


def make_record(job: Job, result: dict[str, Any], *, measure_job: MeasureJob | None, info: DeviceInfo, hash_: str,
                started_at: str, duration_s: float | None) -> ResultRecord:
    """The record of one finished (or skipped) job: its identity, the artifact's facts and the device's result."""
    a = job.artifact
    return ResultRecord(
        record_key=job.record_key, identity=job.identity, config=a.config.name, order=a.config.order,
        artifact_path=str(a.path) if a.path else None, artifact_bytes=a.artifact_bytes,
        verified=a.verified, max_abs_err=a.max_abs_err, max_rel_err=a.max_rel_err,
        costs=dict(a.costs or {}), quantization=dict(getattr(a, "quantization", None) or {}),
        job=measure_job.to_dict() if measure_job else {}, result=result,
        device=device_essentials(info.fingerprint), device_name=info.name, spec_hash=hash_, started_at=started_at,
        finished_at=utc_now(), duration_s=duration_s, splitbench_version=__version__,
    )
