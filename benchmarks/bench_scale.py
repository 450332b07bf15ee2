"""How the executors scale: one sweep measured on k simulated devices by ``serial``, ``devices`` and ``ray``.

Two kinds of simulated device, k = 1, 2 of each on this 2-core machine: the local profile pinned to
distinct CPUs (``cpu-1core:0``, ``cpu-1core:1``), and loopback Android phones (``tests/loopback_adb.py``:
the real adb protocol on 127.0.0.1, the real Android agent, tool stand-ins pinned to the phone's fastest
core, here CPU 0 for one phone and CPU 1 for the other). For ``ray`` each CPU is a node of a
``ray.cluster_utils.Cluster`` (a simulated host) carrying that CPU and one phone, started once. The sweep is
a tiny zoo model (moon_tiny, a few cuts, ONNX) with the papers' protocol (60 runs, 5 warm loads), on a
warm export cache; the figures and the cloud timing after the measurements are left out (the same for
every executor).

For each run: the wall time of ``run_spec``; the time to open the devices (Ray: reserve them, start one
actor per device); the time of the job phase (first job sent to last result written); each job's time on
its device (prepare + measure, as the record's ``duration_s``). From them:

- speedup = serial job phase / executor's job phase (the ideal is k): the median of the per-round ratios
  (paired: the load drifting between rounds cancels), the ratio of the medians beside it, and the same
  on whole wall times;
- per-job overhead: the mean time between the end of one job and the start of the next on the same
  device (serial: the next job on any device), from the records' start times and durations, in
  milliseconds: the driver writing a record and the tables, Ray's round trip;
- idle per job = (job phase x devices measuring at once - sum of device times) / jobs: the overhead
  plus the devices waiting for the slowest one at the end (serial measures on one device at a time);
  busy fraction = sum of device times / (job phase x devices measuring at once). On real phones a job
  takes as long whatever k is, so the speedup there is k x the busy fraction; here the "devices" are
  the host's own two CPUs, which the driver, Ray and other people's work share, so each job gets
  slower as k grows and the speedup falls short of that.

The machine is shared (other engineers run tests): each round runs the executors in a rotated order, and
the figures are medians over the rounds, with the load average before and after.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from harness.measure.factory import EXECUTORS

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "results" / "benchmarks" / "scale.json"
ROUNDS = int(os.environ.get("SPLITBENCH_BENCH_SCALE_ROUNDS", "5"))
ANDROID_CUTS = ("conv1", "conv7")  # with on-premise: 3 jobs a phone
ANDROID_FAST = {"cool_poll_s": 0.05, "cool_timeout_s": 1.0, "link_timeout_s": 5.0}  # as the Android tests
SPEC = """
name = "bench_scale"
[model]
zoo = "moon_tiny"
seed = 0
input_shape = [1, 3, 218, 178]
[split]
cuts = ["conv1", "conv3", "conv4_2", "conv5_1", "conv6_1", "conv7"]
embeddings = ["simple"]
[export]
backends = ["onnx"]
[run]
runs = 60
warmup = 5
warm_loads = 5
timeout_s = 300
"""


class _Timed:
    """An executor with its phases timed (open, job phase, close); everything else passes through."""

    def __init__(self, ex):
        self.ex, self.times = ex, {}

    def __getattr__(self, name):
        return getattr(self.ex, name)

    def open_devices(self):
        t0 = time.perf_counter()
        try:
            return self.ex.open_devices()
        finally:
            self.times["open_s"] = time.perf_counter() - t0

    def run(self, jobs, **kw):
        t0 = time.perf_counter()
        yield from self.ex.run(jobs, **kw)
        self.times["jobs_s"] = time.perf_counter() - t0
        # devices measuring at the same time: 1 for serial, every device of the sweep for the others
        self.times["lanes"] = min(self.ex.parallel, len({j.device_id for j in jobs}))

    def close(self):
        t0 = time.perf_counter()
        try:
            self.ex.close()
        finally:
            self.times["close_s"] = time.perf_counter() - t0


def _lab(devices: list[list]):
    """A Cluster with a head and one node per entry of ``devices`` (a list of ``(target, options)`` each),
    every node registering its devices: a simulated host."""
    from ray.cluster_utils import Cluster

    from harness.measure.lab import device_host, driver

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    for on_node in devices:
        regs = [device_host.host_registrations([t], options={"android": opts})[0][0] for t, opts in on_node]
        node = cluster.add_node(num_cpus=0, resources=device_host.node_resources(regs))
        driver.connect(cluster.address)
        try:
            device_host.register([dataclasses.replace(r, node_id=node.node_id) for r in regs])
        finally:
            driver.disconnect()
    return cluster


def _phones(cpus: list[int], tmp: Path, stack: contextlib.ExitStack) -> tuple[list[str], dict] | None:
    """Loopback Android phones (tests/loopback_adb.py: the real adb protocol on 127.0.0.1), the i-th with
    CPU ``cpus[i]`` as its fastest core (the agent pins there), and the [android] table that drives them;
    None when the loopback is not in this checkout."""
    try:
        from tests.loopback_adb import LoopbackPhone, write_tool_wrappers
    except ImportError:
        return None
    ncpu = len(os.sched_getaffinity(0))
    targets = []
    for i, cpu in enumerate(cpus):
        khz = [1_800_000] * ncpu
        khz[cpu] = 2_400_000
        phone = stack.enter_context(LoopbackPhone(tmp / f"phone{i}", serial=f"LOOPBACK{i:04d}", cpu_max_khz=khz))
        targets.append(f"android:{phone.address}")
    tools = {k: str(v) for k, v in write_tool_wrappers(tmp / "android-tools").items()}
    return targets, {**ANDROID_FAST, "tools": tools}


def _one(spec, executor: str, out: Path, address: str) -> dict:
    from harness import orchestrate
    from harness.measure import factory

    made = {}
    real = factory.make_executor

    def timed(name, spec_, **kw):
        made["ex"] = _Timed(real(name, spec_, **kw))
        return made["ex"]

    factory.make_executor = timed
    try:
        t0 = time.perf_counter()
        outcome = orchestrate.run_spec(spec, out, progress=False, executor=executor, ray_address=address)
        wall = time.perf_counter() - t0
    finally:
        factory.make_executor = real
    if outcome.exit_code != 0:
        raise RuntimeError(f"{executor}: exit {outcome.exit_code}: "
                           f"{[(r.config, r.status, r.reason) for r in outcome.records if not r.ok]}")
    t = made["ex"].times
    busy = sum(r.duration_s or 0 for r in outcome.records)
    n = len(outcome.records)
    gaps = _gaps(outcome.records, serial=t["lanes"] == 1)
    return {"executor": executor, "wall_s": wall, **t, "jobs": n, "device_s": busy,
            "overhead_ms": statistics.mean(gaps) * 1000 if gaps else 0.0,
            "idle_ms": (t["jobs_s"] * t["lanes"] - busy) / n * 1000,
            "busy_fraction": busy / (t["jobs_s"] * t["lanes"])}


def _gaps(records, *, serial: bool) -> list[float]:
    """Seconds between the end of a job and the start of the next in the same lane (one lane for serial, one
    per device otherwise), from each record's start and duration: the executor's time between two jobs."""
    lanes: dict[str, list[tuple[float, float]]] = {}
    for r in records:
        start = datetime.fromisoformat(r.started_at).timestamp()
        lanes.setdefault("all" if serial else r.device_id, []).append((start, start + (r.duration_s or 0)))
    gaps = []
    for spans in lanes.values():
        spans.sort()
        gaps += [b[0] - a[1] for a, b in zip(spans, spans[1:])]
    return gaps


def _median(rows: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def summarize(rows: list[dict]) -> dict:
    """Medians per (kind of device, k, executor), and the speedups over serial. The paired speedup is the
    median of the per-round ratios (serial and the executor ran one after the other in the same round),
    so the machine's load drifting between rounds cancels; the ratio of medians is beside it."""
    summary: dict = {}
    for kind, k in sorted({(r["devices"], r["k"]) for r in rows}):
        def runs(name):
            return [r for r in rows if (r["devices"], r["k"], r["executor"]) == (kind, k, name)]

        serial = {r["round"]: r for r in runs("serial")}
        for name in sorted({r["executor"] for r in rows}, key=EXECUTORS.index):
            mine = runs(name)
            paired = [serial[r["round"]]["jobs_s"] / r["jobs_s"] for r in mine if r["round"] in serial]
            summary[f"{kind} k={k} {name}"] = {
                "jobs": mine[0]["jobs"],
                "wall_s_median": round(_median(mine, "wall_s"), 3),
                "jobs_s_median": round(_median(mine, "jobs_s"), 3),
                "open_s_median": round(_median(mine, "open_s"), 3),
                "close_s_median": round(_median(mine, "close_s"), 3),
                "device_s_median": round(_median(mine, "device_s"), 3),
                "overhead_ms_per_job_median": round(_median(mine, "overhead_ms"), 1),
                "overhead_ms_per_job_range": [round(min(r["overhead_ms"] for r in mine), 1),
                                              round(max(r["overhead_ms"] for r in mine), 1)],
                "idle_ms_per_job_median": round(_median(mine, "idle_ms"), 1),
                "busy_fraction_median": round(_median(mine, "busy_fraction"), 3),
                "speedup_jobs_paired_median": round(statistics.median(paired), 2) if paired else None,
                "speedup_jobs_paired_range": [round(min(paired), 2), round(max(paired), 2)] if paired else None,
                "speedup_jobs_vs_serial": round(_median(serial.values(), "jobs_s") / _median(mine, "jobs_s"), 2),
                "speedup_wall_vs_serial": round(_median(serial.values(), "wall_s") / _median(mine, "wall_s"), 2),
            }
    return summary


def run() -> dict:
    ray_tmp = None
    if "RAY_TMPDIR" not in os.environ:  # short (socket paths), and never another cluster's /tmp/ray
        ray_tmp = os.environ["RAY_TMPDIR"] = tempfile.mkdtemp(prefix="rb", dir="/tmp")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a throwaway local cluster; a lab keeps the token
    root = str(ROOT)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    import tomllib

    from harness import orchestrate
    from harness.export.stage import export_spec
    from harness.config.spec import parse_spec

    try:
        import ray  # noqa: F401

        executors_ = EXECUTORS
    except ImportError:  # without the [ray] extra: serial and devices only
        executors_ = EXECUTORS[:2]
    cpus = sorted(os.sched_getaffinity(0))[:2]
    base = parse_spec(tomllib.loads(SPEC), origin="bench_scale")
    export_spec(base, progress=False)  # warm the export cache: every run below reads it
    # what comes after the measurements is the same for every executor: left out
    saved = orchestrate.POST_RUN
    orchestrate.POST_RUN = ()

    rows: list[dict] = []
    load_before = os.getloadavg()
    cluster = None
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp, contextlib.ExitStack() as stack:
        os.environ.setdefault("SPLITBENCH_LEASE_DIR", str(Path(tmp) / "leases"))
        os.environ.setdefault("SPLITBENCH_ADB_KEY", str(Path(tmp) / "adbkey" / "adbkey"))  # not ~/.android
        kinds = {"local": ([f"cpu-1core:{c}" for c in cpus], {})}
        phones = _phones(cpus, Path(tmp), stack)
        if phones is not None:
            kinds["android"] = phones
        t0 = time.perf_counter()
        if "ray" in executors_:  # node i carries CPU i and the i-th loopback phone
            cluster = _lab([[(kind_targets[i], opts) for kind_targets, opts in kinds.values()]
                            for i in range(len(cpus))])
        cluster_s = time.perf_counter() - t0
        address = cluster.address if cluster else None
        try:
            for rnd in range(ROUNDS):
                for kind, (targets, opts) in kinds.items():
                    for k in range(1, len(cpus) + 1):
                        spec = dataclasses.replace(base, run=dataclasses.replace(base.run, targets=tuple(targets[:k])),
                                                   devices={"android": opts} if opts else base.devices)
                        if kind == "android":  # a job on the loopback starts several tool processes: fewer jobs
                            spec = dataclasses.replace(spec, split=dataclasses.replace(
                                spec.split, cuts=ANDROID_CUTS))
                        n = len(executors_)
                        order = executors_[rnd % n:] + executors_[: rnd % n]  # rotated each round
                        for name in order:
                            row = _one(spec, name, Path(tmp) / f"r{rnd}-{kind}-k{k}-{name}", address)
                            row.update(round=rnd, k=k, devices=kind)
                            rows.append(row)
                            print(f"round {rnd} {kind:7s} k={k} {name:8s} wall {row['wall_s']:6.2f} s  jobs "
                                  f"{row['jobs_s']:6.2f} s  open {row['open_s']:5.2f} s  overhead "
                                  f"{row['overhead_ms']:6.1f} ms/job  idle {row['idle_ms']:6.1f} ms/job", flush=True)
        finally:
            orchestrate.POST_RUN = saved
            if cluster is not None:  # only with Ray imported above
                with contextlib.suppress(Exception):
                    if ray.is_initialized():
                        ray.shutdown()
                cluster.shutdown()
            if ray_tmp is not None:
                import shutil

                shutil.rmtree(ray_tmp, ignore_errors=True)
    load_after = os.getloadavg()

    summary = summarize(rows)
    result = {
        "what": "wall time of one sweep on k simulated devices (the local profile on distinct CPUs, and "
                "loopback Android phones pinned to distinct CPUs; ray: one Cluster node per CPU carrying that "
                "CPU and one phone) by each executor; medians over rounds in rotated order",
        "spec": SPEC.strip(), "rounds": ROUNDS, "cpus": cpus, "cpu_count": os.cpu_count(),
        "load_average_before": load_before, "load_average_after": load_after,
        "ray_cluster_start_s": round(cluster_s, 2) if cluster is not None else None,
        "date": datetime.now().isoformat(timespec="seconds"),
        "note": "shared 2-core machine: other engineers' tests ran at the same time; with k=2 both cores "
                "measure while the driver, Ray's daemons and those tests compete for them",
        "summary": summary, "runs": rows,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    for key, s in summary.items():
        print(f"{key:20s} wall {s['wall_s_median']:6.2f} s  jobs {s['jobs_s_median']:6.2f} s  speedup "
              f"{s['speedup_jobs_paired_median']:4.2f}x paired (wall {s['speedup_wall_vs_serial']:4.2f}x)  overhead "
              f"{s['overhead_ms_per_job_median']:6.1f} ms/job  open {s['open_s_median']:5.2f} s")
    print(f"wrote {OUT}")
    return {"summary": summary, "ray_cluster_start_s": result["ray_cluster_start_s"],
            "load_average": [load_before, load_after]}


if __name__ == "__main__":
    sys.exit(0 if run() else 1)
