"""The iOS agent when iOS will not launch the app, when tunneld has lost its tunnel, how it reads the
crash reports (one connection per job, closed), and package names that need escaping: against the
loopback iPhone (tests/loopback_ios.py), whose refusals are the NSErrors real phones send (cited there).
"""

from __future__ import annotations

import json
import re
import shutil

import pytest

pytest.importorskip("pymobiledevice3", reason="the ios extra is not installed (pip install 'splitbench[ios]')")
pytest.importorskip("jsonschema", reason="the ios extra is not installed (pip install 'splitbench[ios]')")

from device_agents.base import OK, AgentError, DeviceUnavailable  # noqa: E402
from device_agents.ios import protocol  # noqa: E402
from device_agents.ios import transport as ios_transport  # noqa: E402
from device_agents.ios.agent import doctor  # noqa: E402
from device_agents.ios.session import FIX  # noqa: E402
from tests import loopback_ios as lb  # noqa: E402
from tests import loopback_ios_services as lbs  # noqa: E402
from tests.ios_fixtures import TINY, job, make_agent, tiny, new_phone, phone  # noqa: E402,F401 (fixtures)

# Each refusal: the knob, what the one line says, the fix it gives.
REFUSALS = {
    "untrusted": (r"iOS refused to launch the app: The request was denied by service delegate \(SBMainWorkspace\) "
                  r"for reason: Security \(\"Unable to launch org\.splitbench\.agent because it has an invalid code "
                  r"signature, inadequate entitlements or its profile has not been explicitly trusted by the user\"\)",
                  FIX["untrusted"]),
    "not_found": (r"the app is not installed: Application info provider \(FBSApplicationLibrary\) returned nil for "
                  r"\"org\.splitbench\.agent\"", FIX["agent app"]),
    "no_pid": (r"DVT process control launched no process \(the iPhone answered pid 0 to the launch request\)",
               FIX["no process"]),
    "other": (r"iOS refused to launch the app: FBSOpenApplicationErrorDomain error 1 \(The operation couldn.t be "
              r"completed\. \(FBSOpenApplicationErrorDomain error 1\.\)\)", FIX["dvt"]),
}


@pytest.mark.parametrize("refusal", sorted(REFUSALS))
def test_a_launch_ios_refuses_is_one_line_with_its_fix(new_phone, monkeypatch, refusal):
    said, fix = REFUSALS[refusal]
    phone = new_phone(knobs=lb.Knobs(launch_refusal=refusal))
    with pytest.raises(AgentError) as err:
        with make_agent(phone):
            pass
    line = str(err.value)
    assert "\n" not in line
    assert re.fullmatch(rf"iPhone {phone.udid}: agent app answers: {said}\. Fix: {re.escape(fix)}", line), line
    assert phone.launches == []  # nothing started

    # `splitbench doctor ios` says the same, at the same step
    monkeypatch.setattr(ios_transport, "load_services", lambda: lb.services(phone))
    checks = {c.name: c for c in doctor("ios")}
    answers = checks["agent app answers"]
    assert answers.ok is False and re.fullmatch(said + r"\.?", answers.detail) and answers.fix == fix
    assert all(c.ok for name, c in checks.items() if name not in ("agent app answers", "free space"))


@pytest.mark.parametrize("refusal", sorted(REFUSALS))
def test_a_launch_refused_mid_run_loses_the_phone_with_the_fix(phone, refusal):
    said, fix = REFUSALS[refusal]
    with make_agent(phone) as agent:
        path = agent.prepare(tiny())
        assert agent.measure(job(path, warm_loads=0)).status == OK
        phone.knobs.launch_refusal = refusal
        with pytest.raises(DeviceUnavailable) as err:
            agent.measure(job(path, warm_loads=0))
    assert err.value.device_id == phone.udid
    assert re.fullmatch(rf"iPhone {phone.udid}: {said}\. Fix: {re.escape(fix)}", err.value.reason), err.value.reason


def test_the_refusals_are_what_pymobiledevice3_raises(tmp_path):
    """The stand-in raises pymobiledevice3's own DTXNsError (not a PyMobileDevice3Exception) and, for no pid,
    the AssertionError of ProcessControl.launch's `assert result`: the agent sees what it would see."""
    import asyncio

    from pymobiledevice3.dtx.exceptions import DTXNsError
    from pymobiledevice3.exceptions import PyMobileDevice3Exception

    for refusal, expected in [("untrusted", DTXNsError), ("other", DTXNsError), ("not_found", DTXNsError),
                              ("no_pid", AssertionError)]:
        phone = lb.LoopbackPhone(tmp_path / refusal, knobs=lb.Knobs(launch_refusal=refusal))
        pc = lbs.LoopbackProcessControl(lbs.LoopbackDvtProvider(lbs.LoopbackLockdown(phone, paired=True)))
        with pytest.raises(expected) as err:
            asyncio.run(pc.launch(lb.BUNDLE_ID, arguments=[]))
        assert not isinstance(err.value, PyMobileDevice3Exception)
        assert phone.processes == {}


# --------------------------------------------------------------------------------------------------
# tunneld


@pytest.mark.parametrize("tunnel", ["auto", "tunneld"])
def test_tunneld_listing_the_phone_without_a_working_tunnel_is_device_unavailable(new_phone, monkeypatch, tunnel):
    """get_tunneld_device_by_udid answers rsds[0] of no connected tunnel: IndexError (tunneld/api.py l.195)."""
    phone = new_phone(knobs=lb.Knobs(tunnel=False, tunneld="broken"))
    with pytest.raises(DeviceUnavailable) as err:
        with make_agent(phone, tunnel=tunnel):
            pass
    assert err.value.device_id == phone.udid
    assert err.value.reason == ("tunnel (iOS 17+): tunneld lists this iPhone but its tunnel could not be connected "
                                f"(tunneld has a tunnel that no longer answers). Fix: {FIX['tunneld tunnel']}")
    assert phone.launches == []

    monkeypatch.setattr(ios_transport, "load_services", lambda: lb.services(phone))
    checks = {c.name: c for c in doctor("ios", tunnel=tunnel)}
    assert checks["developer disk image"].ok is True
    assert checks["tunnel (iOS 17+)"].ok is False and checks["tunnel (iOS 17+)"].fix == FIX["tunneld tunnel"]
    assert checks["developer services"].ok is None and checks["agent app answers"].ok is None


def test_tunneld_without_a_tunnel_to_the_phone(new_phone):
    phone = new_phone(knobs=lb.Knobs(tunneld="unlisted"))
    with make_agent(phone) as agent:  # auto: the userspace tunnel instead
        assert agent.transport.rsd is not None
    with pytest.raises(AgentError, match=r"tunnel \(iOS 17\+\): tunneld runs but has no tunnel to this iPhone\. "
                                         r"Fix: iOS 17\.4\+"):
        with make_agent(phone, tunnel="tunneld"):
            pass


# --------------------------------------------------------------------------------------------------
# Crash reports


MOVER, COPIER = lbs.LoopbackCrashReports.CRASH_MOVER_NAME, lbs.LoopbackCrashReports.COPY_MOBILE_NAME


def test_crash_reports_are_flushed_once_per_job_through_connections_that_are_closed(new_phone):
    phone = new_phone(knobs=lb.Knobs(faults=[lb.Fault("jetsam", "cold", 2)]))
    with make_agent(phone) as agent:
        path = agent.prepare(tiny())
        statuses = [agent.measure(job(path, warm_loads=0)).status for _ in range(3)]
        assert statuses == ["ok", "crashed", "ok"]  # the crashed job polled the reports until one appeared
        assert phone.opened[MOVER] == phone.closed[MOVER] == 3  # one flush per job, its connection closed
        assert phone.opened[COPIER] == phone.closed[COPIER] == 3  # one report connection per job, closed


def test_the_count_sees_pymobiledevice3_s_own_flush_leak(phone):
    """CrashReportsManager.flush never closes the mover's connection (crash_reports.py l.225-236): the
    stand-in's flush does the same, and the count above would see it."""
    import asyncio

    async def flush_with_the_library_method():
        async with lbs.LoopbackCrashReports(lbs.LoopbackLockdown(phone, paired=True)) as reports:
            await reports.flush()

    asyncio.run(flush_with_the_library_method())
    assert phone.opened[MOVER] == 1 and phone.closed[MOVER] == 0


# --------------------------------------------------------------------------------------------------
# Package names that need escaping


def test_a_package_named_with_a_space_and_a_plus_is_escaped_not_refused(phone, tmp_path, monkeypatch):
    named = tmp_path / "tiny model+v2.mlpackage"
    shutil.copytree(TINY, named)
    written = []
    with make_agent(phone) as agent:
        real_write = agent.transport.write
        monkeypatch.setattr(agent.transport, "write", lambda p, d: (written.append((p, d)), real_write(p, d))[1])
        path = agent.prepare(tiny("spacey", named))
        assert path == "splitbench/models/spacey/tiny model+v2.mlpackage"
        result = agent.measure(job(path, warm_loads=1, key="spacey"))
    assert result.status == OK, result.reason
    jobs = [json.loads(d) for p, d in written if "/jobs/" in p]
    assert {j["model"]["package"] for j in jobs} == {"splitbench/models/spacey/tiny%20model%2Bv2.mlpackage"}
    assert (phone.container() / "Documents/splitbench/models/spacey/tiny model+v2.mlpackage/Manifest.json").is_file()


def test_the_schema_takes_escaped_paths_only():
    doc = json.loads((protocol.SCHEMA_PATH.parent / "examples" / "job.json").read_text())
    for package, ok in [("splitbench/models/k/tiny%20model%2Bv2.mlpackage", True),
                        ("splitbench/models/k/caf%C3%A9.mlpackage", True),
                        ("splitbench/models/k/tiny model+v2.mlpackage", False),  # raw: the host always escapes
                        ("splitbench/models/k/%2E%2E/x.mlpackage", False),  # ".." behind an escape
                        ("splitbench/models/k/a%2Fb.mlpackage", False),
                        ("splitbench/models/k/50%.mlpackage", False)]:
        doc["model"]["package"] = package
        if ok:
            protocol.validate(doc, "job")
        else:
            with pytest.raises(protocol.SchemaError, match="model/package"):
                protocol.validate(doc, "job")
    assert protocol.escape_path("a b+c/café.mlpackage") == "a%20b%2Bc/caf%C3%A9.mlpackage"
    assert protocol.unescape_path(protocol.escape_path("a b+c/café.mlpackage")) == "a b+c/café.mlpackage"
