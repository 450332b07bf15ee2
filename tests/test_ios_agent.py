"""The iOS agent against the loopback iPhone (tests/loopback_ios.py): a session, prepare, measure, every
precondition unmet, every fault; and ``discover``, ``doctor``, ``clean``.

The loopback's app stand-in runs as real processes on this host and writes schema-valid results; the
numbers are the stand-in's (its records say so), never Core ML's.
"""

from __future__ import annotations

import json
import os
import plistlib
import zipfile
from pathlib import Path

import pytest

pytest.importorskip("pymobiledevice3", reason="the ios extra is not installed (pip install 'splitbench[ios]')")
pytest.importorskip("jsonschema", reason="the ios extra is not installed (pip install 'splitbench[ios]')")

from device_agents.base import CRASHED, FAILED, OK, TIMEOUT, AgentError, DeviceUnavailable  # noqa: E402
from device_agents.ios import agent as ios_agent  # noqa: E402
from device_agents.ios import protocol  # noqa: E402
from device_agents.ios import transport as ios_transport  # noqa: E402
from device_agents.ios.session import ALL_CHECKS  # noqa: E402
from tests import loopback_ios as lb  # noqa: E402
from tests.ios_fixtures import TINY, job, leftovers, make_agent, tiny, new_phone, phone  # noqa: E402,F401 (fixtures)


# --------------------------------------------------------------------------------------------------
# A working phone


def test_a_job_measures_every_field_of_the_contract(phone):
    with make_agent(phone) as agent:
        info = agent.describe()
        assert (info.device_id, info.target, info.platform, info.threads) == (phone.udid, "ios", "ios", None)
        assert info.accelerators == {"coreml": ("cpu", "gpu", "npu")} and "loopback stand-in" in info.name
        assert info.fingerprint["standin"] is True and info.fingerprint["schema_version"] == protocol.SCHEMA_VERSION
        path = agent.prepare(tiny())
        assert path == "splitbench/models/tinykey/tiny.mlpackage"
        result = agent.measure(job(path, runs=7, warm_loads=2))
    assert result.status == OK, result.reason
    result.check(job(path, runs=7, warm_loads=2))
    assert len(result.infer_ns) == 7 and len(result.warmup_ns) == 2 and len(result.load_warm_ns) == 2
    assert result.first_infer_ns > 0 and result.compile_ns > 0 and result.load_cold_ns > 0
    assert result.cold_method == "first_launch"
    mem = result.primary_memory
    assert mem.method == "vmhwm_in_process" and mem.before_load_b > 0 and mem.peak_b >= mem.after_load_b
    assert result.wall_runs_ns > 0 and result.cpu_ns > 0
    assert result.pinning.startswith("none") and result.compute_units == "cpuOnly"
    d = result.delegation
    assert (d.accelerator, d.setting, d.applied) == ("cpu", "computeUnits=cpuOnly", "unknown")
    assert "MLComputePlan" in d.words and d.delegated_nodes is None  # Core ML does not say: never assumed
    assert "loopback stand-in (not Core ML)" in result.runtime
    assert any("not Core ML" in n for n in result.notes)
    assert result.conditions_before is not None and result.conditions_before.thermal_status is None  # not obtained
    assert [la["phase"] for la in result.diagnostics["launches"]] == ["compile", "cold", "warm", "warm"]
    assert [la["phase"] for la in phone.launches] == ["hello", "compile", "cold", "warm", "warm"]
    assert len({la["pid"] for la in phone.launches}) == 5  # one fresh process per launch
    assert leftovers(phone) == []


def test_the_host_writes_and_the_stand_in_returns_schema_valid_files(phone, monkeypatch):
    written, read = [], []
    agent = make_agent(phone)
    with agent:
        t = agent.transport
        real_write, real_read = t.write, t.read
        monkeypatch.setattr(t, "write", lambda p, d: (written.append((p, d)), real_write(p, d))[1])
        monkeypatch.setattr(t, "read", lambda p: read.append((p, real_read(p))) or read[-1][1])
        agent.measure(job(agent.prepare(tiny())))
    jobs = [json.loads(d) for p, d in written if "/jobs/" in p]
    results = [json.loads(d) for p, d in read if "/results/" in p]
    assert [j["phase"] for j in jobs] == ["compile", "cold", "warm"] and len(results) == 3
    for doc in jobs:
        protocol.validate(doc, "job")
    for doc in results:
        protocol.validate(doc, "result")
        assert doc["device"]["standin"] is True


def test_a_package_is_pushed_once_per_content_key(phone):
    with make_agent(phone) as agent:
        agent.prepare(tiny())
        assert phone.pushes == 1
        assert agent.prepare(tiny()) == "splitbench/models/tinykey/tiny.mlpackage"
        assert phone.pushes == 1
    with make_agent(phone) as agent:  # a new session finds it on the phone
        agent.prepare(tiny())
        assert phone.pushes == 1
        marker = phone.container() / "Documents/splitbench/models/tinykey/complete.json"
        marker.write_text(json.dumps({"sha256": "something else"}))  # a push cut short, or other bytes
    with make_agent(phone) as agent:
        agent.prepare(tiny())
        assert phone.pushes == 2
        assert json.loads(marker.read_text())["sha256"] == tiny().sha256


def test_a_host_path_is_prepared_by_measure(phone):
    with make_agent(phone) as agent:
        result = agent.measure(job(str(TINY)))
    assert result.status == OK, result.reason


@pytest.mark.parametrize("accelerator, units", [("gpu", "cpuAndGPU"), ("npu", "cpuAndNeuralEngine")])
def test_the_accelerator_is_core_mls_compute_units_and_the_host_memory_cross_check(phone, accelerator, units):
    with make_agent(phone, sysmontap=True) as agent:
        result = agent.measure(job(agent.prepare(tiny()), accelerator=accelerator))
    assert result.status == OK and result.compute_units == units
    assert phone.launches[-1]["job"]["compute_units"] == units  # what the app was told to set
    assert (result.delegation.accelerator, result.delegation.setting) == (accelerator, f"computeUnits={units}")
    assert result.delegation.applied == "unknown"
    assert any(f"computeUnits={units}" in n and "does not say which ran where" in n for n in result.notes)
    methods = [m.method for m in result.memory]
    assert methods[0] == "vmhwm_in_process"
    if len(methods) > 1:  # sampled while the cold launch ran (it may finish before the first sample)
        assert methods[1] == "sysmontap" and result.memory[1].peak_b > 0


def test_a_package_core_ml_refuses_is_a_failed_row(phone, tmp_path):
    broken = tmp_path / "broken.mlpackage"
    (broken / "Data").mkdir(parents=True)
    (broken / "Data" / "junk").write_bytes(b"\0" * 64)
    with make_agent(phone) as agent:
        result = agent.measure(job(agent.prepare(tiny("broken", broken)), key="broken"))
    assert result.status == FAILED
    assert result.reason.startswith("compile launch: RuntimeError: broken.mlpackage is not a Core ML package")
    assert leftovers(phone) == []


def test_a_result_that_breaks_the_schema_is_a_failed_row(new_phone):
    phone = new_phone(knobs=lb.Knobs(faults=[lb.Fault("bad_result", "warm")]))
    with make_agent(phone) as agent:
        result = agent.measure(job(agent.prepare(tiny())))
    assert result.status == FAILED
    assert result.reason == ("the agent app and this host disagree on the result format: result v1 at (top): "
                             "Additional properties are not allowed ('gpu_ns' was unexpected)")


def test_options_are_validated():
    with pytest.raises(AgentError, match=r"\[ios\]: unknown key 'units'; known keys: app, bundle_id"):
        ios_agent.agent_for("ios", units="cpuOnly")
    with pytest.raises(AgentError, match=r"\[ios\].compute_units is gone: .* follow \[run\].accelerators .* "
                                         r'set \[run\].accelerators = \["gpu"\]$'):
        ios_agent.agent_for("ios", compute_units="cpuAndGPU")
    with pytest.raises(AgentError, match=r"compute_units is gone: .*; remove it$"):
        ios_agent.agent_for("ios", compute_units="all")
    with pytest.raises(AgentError, match="tunnel"):
        ios_agent.agent_for("ios", tunnel="ssh")
    with pytest.raises(AgentError, match="timeout_s = True"):
        ios_agent.agent_for("ios", timeout_s=True)
    with pytest.raises(AgentError, match="unknown iOS target"):
        ios_agent.agent_for("ios:not a udid")
    a = ios_agent.agent_for("ios:00008020-ABC", timeout_s=5, app="x.ipa", sysmontap=True)
    assert a.wanted_udid == "00008020-ABC" and a.options.timeout_s == 5


# --------------------------------------------------------------------------------------------------
# Preconditions: each unmet one stops the session with one line saying how to fix it


def _fails(phone_or_phones, match: str, target: str | None = None, **options) -> None:
    phones = phone_or_phones if isinstance(phone_or_phones, list) else [phone_or_phones]
    with pytest.raises(AgentError, match=match) as err:
        with make_agent(*phones, target=target, **options):
            pass
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("knob, value, match", [
    ("usbmuxd", False, r"usbmuxd cannot be reached .*systemctl start usbmuxd"),
    ("attached", False, r"is not attached over USB \(none attached\): connect the iPhone"),
    ("paired", False, r"paired and trusted: .*not trusted\. Fix: .*pymobiledevice3 lockdown pair"),
    ("developer_mode", False, r"Developer Mode: off\. Fix: .*Privacy & Security > Developer Mode"),
    ("ddi_mounted", False, r"developer disk image: not mounted\. Fix: `pymobiledevice3 mounter auto-mount`"),
    ("tunnel", False, r"tunnel \(iOS 17\+\): .*UserspaceTunnelUnavailableError.*remote tunneld"),
    ("app_installed", False, r"agent app: org\.splitbench\.agent is not installed\. Fix: .*make ios-agent"),
    ("app_version", "0.9", r"agent app: org\.splitbench\.agent 0\.9 is installed, this splitbench needs 1\.0"),
    ("free_bytes", 10_000_000, r"free space: 10\.0 MB free\. Fix: free space on the iPhone"),
    ("locked", True, r"agent app answers: the iPhone is locked\. Fix: unlock the iPhone .*Auto-Lock: Never"),
])
def test_every_unmet_precondition_is_one_line(new_phone, knob, value, match):
    phone = new_phone(knobs=lb.Knobs(**{knob: value}))
    _fails(phone, match)
    assert not any(p.poll() is None for p in phone.processes.values())


def test_targets_choose_one_phone(new_phone):
    a, b = new_phone("a", udid="00008020-AAAA"), new_phone("b", udid="00008020-BBBB")
    _fails([a, b], r"2 iPhones attached \(00008020-AAAA, 00008020-BBBB\): choose one with --target ios:<udid>",
           target="ios")
    _fails([a, b], r"iPhone 00008020CCCC is not attached over USB \(attached: 00008020-AAAA, 00008020-BBBB\)",
           target="ios:00008020CCCC")
    with make_agent(a, b, target="ios:00008020bbbb") as agent:  # dashes and case do not matter
        assert agent.describe().device_id == "00008020-BBBB"


def test_the_tunnel_below_17_tunneld_and_only_tunneld(new_phone):
    old = new_phone("old", ios="16.7", knobs=lb.Knobs(tunnel=False))
    via_tunneld = new_phone("new", udid="00008020-TUNNELD", knobs=lb.Knobs(tunnel=False, tunneld="serves"))
    plain = new_phone("plain", udid="00008020-PLAIN")
    with make_agent(old) as agent:  # below iOS 17 DVT goes over lockdown
        assert agent.transport.rsd is None
    with make_agent(via_tunneld) as agent:  # a running tunneld is used first
        assert agent.transport.rsd is not None
    _fails(plain, r"tunnel \(iOS 17\+\): tunneld is not running", tunnel="tunneld")
    with make_agent(plain, tunnel="userspace") as agent:
        assert agent.transport.rsd is not None


def test_two_iphones_on_ios_17_need_tunneld(new_phone):
    a, b = new_phone("a", udid="00008020-AAAA"), new_phone("b", udid="00008020-BBBB")
    with make_agent(a, b, target="ios:00008020-AAAA"):  # holds the process's one userspace tunnel
        _fails([a, b], r"tunnel \(iOS 17\+\): PyMobileDevice3Exception: A userspace tunnel is already active.*"
                       r"tunnel = 'tunneld'", target="ios:00008020-BBBB")
    with make_agent(a, b, target="ios:00008020-BBBB"):  # released when the first session closed
        pass


def _app_package(tmp_path: Path, *, signed: bool, ipa: bool) -> Path:
    app = tmp_path / "SplitbenchAgent.app"
    app.mkdir()
    (app / "Info.plist").write_bytes(plistlib.dumps({"CFBundleIdentifier": lb.BUNDLE_ID, "CFBundleVersion": "7",
                                                     "CFBundleShortVersionString": protocol.AGENT_APP_VERSION,
                                                     "CFBundleExecutable": lb.EXECUTABLE}))
    (app / lb.EXECUTABLE).write_bytes(b"\xcf\xfa\xed\xfe")
    if signed:
        (app / "embedded.mobileprovision").write_bytes(b"profile")
    if not ipa:
        return app
    path = tmp_path / "SplitbenchAgent.ipa"
    with zipfile.ZipFile(path, "w") as z:
        for f in app.iterdir():
            z.write(f, f"Payload/SplitbenchAgent.app/{f.name}")
    return path


@pytest.mark.parametrize("ipa", [True, False])
def test_the_app_is_installed_from_the_spec(tmp_path, new_phone, ipa):
    phone = new_phone(knobs=lb.Knobs(app_installed=False))
    with make_agent(phone, app=str(_app_package(tmp_path, signed=True, ipa=ipa))) as agent:
        assert agent.describe().fingerprint["agent_app_build"] == "7"


def test_an_unsigned_app_is_refused_with_how_to_sign_it(tmp_path, new_phone):
    phone = new_phone(knobs=lb.Knobs(app_version="0.9"))
    _fails(phone, r"agent app: installing SplitbenchAgent\.ipa failed: .*0xe8008015.*Fix: sign the app",
           app=str(_app_package(tmp_path, signed=False, ipa=True)))
    _fails(phone, r"\[ios\]\.app: no such file", app=str(tmp_path / "missing.ipa"))


def test_an_app_not_signed_for_development_gets_its_documents(new_phone):
    phone = new_phone(knobs=lb.Knobs(app_development_signed=False))
    with make_agent(phone) as agent:
        assert agent.transport.container_mode == "documents"
        assert agent.measure(job(agent.prepare(tiny()), warm_loads=0)).status == OK


# --------------------------------------------------------------------------------------------------
# Faults during a run


def test_unplugged_while_the_session_opens_is_device_unavailable(new_phone):
    phone = new_phone(knobs=lb.Knobs(faults=[lb.Fault("unplug", "hello")]))
    with pytest.raises(DeviceUnavailable, match="dropped"):
        with make_agent(phone):
            pass


def test_unplugged_mid_job_is_device_unavailable(new_phone):
    phone = new_phone(knobs=lb.Knobs(faults=[lb.Fault("unplug", "cold", 2)]))
    with make_agent(phone) as agent:
        path = agent.prepare(tiny())
        assert agent.measure(job(path, warm_loads=0)).status == OK  # the first job finishes
        with pytest.raises(DeviceUnavailable) as err:
            agent.measure(job(path, warm_loads=0))
    assert err.value.device_id == phone.udid and "dropped" in err.value.reason


def test_locked_mid_job_is_device_unavailable(new_phone):
    phone = new_phone(knobs=lb.Knobs(faults=[lb.Fault("lock", "cold")]))
    with make_agent(phone) as agent:
        path = agent.prepare(tiny())
        with pytest.raises(DeviceUnavailable, match="sent to the background during the cold launch"):
            agent.measure(job(path))
        with pytest.raises(DeviceUnavailable, match="the iPhone is locked"):  # and the next launch is refused
            agent.measure(job(path))


@pytest.mark.parametrize("kind, said", [
    ("jetsam", r"^the system logged: jetsam \(the system freed memory\): SplitbenchAgent per-process-limit"),
    ("watchdog", r"^the system logged: the watchdog \(0x8badf00d.*crash EXC_CRASH SIGKILL, termination FRONTBOARD"),
])
def test_an_app_the_system_kills_is_a_crashed_row_with_what_it_logged(new_phone, kind, said):
    phone = new_phone(knobs=lb.Knobs(faults=[lb.Fault(kind, "cold")]))
    with make_agent(phone) as agent:
        result = agent.measure(job(agent.prepare(tiny())))
        assert result.status == CRASHED
        assert "; the cold launch ended without a result (pid " in result.reason
        assert __import__("re").search(said, result.reason), result.reason
        assert result.reason.endswith("(finished: compile)") and result.stderr_tail
        assert leftovers(phone) == []
        assert agent.measure(job(agent.prepare(tiny()), warm_loads=0)).status == OK  # the run goes on


def test_a_hung_app_is_killed_and_is_a_timeout_row(new_phone):
    phone = new_phone(knobs=lb.Knobs(faults=[lb.Fault("hang", "cold")]))
    with make_agent(phone) as agent:
        result = agent.measure(job(agent.prepare(tiny()), timeout_s=4))
        assert result.status == TIMEOUT
        assert result.reason.startswith("no result within timeout_s=4: the cold launch wrote no result in time "
                                        "and was killed (pid ")
        hung = next(la["pid"] for la in phone.launches if la["fault"] == "hang")
        assert phone.processes[hung].poll() is not None  # killed
        assert agent.measure(job(agent.prepare(tiny()), warm_loads=0)).status == OK


def test_the_spec_s_ios_timeout_wins(new_phone):
    phone = new_phone(knobs=lb.Knobs(faults=[lb.Fault("hang", "compile")]))
    with make_agent(phone, timeout_s=2) as agent:
        result = agent.measure(job(agent.prepare(tiny()), timeout_s=600))
    assert result.status == TIMEOUT and "timeout_s=2" in result.reason and "(finished: nothing)" in result.reason


def test_a_full_phone_is_one_clear_line(new_phone):
    phone = new_phone(knobs=lb.Knobs(free_bytes=60_000_000))
    with make_agent(phone) as agent:
        phone.knobs.free_bytes = 50_000_100  # filled up by something else since the session started
        with pytest.raises(DeviceUnavailable) as err:
            agent.prepare(tiny())
    assert err.value.reason.startswith("the iPhone is full (50.0 MB free, the model needs 3 kB and 50.0 MB are kept")
    assert err.value.reason.endswith("Settings > General > iPhone Storage), then --resume")


def test_a_write_refused_for_space_mid_push_is_the_same_line(phone, monkeypatch):
    with make_agent(phone) as agent:
        monkeypatch.setattr(agent.transport, "free_bytes", lambda: None)  # the phone does not say
        phone.knobs.free_bytes = phone.used_bytes + 100
        with pytest.raises(DeviceUnavailable, match=r"^.*the iPhone is full \(the model needs"):
            agent.prepare(tiny())
        assert not (phone.container() / "Documents/splitbench/models/tinykey").exists()


# --------------------------------------------------------------------------------------------------
# discover, doctor, clean


def test_discover_doctor_and_clean(phone, monkeypatch):
    monkeypatch.setattr(ios_transport, "load_services", lambda: lb.services(phone))
    [found] = ios_agent.discover()
    assert found.device_id == phone.udid and found.target == "ios" and found.backends["coreml"].startswith("Core ML")

    checks = ios_agent.doctor("ios")
    assert [c.name for c in checks] == ["pymobiledevice3", *ALL_CHECKS, "accelerators"]
    assert "npu (computeUnits=cpuAndNeuralEngine)" in checks[-1].detail
    assert found.accelerators == {"coreml": ("cpu", "gpu", "npu")}
    assert all(c.ok for c in checks if c.name != "free space"), checks

    with make_agent(phone) as agent:
        agent.prepare(tiny())
    [line] = ios_agent.clean("ios")
    assert line == f"{phone.udid}: removed /Documents/splitbench from org.splitbench.agent (1 pushed model(s))"
    assert not (phone.container() / "Documents" / "splitbench").exists()
    assert ios_agent.clean("ios") == []  # nothing left


def test_doctor_lists_what_it_could_not_check(phone, monkeypatch):
    monkeypatch.setattr(ios_transport, "load_services", lambda: lb.services(phone))
    phone.knobs.ddi_mounted = False
    checks = {c.name: c for c in ios_agent.doctor(f"ios:{phone.udid}")}
    assert checks["Developer Mode"].ok is True
    assert checks["developer disk image"].ok is False and "auto-mount" in checks["developer disk image"].fix
    assert checks["agent app answers"].ok is None and checks["agent app"].detail.startswith("not checked")
    phone.knobs.usbmuxd = False
    checks = ios_agent.doctor("ios")
    assert checks[1].name == "usbmuxd" and checks[1].ok is False and all(c.ok is None for c in checks[2:])
    with pytest.raises(AgentError, match="usbmuxd cannot be reached"):
        ios_agent.discover()


def test_without_pymobiledevice3_the_message_says_what_to_install(monkeypatch):
    def missing():
        raise ImportError("pymobiledevice3 is not installed or too old (No module named 'pymobiledevice3'): "
                          "pip install 'splitbench[ios]'")

    monkeypatch.setattr(ios_transport, "load_services", missing)
    with pytest.raises(AgentError, match=r"pip install 'splitbench\[ios\]'"):
        ios_agent.discover()
    with pytest.raises(AgentError, match=r"pip install 'splitbench\[ios\]'"):
        with ios_agent.agent_for("ios"):
            pass


# --------------------------------------------------------------------------------------------------
# A real iPhone


@pytest.mark.device
@pytest.mark.skipif(not os.environ.get("SPLITBENCH_IOS_UDID"),
                    reason="needs a real iPhone with the agent app installed: set SPLITBENCH_IOS_UDID=<udid>")
def test_a_real_iphone_measures_the_tiny_package():
    with ios_agent.agent_for(f"ios:{os.environ['SPLITBENCH_IOS_UDID']}",
                             **({"app": os.environ["SPLITBENCH_IOS_APP"]} if os.environ.get("SPLITBENCH_IOS_APP") else {})
                             ) as agent:
        info = agent.describe()
        assert info.fingerprint["standin"] is False
        result = agent.measure(job(agent.prepare(tiny()), runs=10, warm_loads=2, timeout_s=300))
    assert result.status == OK, result.reason
    assert result.primary_memory.method == "phys_footprint" and "Core ML" in result.runtime
