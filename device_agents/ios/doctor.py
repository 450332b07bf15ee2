"""The iOS platform's commands besides a run: ``discover`` (``splitbench devices``), ``doctor``
(``splitbench doctor ios``) and ``clean`` (``splitbench clean --device ios[:<udid>]``).

``agent.py`` re-exports them: ``device_agents.base`` finds them there by the platform's name.
"""

from __future__ import annotations

from typing import Any

from device_agents.base import AgentError, Check, DeviceInfo, DeviceUnavailable
from device_agents.ios.measure import Launcher
from device_agents.ios.protocol import COMPUTE_UNITS_FOR, INSTALL_HINT, MODELS, ROOT, container_path
from device_agents.ios.errors import AppNotInstalled, TransportError, UsbmuxdUnavailable
from device_agents.ios.session import (ALL_CHECKS, FIX, PreconditionUnavailable, Preconditions, find_services,
                                       parse_options, phone_name, resolve_udid, usb_udids, wanted_udid)
from device_agents.ios.transport import IosTransport, list_usb_udids


def discover() -> list[DeviceInfo]:
    """Every iPhone attached over USB, as lockdown describes it (no app or developer service needed)."""
    services = find_services()
    found = []
    for udid in usb_udids(services):
        t = IosTransport(udid, services)
        try:
            v = t.connect()
            note = "" if t.paired else " — not paired: run `splitbench doctor ios`"
            found.append(DeviceInfo(
                device_id=udid, target="ios", platform="ios",
                name=f"{phone_name(v)}{note}",
                backends={"coreml": f"Core ML (iOS {v.get('ProductVersion')} {v.get('BuildVersion')})"},
                fingerprint={"product_type": v.get("ProductType"), "ios_version": v.get("ProductVersion"),
                             "ios_build": v.get("BuildVersion"), "paired": t.paired},
                threads=None, accelerators={"coreml": tuple(COMPUTE_UNITS_FOR)}))
        except (DeviceUnavailable, TransportError) as exc:
            found.append(DeviceInfo(device_id=udid, target="ios", platform="ios", name=f"iPhone ({exc})", backends={},
                                    threads=None))
        finally:
            t.close()
    return found


def doctor(target: str = "ios", **options: Any) -> list[Check]:
    """Every precondition of ``target``, one :class:`Check` each, in order; after the first that fails the
    rest are listed as not checked. Changes nothing on the phone (the app is not installed here)."""
    try:
        opts = parse_options(options)
        wanted = wanted_udid(target)
        services = find_services()
    except AgentError as exc:
        return with_rest([Check("pymobiledevice3 and [ios] options", False, str(exc), INSTALL_HINT)])
    checks = [Check("pymobiledevice3", True, services.version)]
    try:
        udids = list_usb_udids(services)
    except (UsbmuxdUnavailable, DeviceUnavailable) as exc:
        return with_rest(checks + [Check("usbmuxd", False, str(exc), FIX["usbmuxd"])])
    checks.append(Check("usbmuxd", True, f"{len(udids)} device(s) over USB"))
    try:
        udid = resolve_udid(udids, wanted)
    except AgentError as exc:
        return with_rest(checks + [Check("iPhone attached", False, str(exc), FIX["attached"])])
    checks.append(Check("iPhone attached", True, udid))
    t = IosTransport(udid, services, tunnel=opts.tunnel)
    launcher = Launcher(t, opts, udid)
    pre = Preconditions(t, opts, install=False, launcher=launcher.launch, cleaner=launcher.clean_job)
    try:
        for check in pre.checks():
            checks.append(check)
    except PreconditionUnavailable as exc:
        checks.append(exc.check)
    except (DeviceUnavailable, TransportError) as exc:
        checks.append(Check("iPhone reachable", False, str(exc), FIX["attached"]))
    finally:
        t.close()
    if checks[-1].ok is False:
        return with_rest(checks)
    return checks + [ACCELERATORS_CHECK]


# What every iPhone runs, as Core ML's compute units (docs/ios.md, "Accelerators").
ACCELERATORS_CHECK = Check("accelerators", True, "coreml: " + ", ".join(
    f"{a} (computeUnits={u})" for a, u in COMPUTE_UNITS_FOR.items()) + "; Core ML does not say which layers ran where")


def with_rest(checks: list[Check]) -> list[Check]:
    """``checks`` and, after its failure, every later step as not checked."""
    done = {c.name for c in checks}
    return checks + [Check(n, None, "not checked: an earlier step failed") for n in ALL_CHECKS if n not in done]


def clean(target: str = "ios", **options: Any) -> list[str]:
    """Remove everything splitbench put in the agent app's container (models, jobs, results); what was removed."""
    opts = parse_options(options)
    wanted = wanted_udid(target)
    services = find_services()
    udid = resolve_udid(usb_udids(services), wanted)
    t = IosTransport(udid, services)
    try:
        t.connect()
        if not t.paired:
            raise AgentError(f"iPhone {udid}: not paired: {FIX['paired']}")
        try:
            t.open_container(opts.bundle_id)
        except AppNotInstalled:
            return []
        root = container_path(ROOT)
        if not t.exists(root):
            return []
        models = t.listdir(container_path(MODELS))
        t.remove(root)
        return [f"{udid}: removed {root} from {opts.bundle_id} ({len(models)} pushed model(s))"]
    except DeviceUnavailable as exc:
        raise AgentError(f"iPhone {udid}: {exc.reason}") from None
    finally:
        t.close()
