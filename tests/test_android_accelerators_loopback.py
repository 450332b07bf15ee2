"""Accelerators end to end on the loopback phone (the real adb-shell client, the phone's own mksh and toybox):
the agent reads what each tool can be asked for from its --help, asks for the job's accelerator with the tool's
own flags, and records what the tool printed about the delegate or execution provider: applied to the whole
graph, to part of it (with the tool's counts), not at all (a failed row: its numbers were the CPU's), a build
without the provider (its line), and the cpu's command line left as it was.

The stand-ins print, for the flags they receive, the lines the real tools print (tests/android_tools, their
formats from the tools' sources and the public logs in tests/fixtures/tool_logs/delegation)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from device_agents.android import accelerators as AC
from device_agents.android import agent as A
from device_agents.android import protocol as P
from device_agents.android.agent import agent_for
from device_agents.base import FAILED, OK
from harness.cli import main
from harness.core import exitcodes
from harness.measure.devices import accelerator_lines
from tests.android_fixtures import (FAST, _adb_key, artifact_ref, job, needs_userland, phone,  # noqa: F401
                                    tiny_artifact)
from tests.loopback_adb import LoopbackPhone

FIXTURES = Path(__file__).parent / "fixtures"
pytestmark = needs_userland


def agent(p: LoopbackPhone, tools: dict, only: tuple[str, ...]):
    return agent_for(f"android:{p.address}", tools={k: v for k, v in tools.items() if k in only}, **FAST)


def test_the_phone_says_which_accelerators_each_tool_runs(phone, tools):
    with agent_for(f"android:{phone.address}", tools=tools, **FAST) as a:
        info = a.describe()
    assert info.accelerators == {"litert": ("cpu", "gpu", "npu"), "onnx": ("cpu", "gpu", "npu"),
                                 "executorch": ("cpu",)}
    assert info.cannot_run("litert", "gpu") is None and info.cannot_run("onnx", "npu") is None
    assert "Vulkan" in info.cannot_run("executorch", "gpu") and "QnnPartitioner" in info.cannot_run("executorch", "npu")


@pytest.mark.slow
def test_litert_gpu_whole_graph_part_of_it_and_nnapi_that_took_nothing(phone, tools):
    with agent(phone, tools, ("benchmark_model",)) as a:
        path = a.prepare(artifact_ref("litert"))
        cpu = a.measure(job(path, "litert"))
        gpu = a.measure(job(path, "litert", accelerator="gpu"))
        phone.set_accelerators("benchmark_model", GPU="partially", NNAPI="not")
        part = a.measure(job(path, "litert", accelerator="gpu"))
        npu = a.measure(job(path, "litert", accelerator="npu"))
    assert cpu.status == OK and cpu.delegation.accelerator == "cpu" and cpu.delegation.applied == "unknown"
    assert not any(x.startswith("--use_") for x in cpu.diagnostics["calls"][0]["argv"])  # today's command line
    assert cpu.diagnostics["calls"][0]["argv"][1:] == list(P.tool_call("litert", path, job(path, "litert"), "cold",
                                                                       "/j").args)

    assert gpu.status == OK, gpu.reason
    assert gpu.delegation.setting == "--use_gpu=true" and gpu.delegation.applied == "completely"
    assert gpu.delegation.delegated_nodes == gpu.delegation.total_nodes > 0  # "Replacing M out of M node(s)"
    assert "Explicitly applied GPU delegate" in gpu.delegation.words
    assert all("--use_gpu=true" in c["argv"] for c in gpu.diagnostics["calls"])  # the warm loads too
    assert gpu.infer_aggregate.n == 6 and len(gpu.load_warm_ns) == 1

    assert part.status == OK and part.delegation.applied == "partially"
    assert part.delegation.delegated_nodes == part.delegation.total_nodes - 1
    assert any("the GPU delegate took" in n and "rest ran on the CPU" in n for n in part.notes)

    # NNAPI created, given nothing: the runs were the CPU's; no number is kept as the npu's
    assert npu.status == FAILED and "the NNAPI delegate did not apply" in npu.reason
    assert "Though NNAPI delegate is explicitly applied" in npu.reason
    assert npu.infer_aggregate is None and npu.infer_ns == () and npu.load_warm_ns == ()
    assert npu.delegation.applied == "not" and npu.delegation.setting.startswith("--use_nnapi=true --disable_nnapi_cpu")
    assert "Inference timings in us" in npu.stderr_tail  # what the tool printed is kept, raw
    assert len(npu.diagnostics["calls"]) == 1  # no warm load after a delegate that did not apply


@pytest.mark.slow
def test_a_delegate_the_tool_refuses_and_a_build_without_the_gpu_delegate(tmp_path, tools):
    with LoopbackPhone(tmp_path / "a") as p, agent(p, tools, ("benchmark_model",)) as a:
        p.set_accelerators("benchmark_model", GPU="failed")
        r = a.measure(job(a.prepare(artifact_ref("litert")), "litert", accelerator="gpu"))
    assert r.status == FAILED and "exited with code 1" in r.reason and "Failed to apply GPU delegate." in r.reason
    assert r.delegation.applied == "not"

    with LoopbackPhone(tmp_path / "b") as p:
        p.set_accelerators("benchmark_model", gpu_build=False)
        with agent(p, tools, ("benchmark_model",)) as a:
            info = a.describe()
            r = a.measure(job(a.prepare(artifact_ref("litert")), "litert", accelerator="gpu"))
    assert info.accelerators["litert"] == ("cpu", "npu")
    assert "--gpu_backend" in info.cannot_run("litert", "gpu")  # the skipped row's reason names the missing flag
    assert r.status == FAILED and "--gpu_backend" in r.reason and r.diagnostics == {}  # nothing ran


@pytest.mark.slow
def test_onnxruntime_finds_the_provider_its_build_has_and_reads_the_placements(phone, tools):
    with agent(phone, tools, ("onnxruntime_perf_test",)) as a:
        path = a.prepare(artifact_ref("onnx"))
        cpu = a.measure(job(path, "onnx"))
        npu = a.measure(job(path, "onnx", accelerator="npu"))
        again = a.measure(job(path, "onnx", accelerator="npu"))
        gpu = a.measure(job(path, "onnx", accelerator="gpu"))
        phone.set_accelerators("onnxruntime_perf_test", placement={"nnapi": "partial"})
        part = a.measure(job(path, "onnx", accelerator="npu"))
        phone.set_accelerators("onnxruntime_perf_test", placement={"nnapi": "none"})
        none = a.measure(job(path, "onnx", accelerator="npu"))
        info = a.describe()
    assert cpu.status == OK and cpu.delegation.setting == "-e cpu -x 1 -y 1"
    assert [c["phase"] for c in cpu.diagnostics["calls"]] == ["cold", "warm"]  # no placement run for the cpu
    assert "-v" not in cpu.diagnostics["calls"][0]["argv"]

    # -e lists qnn first, but this build has only NNAPI: the tool's line says so and NNAPI is used
    assert npu.status == OK, npu.reason
    phases = [(c["phase"], c["argv"][c["argv"].index("-e") + 1]) for c in npu.diagnostics["calls"]]
    assert phases == [("placement", "qnn"), ("placement", "nnapi"), ("cold", "nnapi"), ("warm", "nnapi")]
    assert npu.delegation.setting.startswith("-e nnapi -i NNAPI_FLAG_CPU_DISABLED")
    assert (npu.delegation.applied, npu.delegation.delegated_nodes, npu.delegation.total_nodes) == ("completely", 1, 1)
    assert "All nodes placed on [NnapiExecutionProvider]. Number of nodes: 1" in npu.delegation.words
    assert any("fused" in n for n in npu.notes) and len(npu.infer_ns) == 6
    assert [c["phase"] for c in again.diagnostics["calls"]] == ["placement", "cold", "warm"]  # remembered

    assert gpu.status == FAILED and "QNN is not supported in this build" in gpu.reason
    assert info.accelerators["onnx"] == ("cpu", "npu") and "QNN is not supported" in info.cannot_run("onnx", "gpu")

    assert part.status == OK and (part.delegation.applied, part.delegation.delegated_nodes,
                                  part.delegation.total_nodes) == ("partially", 1, 2)
    assert none.status == FAILED and "the execution provider NnapiExecutionProvider did not apply" in none.reason
    assert none.delegation.applied == "not" and none.delegation.delegated_nodes == 0
    assert [c["phase"] for c in none.diagnostics["calls"]] == ["placement"]  # nothing measured on the CPU for it


@pytest.mark.slow
def test_devices_and_doctor_say_what_each_tool_runs_off_the_cpu(phone, tools, monkeypatch, capsys):
    phone.set_accelerators("benchmark_model", NNAPI="not")
    probes = {"litert": tiny_artifact("litert"), "onnx": tiny_artifact("onnx")}
    checks = {c.name: c for c in A.doctor(f"android:{phone.address}", probe_artifacts=probes, tools=tools, **FAST)}
    gpu, npu = checks["benchmark_model on the gpu"], checks["benchmark_model on the npu"]
    assert gpu.ok is True and gpu.detail.startswith("--use_gpu=true: completely, ")  # "M of M nodes", the tool's
    assert npu.ok is None and "the NNAPI delegate did not apply" in npu.detail  # not a failure: nothing to fix
    assert checks["onnxruntime_perf_test on the gpu"].ok is None
    assert "QNN is not supported in this build" in checks["onnxruntime_perf_test on the gpu"].detail
    assert checks["onnxruntime_perf_test on the npu"].ok is True
    assert checks["onnxruntime_perf_test on the npu"].detail.startswith("-e nnapi -i NNAPI_FLAG_CPU_DISABLED")
    assert "completely, 1 of 1 nodes" in checks["onnxruntime_perf_test on the npu"].detail
    assert checks["executor_runner on the gpu"].ok is None and "Vulkan" in checks["executor_runner on the gpu"].detail
    assert all(c.ok is not False for c in checks.values()), [c for c in checks.values() if c.ok is False]

    # `splitbench devices`: the tools are on the phone now, and discover asks them for their flags
    monkeypatch.setenv("SPLITBENCH_ANDROID_TCP", phone.address)
    monkeypatch.setenv("SPLITBENCH_ANDROID_TOOLS", str(Path(tools["benchmark_model"]).parent))
    capsys.readouterr()
    assert main(["devices", "--json"]) == exitcodes.OK
    found = {d["target"]: d for d in json.loads(capsys.readouterr().out)["devices"]}
    assert found["android"]["accelerators"] == {"litert": ["cpu", "gpu", "npu"], "onnx": ["cpu", "gpu", "npu"],
                                                "executorch": ["cpu"]}
    assert found["cpu-1core"]["accelerators"] == {}  # cpu only, each pair with its reason
    lines = accelerator_lines(A.discover())
    assert lines == [f"android {phone.serial}: not on executorch/gpu: {AC.ET_MISSING['gpu']}",
                     f"android {phone.serial}: not on executorch/npu: {AC.ET_MISSING['npu']}"]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_run_with_every_accelerator_on_the_phone(tmp_path, phone, tools, capsys):
    """`splitbench run` with `[run] accelerators = ["cpu", "gpu", "npu"]` on the loopback phone, through the CLI and
    the orchestrator: one row per accelerator, each with its setting and the tool's delegation; a delegate that did
    not apply and a provider the build lacks are failed rows with the tool's words, the rest measured."""
    phone.set_accelerators("benchmark_model", GPU="partially", NNAPI="not")
    (tmp_path / "tiny_model.py").write_text((FIXTURES / "tiny_model.py").read_text())
    text = (FIXTURES / "tiny.toml").read_text().replace('cuts = ["conv1", "conv2"]', 'cuts = ["conv1"]')
    text = text.replace("timeout_s = 120", 'timeout_s = 120\naccelerators = ["cpu", "gpu", "npu"]')
    text = text.replace("[export]\n", f'[export]\ncache_dir = "{tmp_path / "cache"}"\n')
    text += "\n[android]\n" + "".join(f"{k} = {v}\n" for k, v in FAST.items())
    text += "\n[android.tools]\n" + "".join(f'{k} = "{v}"\n' for k, v in tools.items())
    spec = tmp_path / "tiny.toml"
    spec.write_text(text)
    out = tmp_path / "out"
    assert main(["run", str(spec), "--out", str(out), "--target", f"android:{phone.address}"]) == \
        exitcodes.CONFIG_FAILED
    s = pd.read_csv(out / "summary.csv").set_index(["config", "backend", "accelerator"])
    assert len(s) == 12 and set(s.index.get_level_values("accelerator")) == {"cpu", "gpu", "npu"}
    assert (s["status"] == "failed").sum() == 4, s[["status", "reason"]].to_string()
    for config in ("conv1-simple", "full"):
        row = lambda backend, acc: s.loc[(config, backend, acc)]  # noqa: E731
        assert row("litert", "cpu")["status"] == "ok" and row("onnx", "cpu")["status"] == "ok"
        assert row("onnx", "cpu")["accelerator_setting"] == "-e cpu -x 1 -y 1"
        gpu = row("litert", "gpu")
        assert gpu["status"] == "ok" and gpu["accelerator_setting"] == "--use_gpu=true" and gpu["delegated"] == "partially"
        assert gpu["delegated_nodes"] == gpu["total_nodes"] - 1 and gpu["n_runs"] == 5
        npu = row("litert", "npu")
        assert npu["status"] == "failed" and "the NNAPI delegate did not apply" in npu["reason"]
        assert npu["delegated"] == "not" and pd.isna(npu["infer_ms_median"])  # never the CPU's numbers as the npu's
        assert row("onnx", "gpu")["status"] == "failed" and "QNN is not supported in this build" in row("onnx", "gpu")["reason"]
        onpu = row("onnx", "npu")
        assert onpu["status"] == "ok" and onpu["accelerator_setting"].startswith("-e nnapi -i NNAPI_FLAG_CPU_DISABLED")
        assert (onpu["delegated"], onpu["delegated_nodes"], onpu["total_nodes"]) == ("completely", 1, 1)
    samples = pd.read_parquet(out / "samples.parquet")
    assert set(samples.query("phase == 'timed'")["accelerator"]) == {"cpu", "npu"}  # onnx: cpu and npu samples
