"""`splitbench run --target ios:<udid>` end to end on the loopback iPhone, through the real orchestrator,
CLI, tables, figures, report and recommendation: a clean run, the phone unplugged or locked mid-run
(then --resume), an app the system kills and a hung one, and every unmet precondition.

The Core ML packages are really exported (coremltools, once per module); the loopback's app stand-in
measures them with honest non-Core ML work, and every row says so.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("pymobiledevice3", reason="the ios extra is not installed (pip install 'splitbench[ios]')")
pytest.importorskip("jsonschema", reason="the ios extra is not installed (pip install 'splitbench[ios]')")
pytest.importorskip("coremltools", reason="the coreml extra is not installed (pip install 'splitbench[coreml]')")

import pandas as pd  # noqa: E402

from device_agents.base import MeasureResult  # noqa: E402
from device_agents.ios import transport as ios_transport  # noqa: E402
from harness.core import exitcodes  # noqa: E402
from harness.results import store  # noqa: E402
from harness.cli import main  # noqa: E402
from tests import loopback_ios as lb  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

FIXTURES = Path(__file__).resolve().parent / "fixtures"
CONFIGS = ["conv1-simple", "conv2-simple", "full"]
CONTRACT_FIELDS = set(MeasureResult.__dataclass_fields__)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """The model and the export cache, shared by the module's runs (the export is done once)."""
    d = tmp_path_factory.mktemp("ios_run")
    (d / "tiny_model.py").write_text((FIXTURES / "tiny_model.py").read_text())
    (d / "scores.csv").write_text(  # privacy scores a user gives; not measured here
        "model,cut,embedding,log_rank_privacy\ntiny_model:build,conv1,simple,0.40\ntiny_model:build,conv2,simple,0.55\n")
    return d


def write_spec(workdir: Path, tmp_path: Path, udid: str, accelerators: tuple[str, ...] = ("cpu",), **ios) -> Path:
    table = "".join(f"{k} = {json.dumps(v)}\n" for k, v in ios.items())
    spec = tmp_path / "tiny_ios.toml"
    spec.write_text(f"""name = "tiny_ios"
[model]
source = "{workdir / 'tiny_model.py'}:build"
seed = 0
[split]
cuts = ["conv1", "conv2"]
embeddings = ["simple"]
[export]
backends = ["coreml"]
cache_dir = "{workdir / 'cache'}"
[run]
targets = ["ios:{udid}"]
runs = 5
warmup = 2
warm_loads = 1
timeout_s = 60
accelerators = {json.dumps(list(accelerators))}
[privacy]
csv = "{workdir / 'scores.csv'}"
[ios]
{table}""")
    return spec


def attach(p: lb.LoopbackPhone, tmp_path: Path, monkeypatch) -> lb.LoopbackPhone:
    """Make ``p`` the only iPhone this host sees (the iOS agent's services are the loopback's)."""
    monkeypatch.setattr(ios_transport, "load_services", lambda: lb.services(p))
    monkeypatch.setenv("SPLITBENCH_LEASE_DIR", str(tmp_path / "leases"))
    return p


@pytest.fixture
def phone(tmp_path, monkeypatch):
    p = attach(lb.LoopbackPhone(tmp_path / "phone"), tmp_path, monkeypatch)
    yield p
    p.shutdown()


def summary(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "summary.csv").set_index("config")


def test_a_run_gives_core_ml_rows_through_summary_figures_report_and_recommendation(workdir, tmp_path, phone, capsys):
    spec, out = write_spec(workdir, tmp_path, phone.udid), tmp_path / "out"
    assert main(["run", str(spec), "--out", str(out)]) == exitcodes.OK
    s = summary(out)
    assert list(s.index) == CONFIGS and (s["backend"] == "coreml").all() and (s["status"] == "ok").all()
    assert (s["target"] == "ios").all() and (s["device_id"] == phone.udid).all()
    assert (s["n_runs"] == 5).all() and (s["load_warm_n"] == 1).all()
    for col in ("infer_ms_median", "first_infer_ms", "load_ms_cold", "load_ms_warm", "compile_ms", "mem_peak_mb"):
        assert (s[col] > 0).all(), col
    assert (s["cold_method"] == "first_launch").all() and (s["accelerator"] == "cpu").all()
    assert (s["accelerator_setting"] == "computeUnits=cpuOnly").all() and (s["delegated"] == "unknown").all()
    assert (s["memory_method"] == "vmhwm_in_process").all()  # the stand-in's; the app says phys_footprint
    assert s["notes"].str.contains("not an iPhone, not Core ML").all()
    assert s["device_name"].str.contains("loopback stand-in").all()
    assert s["runtime_version"].str.startswith("loopback stand-in (not Core ML)").all()

    for rec in store.load_records(out):
        r = rec.result
        assert set(r) == CONTRACT_FIELDS  # every field of the contract, filled or marked as not obtained
        assert r["pinning"].startswith("none") and r["threads"]["coreml"].startswith("OS-scheduled")
        assert r["conditions_before"]["thermal_status"] is None  # not obtained by the stand-in: null, not made up
        assert r["memory"][0]["before_load_b"] > 0 and r["cpu_ns"] > 0 and r["wall_runs_ns"] > 0
        assert rec.identity.threads is None and rec.identity.accelerator == "cpu"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["devices"][phone.udid]["fingerprint"]["standin"] is True
    assert (out / "figures" / "infer_box.png").stat().st_size > 1000
    assert "coreml" in (out / "report.html").read_text()
    assert len(pd.read_parquet(out / "samples.parquet").query("phase == 'timed'")) == 5 * 3

    capsys.readouterr()
    assert main(["recommend", str(out), "--max-latency-ms", "10000", "--json"]) == exitcodes.OK
    choice = json.loads(capsys.readouterr().out)["choice"]
    assert choice["backend"] == "coreml" and choice["target"] == "ios" and choice["config"] == "conv2-simple"

    # the phone's container holds the packages, once per content key, and no job files
    models = phone.container() / "Documents" / "splitbench" / "models"
    assert len(list(models.iterdir())) == 3 and phone.pushes == 3
    assert not list((phone.container() / "Documents" / "splitbench" / "jobs").iterdir())


def test_each_accelerator_is_a_row_with_its_compute_units(workdir, tmp_path, phone, capsys):
    spec, out = write_spec(workdir, tmp_path, phone.udid, accelerators=("cpu", "npu")), tmp_path / "out"
    assert main(["run", str(spec), "--out", str(out)]) == exitcodes.OK
    s = pd.read_csv(out / "summary.csv")
    assert len(s) == 6 and (s["status"] == "ok").all()
    by = s.set_index(["config", "accelerator"])
    assert set(by.xs("npu", level="accelerator")["accelerator_setting"]) == {"computeUnits=cpuAndNeuralEngine"}
    assert set(by.xs("cpu", level="accelerator")["accelerator_setting"]) == {"computeUnits=cpuOnly"}
    assert (s["delegated"] == "unknown").all() and s["delegated_nodes"].isna().all()  # Core ML does not say
    assert by.xs("npu", level="accelerator")["notes"].str.contains("does not say which ran where").all()
    told = {la["job"]["compute_units"] for la in phone.launches if la["phase"] == "cold"}
    assert told == {"cpuOnly", "cpuAndNeuralEngine"}  # what the app set, per job

    # the [ios] compute_units of earlier versions: one line saying what to write instead, before any work
    (tmp_path / "old").mkdir()
    old = write_spec(workdir, tmp_path / "old", phone.udid, compute_units="cpuAndNeuralEngine")
    capsys.readouterr()
    assert main(["run", str(old), "--out", str(tmp_path / "old-out")]) == exitcodes.USAGE
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "[ios].compute_units is gone" in err and '[run].accelerators = ["npu"]' in err
    assert not (tmp_path / "old-out" / "records").exists()


@pytest.mark.parametrize("fault", ["unplug", "lock"])
def test_a_phone_lost_mid_run_keeps_what_finished_and_resume_goes_on(workdir, tmp_path, phone, capsys, fault):
    phone.knobs.faults = [lb.Fault(fault, "cold", 2)]
    spec, out = write_spec(workdir, tmp_path, phone.udid), tmp_path / "out"
    assert main(["run", str(spec), "--out", str(out)]) == exitcodes.DEVICE_LOST
    err = capsys.readouterr()
    assert "its 2 remaining job(s) were not measured" in err.out + err.err
    s = summary(out)
    assert list(s.index) == ["conv1-simple"] and s.loc["conv1-simple", "status"] == "ok"  # no row for the others

    phone.knobs.attached, phone.knobs.locked, phone.knobs.faults = True, False, []  # back on the desk, unlocked
    assert main(["run", str(spec), "--out", str(out), "--resume"]) == exitcodes.OK
    s = summary(out)
    assert list(s.index) == CONFIGS and (s["status"] == "ok").all()
    assert json.loads((out / "manifest.json").read_text())["counts"]["measured_now"] == 2


def test_an_app_the_system_kills_and_a_hung_app_are_rows_and_the_run_goes_on(workdir, tmp_path, phone):
    phone.knobs.faults = [lb.Fault("jetsam", "cold", 1), lb.Fault("hang", "cold", 2)]
    spec, out = write_spec(workdir, tmp_path, phone.udid, timeout_s=4), tmp_path / "out"
    assert main(["run", str(spec), "--out", str(out)]) == exitcodes.CONFIG_FAILED
    s = summary(out)
    assert s.loc["conv1-simple", "status"] == "crashed"
    assert s.loc["conv1-simple", "reason"].startswith("the system logged: jetsam (the system freed memory): "
                                                      "SplitbenchAgent per-process-limit")
    crashed = next(r for r in store.load_records(out) if r.config == "conv1-simple")
    assert "JetsamEvent-" in crashed.reason and '"bug_type": "298"' in crashed.result["stderr_tail"]
    assert s.loc["conv2-simple", "status"] == "timeout"
    assert s.loc["conv2-simple", "reason"].startswith("no result within timeout_s=4: the cold launch")
    assert s.loc["full", "status"] == "ok"
    hung = next(la["pid"] for la in phone.launches if la["fault"] == "hang")
    assert phone.processes[hung].poll() is not None  # killed, not left running on the phone

    phone.knobs.faults = []
    assert main(["run", str(spec), "--out", str(out), "--resume"]) == exitcodes.OK  # failures are retried
    assert (summary(out)["status"] == "ok").all()


@pytest.mark.parametrize("knob, value, said", [
    ("usbmuxd", False, "usbmuxd cannot be reached"),
    ("attached", False, "is not attached over USB"),
    ("paired", False, "paired and trusted"),
    ("developer_mode", False, "Developer Mode: off"),
    ("ddi_mounted", False, "developer disk image: not mounted"),
    ("tunnel", False, "tunnel (iOS 17+)"),
    ("app_installed", False, "agent app: org.splitbench.agent is not installed"),
    ("app_version", "0.9", "agent app: org.splitbench.agent 0.9 is installed"),
    ("free_bytes", 1_000_000, "free space: 1.0 MB free"),
    ("locked", True, "agent app answers: the iPhone is locked"),
])
def test_an_unmet_precondition_stops_the_run_before_any_work_with_one_line(workdir, tmp_path, monkeypatch, capsys,
                                                                             knob, value, said):
    phone = attach(lb.LoopbackPhone(tmp_path / "phone", knobs=lb.Knobs(**{knob: value})), tmp_path, monkeypatch)
    try:
        spec, out = write_spec(workdir, tmp_path, phone.udid), tmp_path / "out"
        assert main(["run", str(spec), "--out", str(out)]) == exitcodes.USAGE
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and said in err and "\n" not in err, err
        assert not (out / "records").exists()
    finally:
        phone.shutdown()


def test_a_phone_that_drops_while_the_run_starts_is_unreachable(workdir, tmp_path, phone, capsys):
    phone.knobs.faults = [lb.Fault("unplug", "hello")]
    spec, out = write_spec(workdir, tmp_path, phone.udid), tmp_path / "out"
    assert main(["run", str(spec), "--out", str(out)]) == exitcodes.DEVICE_LOST
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: ios:{phone.udid} is unavailable: the connection to the iPhone dropped")
    assert err.endswith("make it available (or remove it from [run].targets) and run again")


def test_devices_doctor_and_clean_commands(workdir, tmp_path, phone, capsys):
    assert main(["devices", "--json"]) == exitcodes.OK
    found = json.loads(capsys.readouterr().out)["devices"]
    assert [d["device_id"] for d in found if d["platform"] == "ios"] == [phone.udid]
    assert main(["doctor", "ios"]) == exitcodes.OK
    assert "FAIL" not in capsys.readouterr().out
    phone.knobs.ddi_mounted = False
    assert main(["doctor", "ios"]) == exitcodes.USAGE
    assert "developer disk image: not mounted — fix: `pymobiledevice3 mounter auto-mount`" in capsys.readouterr().out
    phone.knobs.ddi_mounted = True
    assert main(["clean", "--device", f"ios:{phone.udid}"]) == exitcodes.OK
    assert "removed" in capsys.readouterr().out
