"""The loopback iPhone's pymobiledevice3 stand-ins (tests/loopback_ios*.py) against the installed
pymobiledevice3, member by member: every entry point of ``transport.Services``, every object they return
that the agent calls into, every public method, property, class constant and instance attribute of each
stand-in must exist in the real class, with the same parameters (names, kinds, which have defaults) and
the same way of being called (sync, coroutine, async generator, classmethod, property).

So an upgrade of pymobiledevice3 that renames, moves or changes a signature the agent relies on fails
here, not on a user's phone. Defaults' values may differ (the stand-in cannot reach tunneld's address).
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("pymobiledevice3", reason="the ios extra is not installed (pip install 'splitbench[ios]')")

from device_agents.ios import transport  # noqa: E402
from tests import loopback_ios as lb  # noqa: E402
from tests import loopback_ios_services as lbs  # noqa: E402

TRANSPORT_SRC = Path(transport.__file__).read_text()


# --------------------------------------------------------------------------------------------------
# The comparison


def call_kind(f: Any) -> str:
    """How a callable is called: pymobiledevice3's path_to_str wraps coroutine functions in a plain function
    (utils.py l.99-135) that keeps ``__wrapped__``: what is called is the unwrapped one."""
    f = inspect.unwrap(f)
    if inspect.isasyncgenfunction(f):
        return "async generator"
    if inspect.iscoroutinefunction(f):
        return "coroutine"
    return "sync"


def params(f: Any) -> list[tuple[str, str, bool]]:
    """(name, kind, has a default) of each parameter, ``self`` / ``cls`` left out."""
    sig = inspect.signature(f)
    return [(p.name, p.kind.name, p.default is not inspect.Parameter.empty) for p in sig.parameters.values()
            if p.name not in ("self", "cls")]


def compare_callable(where: str, fake: Any, real: Any) -> list[str]:
    problems = []
    if call_kind(fake) != call_kind(real):
        problems.append(f"{where}: the stand-in is {call_kind(fake)}, pymobiledevice3's is {call_kind(real)}")
    if params(fake) != params(real):
        problems.append(f"{where}: parameters {params(fake)} != pymobiledevice3's {params(real)}")
    return problems


def static_kind(owner: type, name: str) -> str:
    a = inspect.getattr_static(owner, name)
    if isinstance(a, classmethod):
        return "classmethod"
    if isinstance(a, staticmethod):
        return "staticmethod"
    if isinstance(a, property):
        return "property"
    return "method" if callable(a) else "constant"


def members(fake: type, construct: bool) -> list[str]:
    """The names a stand-in class offers: public ones, the async context protocol, and ``__init__`` when
    the agent constructs the class itself."""
    names = set()
    for klass in fake.__mro__:
        if klass is object:
            continue
        names |= {n for n in vars(klass) if not n.startswith("_") or n in ("__aenter__", "__aexit__")}
    if construct:
        names.add("__init__")
    return sorted(names)


def assigned_attributes(real: type) -> set[str]:
    """Instance attributes the real class (and its bases) assign (``self.x = ...`` / ``self.x: T = ...``)."""
    names = set()
    for klass in real.__mro__:
        if klass is object or not klass.__module__.startswith("pymobiledevice3"):
            continue
        names |= set(re.findall(r"\bself\.(\w+)\s*(?::[^=\n]+)?=(?!=)", inspect.getsource(klass)))
    return names


def compare_class(where: str, fake: type, real: type, *, construct: bool, instance: Any = None) -> list[str]:
    problems = []
    for name in members(fake, construct):
        at = f"{where}.{name}"
        try:
            inspect.getattr_static(real, name)
        except AttributeError:
            problems.append(f"{at}: pymobiledevice3's {real.__name__} has no {name}")
            continue
        fk, rk = static_kind(fake, name), static_kind(real, name)
        if fk != rk:
            problems.append(f"{at}: the stand-in's is a {fk}, pymobiledevice3's a {rk}")
        elif fk == "constant":
            if getattr(fake, name) != getattr(real, name):
                problems.append(f"{at}: {getattr(fake, name)!r} != pymobiledevice3's {getattr(real, name)!r}")
        elif fk != "property":
            problems += compare_callable(at, getattr(fake, name), getattr(real, name))
    if instance is not None:
        known = assigned_attributes(real) | {n for n in dir(real)}
        for name in sorted(n for n in vars(instance) if not n.startswith("_")):
            if name not in known:
                problems.append(f"{where}: instance attribute {name!r} is not one pymobiledevice3's {real.__name__} has")
    return problems


# --------------------------------------------------------------------------------------------------
# What the stand-in imitates


def attributes_used_on(names: tuple[str, ...]) -> set[str]:
    """The attributes the transport's code (not its docstrings) reads on objects it calls ``names``."""
    used = set()
    for node in ast.walk(ast.parse(TRANSPORT_SRC)):
        if isinstance(node, ast.Attribute):
            owner = node.value
            owner_name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", None)
            if owner_name in names:
                used.add(node.attr)
    return used


def constructed_by_the_agent() -> set[str]:
    """The Services entries the transport calls itself (``self.services.X(...)``), read from its code."""
    return {node.func.attr for node in ast.walk(ast.parse(TRANSPORT_SRC))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Attribute) and node.func.value.attr == "services"}


def returned_pairs(phone: lb.LoopbackPhone) -> list[tuple[str, type, type, Any]]:
    """What the entry points return and the agent calls into: (what, stand-in, real class, a stand-in instance)."""
    from pymobiledevice3.lockdown import UsbmuxLockdownClient
    from pymobiledevice3.remote.remote_service_discovery import RemoteServiceDiscoveryService
    from pymobiledevice3.service_connection import ServiceConnection
    from pymobiledevice3.services.house_arrest import HouseArrestService

    lockdown = lbs.LoopbackLockdown(phone, paired=True)
    return [
        ("create_using_usbmux()", lbs.LoopbackLockdown, UsbmuxLockdownClient, lockdown),
        ("get_tunneld_device_by_udid() / PreferredRsdTunnel.__aenter__()", lbs.LoopbackRsd,
         RemoteServiceDiscoveryService, lbs.LoopbackRsd(phone)),
        ("HouseArrestService.create() / CrashReportsManager.afc", lbs.LoopbackAfc, HouseArrestService,
         lbs.LoopbackAfc(phone, phone.container())),
        ("start_lockdown_service()", lbs.LoopbackServiceConnection, ServiceConnection,
         lbs.LoopbackServiceConnection(phone, "com.apple.crashreportmover", b"")),
    ]


def instances(phone: lb.LoopbackPhone, fake: lb.Services) -> dict[str, Any]:
    """A stand-in instance of each Services class, to compare its instance attributes."""
    lockdown = lbs.LoopbackLockdown(phone, paired=True)
    dvt = lbs.LoopbackDvtProvider(lockdown)
    return {"InstallationProxyService": lbs.LoopbackInstallationProxy(lockdown),
            "MobileImageMounterService": lbs.LoopbackImageMounter(lockdown), "DvtProvider": dvt,
            "ProcessControl": lbs.LoopbackProcessControl(dvt), "DeviceInfo": lbs.LoopbackDeviceInfo(dvt),
            "Sysmontap": lbs.LoopbackSysmontap(phone, 100), "CrashReportsManager": lbs.LoopbackCrashReports(lockdown),
            "PreferredRsdTunnel": fake.PreferredRsdTunnel(serial=phone.udid)}


def standin_problems(phone: lb.LoopbackPhone) -> list[str]:
    real, fake = transport.load_services(), lb.services(phone)
    constructed = constructed_by_the_agent()
    made = instances(phone, fake)
    problems = []
    for f in dataclasses.fields(transport.Services):
        if f.name == "version":
            continue
        r, s = getattr(real, f.name), getattr(fake, f.name)
        if inspect.isclass(r):
            if not inspect.isclass(s):
                problems.append(f"Services.{f.name}: pymobiledevice3's is a class, the stand-in's is not")
                continue
            problems += compare_class(f"Services.{f.name}", s, r, construct=f.name in constructed,
                                      instance=made.get(f.name))
        else:
            problems += compare_callable(f"Services.{f.name}", s, r)
    for what, s, r, instance in returned_pairs(phone):
        problems += compare_class(what, s, r, construct=False, instance=instance)
    return problems


# --------------------------------------------------------------------------------------------------
# Tests


def test_the_stand_in_has_pymobiledevice3_s_names_signatures_and_call_kinds(tmp_path):
    phone = lb.LoopbackPhone(tmp_path / "phone")
    assert standin_problems(phone) == []


def test_what_is_compared_covers_what_the_agent_calls(tmp_path):
    """Every Services entry is compared, and every method the transport calls on a returned object is one
    the comparison looked at (so a call the stand-in lacks cannot slip by)."""
    phone = lb.LoopbackPhone(tmp_path / "phone")
    assert {"InstallationProxyService", "DvtProvider", "ProcessControl", "DeviceInfo", "CrashReportsManager",
            "PreferredRsdTunnel", "get_tunneld_device_by_udid", "create_using_usbmux"} <= constructed_by_the_agent()
    compared = set()
    for _, s, _, _ in returned_pairs(phone):
        compared |= set(members(s, construct=False))
    for f in dataclasses.fields(transport.Services):
        s = getattr(lb.services(phone), f.name)
        if inspect.isclass(s):
            compared |= set(members(s, construct=True))
    for instance in [*instances(phone, lb.services(phone)).values(), *(i for *_, i in returned_pairs(phone))]:
        compared |= {n for n in vars(instance) if not n.startswith("_")}
    called = attributes_used_on(("afc", "lockdown", "process_control", "device_info", "reports", "proxy", "mounter",
                                 "sysmon", "service", "rsd"))
    assert {"exists", "push", "launch", "is_running_pid", "ls", "recvall", "iter_processes", "all_values",
            "paired", "crash_mover_service_name", "start_lockdown_service"} <= called
    assert called and called <= compared, called - compared


class _Drifted:
    """A stand-in gone wrong in every way the comparison looks at."""

    CRASH_MOVER_NAME = "com.apple.crashreportmover.old"

    def __init__(self, lockdown: Any) -> None:
        self.lockdown = lockdown
        self.invented = True

    def ls(self, path: str = "/", depth: int = 1) -> list[str]:  # sync, the real one is a coroutine
        return []

    async def flush(self, timeout: float) -> None:  # a parameter the real one has not
        pass

    async def aclose(self) -> None:
        pass

    async def pull_everything(self) -> None:  # a method the real one has not
        pass


def test_the_comparison_fails_on_a_drifted_stand_in():
    from pymobiledevice3.services.crash_reports import CrashReportsManager

    problems = compare_class("CrashReportsManager", _Drifted, CrashReportsManager, construct=True,
                             instance=_Drifted(None))
    text = "\n".join(problems)
    assert "CrashReportsManager.ls: the stand-in is sync, pymobiledevice3's is coroutine" in text
    assert "CrashReportsManager.flush: parameters [('timeout', 'POSITIONAL_OR_KEYWORD', False)]" in text
    assert "has no pull_everything" in text
    assert "CrashReportsManager.CRASH_MOVER_NAME: 'com.apple.crashreportmover.old'" in text
    assert "instance attribute 'invented'" in text
    assert len(problems) == 5, problems
