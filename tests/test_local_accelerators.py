"""cpu-1core and accelerators: one CPU core of this host runs only the cpu. `splitbench run` with
`[run] accelerators = ["cpu", "gpu"]` measures the cpu rows, writes the gpu ones as skipped rows with the reason,
and exits 0; the cpu rows record the runtime's setting; asking the agent itself for the gpu is a failed result."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from device_agents.base import FAILED, MeasureJob, open_agent
from harness.cli import main
from harness.core import exitcodes
from harness.results import store

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.slow
def test_gpu_rows_on_cpu_1core_are_skipped_with_the_reason_and_the_run_succeeds(tmp_path, capsys):
    (tmp_path / "tiny_model.py").write_text((FIXTURES / "tiny_model.py").read_text())
    text = (FIXTURES / "tiny.toml").read_text().replace('cuts = ["conv1", "conv2"]', 'cuts = ["conv1"]')
    text = text.replace('backends = ["onnx", "litert"]', 'backends = ["onnx"]')
    text = text.replace("[export]\n", f'[export]\ncache_dir = "{tmp_path / "cache"}"\n')
    spec = tmp_path / "tiny.toml"
    spec.write_text(text.replace("timeout_s = 120", 'timeout_s = 120\naccelerators = ["cpu", "gpu"]'))
    out = tmp_path / "out"
    assert main(["run", str(spec), "--out", str(out)]) == exitcodes.OK
    assert "2 ok, 0 failed, 2 skipped" in capsys.readouterr().err

    s = pd.read_csv(out / "summary.csv").set_index(["config", "accelerator"])
    assert sorted(s.index) == [("conv1-simple", "cpu"), ("conv1-simple", "gpu"), ("full", "cpu"), ("full", "gpu")]
    gpu, cpu = s.xs("gpu", level="accelerator"), s.xs("cpu", level="accelerator")
    assert (gpu["status"] == "skipped").all() and gpu["infer_ms_median"].isna().all()
    assert gpu["reason"].str.contains("cpu-1core is one CPU core of this host: gpu runs only on a phone").all()
    assert (cpu["status"] == "ok").all() and cpu["infer_ms_median"].notna().all()
    assert set(cpu["accelerator_setting"]) == {"CPUExecutionProvider, intra_op_num_threads=1, inter_op_num_threads=1"}
    assert set(cpu["delegated"]) == {"unknown"} and cpu["delegated_nodes"].isna().all()  # no delegate asked for
    words = {r.result["delegation"]["words"] for r in store.load_records(out) if r.identity.accelerator == "cpu"}
    assert words == {"session.get_providers(): ['CPUExecutionProvider']"}  # what the runtime said
    # resume: the skipped rows are kept, nothing measured again
    assert main(["run", str(spec), "--out", str(out), "--resume"]) == exitcodes.OK
    assert len(list((out / "records").glob("*.json"))) == 4


def test_the_local_agent_refuses_an_accelerator_and_says_why(capsys):
    with open_agent("cpu-1core") as agent:
        info = agent.describe()
        r = agent.measure(MeasureJob(artifact_path="/nonexistent.onnx", backend="onnx", input_shape=(1, 3, 8, 8),
                                     accelerator="npu"))
    assert info.cannot_run("onnx", "npu") == r.reason
    assert r.status == FAILED and "npu runs only on a phone" in r.reason
    assert main(["devices", "--json"]) == exitcodes.OK
    local = next(d for d in json.loads(capsys.readouterr().out)["devices"] if d["target"] == "cpu-1core")
    assert local["accelerators"] == {} and "onnx/gpu" in local["accelerator_notes"]
