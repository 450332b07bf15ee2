"""What ``splitbench devices``, ``splitbench doctor android`` and ``splitbench clean`` ask of the phones:
:func:`discover` (every phone this host reaches, described without installing anything), :func:`doctor`
(the checks, each with how to fix it, and what each tool runs off the CPU) and :func:`clean` (remove what
splitbench put on a phone).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from device_agents.android import protocol as P
from device_agents.android.measure import AndroidAgent, agent_for
from device_agents.android.session import TOOLS_ENV, WHERE_TO_GET, AndroidOptions
from device_agents.android.adb_direct import INSTALL_HINT, key_path, usb_module
from device_agents.android.adb_server import ServerAddress
from device_agents.android.links import DIRECT, SERVER, choose, only_phone, reachable
from device_agents.android.transport import RemoteError, ShellTimeout, parse_target
from device_agents.base import AgentError, ArtifactRef, Check, DeviceInfo, DeviceUnavailable, MeasureJob


def discover(**options: Any) -> list[DeviceInfo]:
    """Every phone this host reaches (the adb server's, USB, and ``SPLITBENCH_ANDROID_TCP``; the path to
    each in its fingerprint's ``now.via``), described without installing anything on it. :class:`AgentError`
    when a client library is missing or no phone could be asked while some could not."""
    opts = AndroidOptions.from_options(options)
    reaches, notes = reachable(opts.via)
    found = []
    for reach in reaches:
        # each phone on the path that found it (``auto`` would choose again)
        agent = AndroidAgent(reach.address, dataclasses.replace(opts, via=reach.path), install_tools=False)
        try:
            agent.open()
            found.append(agent.describe())
        except (AgentError, DeviceUnavailable, RemoteError, ShellTimeout) as exc:
            notes.append(f"{reach}: {exc}")
        finally:
            agent.close()
    if notes and not found:
        raise AgentError("; ".join(notes))
    return found


def clean(target: str, **options: Any) -> list[str]:
    """Remove what splitbench put on the phone (pushed artifacts, tools, scratch; a tool still running is
    killed); what was removed. Only splitbench's own subdirectories are deleted, then the work directory
    if it is left empty: a work directory set to a shared place never loses anything else."""
    agent = agent_for(target, **options)
    agent.install_tools = False
    with agent:
        lay = agent.layout
        ours = [lay.artifacts, lay.bin, lay.jobs, lay.run]
        present = agent.link.shell("; ".join(f"[ -e {P.q(d)} ] && echo y || echo n" for d in ours)).output.split()
        found = [d for d, flag in zip(ours, present) if flag == "y"]
        if not found:
            return []
        agent.link.check(f"{P.kill_all_command(lay.run)}; rm -rf {' '.join(P.q(d) for d in found)}; "
                         f"rmdir {P.q(lay.workdir)} 2>/dev/null; true", timeout_s=300)
        return [f"{agent.device_id}:{d}" for d in found]


def doctor(target: str = "android", probe_artifacts: dict[str, str | Path] | None = None,
           made_by: dict[str, str] | None = None, **options: Any) -> list[Check]:
    """What ``splitbench doctor android`` checks: the library, the key, the phone, the pin, thermals,
    root, and each tool (pushed, runs, reads this splitbench's .tflite/.onnx/.pte), with how to fix."""
    try:
        address = parse_target(target)
        opts = AndroidOptions.from_options(options)
    except AgentError as exc:
        return [Check("target and options", False, str(exc), "fix the target or the [android] table")]
    checks = _path_checks(address, opts.via)
    if any(c.ok is False for c in checks):
        return checks
    agent = AndroidAgent(address, opts)
    try:
        agent.open()
    except (AgentError, DeviceUnavailable) as exc:
        agent.close()
        return checks + [Check("phone", False, str(exc), "plug the phone in with USB debugging on (Developer options), "
                                                          "or `adb tcpip 5555` and use android:<ip>:5555")]
    try:
        info = agent.describe()
        fp = info.fingerprint
        checks.append(Check("phone", True, f"{info.name}: Android {fp['android']} (API {fp['api_level']}), {fp['abi']}, "
                                           f"{fp['soc']}"))
        checks.append(Check("path", True, f"{agent.link.via} ([android] via = \"{opts.via}\")"))
        free = agent.facts.free_b
        checks.append(Check("work directory", free is None or free > 500e6,
                            f"{opts.workdir}: {free / 1e9:.1f} GB free" if free is not None else opts.workdir,
                            f"free space on the phone, or `splitbench clean --device {agent.address.target}`"))
        pin = agent.link.shell(f"taskset {P.mask([agent.core])} sh -c 'grep Cpus_allowed_list /proc/self/status'")
        seen = pin.output.split(":")[-1].strip() if pin.exit_code == 0 else ""
        checks.append(Check("taskset pin", P.parse_cpu_list(seen) == (agent.core,),
                            f"core {agent.core} ({'fastest by cpuinfo_max_freq' if opts.core is None else 'from [android].core'}); "
                            f"a pinned process sees Cpus_allowed_list {seen or pin.output.strip()[-80:]}",
                            "choose another core with [android].core (a cpuset may exclude this one)"))
        c = agent.conditions()
        checks.append(Check("thermal", c.thermal_status is not None and c.battery_temp_c is not None,
                            f"thermal status {c.thermal_status}, battery {c.battery_temp_c} °C",
                            "Android 10+ reports thermal status through `dumpsys thermalservice`"))
        rooted = agent.facts.rooted
        # Not rooted is a limitation, not a failure: "?" with what it means, never a failing doctor.
        checks.append(Check("root", True if rooted else None, "rooted: cold loads drop the page cache first" if rooted
                            else "not rooted: cold loads are marked 'not obtained' (the page cache cannot be dropped)",
                            "" if rooted else "optional: a rooted phone (or `adb root` on a userdebug build) gives "
                                              "true cold loads"))
        # the tiny models the host exported for the tools to read (``harness.measure.devices`` makes them with this
        # splitbench's converters); none given: the tools are checked to run, not what files they read
        probes = {k: Path(v) for k, v in (probe_artifacts or {}).items()}
        for name in P.TOOLS:
            checks.append(_check_tool(agent, name, probes, made_by or {}))
            if checks[-1].ok is not False and name in agent.tools:
                checks.extend(_check_accelerators(agent, name, probes))
    except (DeviceUnavailable, RemoteError, ShellTimeout) as exc:
        checks.append(Check("phone", False, f"lost during the checks: {exc}", "check the cable or the network"))
    finally:
        agent.close()
    return checks


def _path_checks(address: Any, via: str) -> list[Check]:
    """The client libraries, the adb server and the direct path's key, as far as ``via`` needs them."""
    checks: list[Check] = []
    server = ServerAddress.from_env()
    if via != DIRECT:
        try:
            import adbutils

            checks.append(Check("adbutils", True, f"adbutils {adbutils.__version__}"))
        except ImportError as exc:
            checks.append(Check("adbutils", False, str(exc), INSTALL_HINT))
        listed = server.devices()
        detail = (f"answers on {server}: " + (", ".join(f"{k} ({v})" for k, v in listed.items()) or "no phone")
                  if listed is not None else f"none answers on {server}")
        checks.append(Check("adb server", (listed is not None) if via == SERVER else True, detail,
                            "start it (`adb start-server`), or point ANDROID_ADB_SERVER_PORT / ADB_SERVER_SOCKET at it"))
    if via != SERVER:
        try:
            import adb_shell

            checks.append(Check("adb-shell", True, f"adb_shell {getattr(adb_shell, '__version__', '?')}"))
        except ImportError as exc:
            checks.append(Check("adb-shell", None if via == "auto" else False, str(exc), INSTALL_HINT))
    if any(c.ok is False for c in checks):
        return checks
    try:
        direct = (only_phone(via) if address is None else choose(address, via)).path == DIRECT
    except AgentError:
        direct = via == DIRECT
    if direct:
        if address is None or address.kind == "serial":
            try:
                usb_module()
                checks.append(Check("libusb1", True, "USB available"))
            except AgentError as exc:
                checks.append(Check("libusb1", False, str(exc), INSTALL_HINT))
        path, is_adb = key_path()
        checks.append(Check("adb key", True if path.is_file() else None,
                            f"{path}{' (adb’s own)' if is_adb else ''}" + ("" if path.is_file() else " (will be generated)"),
                            "" if path.is_file() else "accept the USB debugging prompt on the phone at the first connection"))
    return checks


def _check_tool(agent: AndroidAgent, name: str, probes: dict[str, Path], made_by: dict[str, str]) -> Check:
    backend = P.BACKEND_FOR_TOOL[name]
    tool = agent.tools.get(name)
    if name in agent.tool_problems:
        return Check(name, False, f"{agent.tool_problems[name]}", f"give an arm64-v8a Android build; {WHERE_TO_GET[name]}")
    if tool is None:
        return Check(name, False, f"not configured (no [android.tools].{name}, nothing in ${TOOLS_ENV})",
                     WHERE_TO_GET[name])
    detail = f"{tool.version} from {tool.host_path}"
    if not tool.flags:
        return Check(name, False, f"{detail}: does not run on the phone (--help printed nothing it understands)",
                     f"give an arm64-v8a Android build; {WHERE_TO_GET[name]}")
    probe = probes.get(backend)
    if probe is None:
        return Check(name, None, f"{detail}: runs; no {backend} converter here to test which files it reads")
    result = _probe_run(agent, probe, backend)
    made_by = made_by.get(backend, backend)
    if result.ok:
        return Check(name, True, f"{detail}: runs, reads the {probe.suffix} files this splitbench writes ({made_by})")
    return Check(name, False, f"{detail}: cannot run a {probe.suffix} from {made_by}: {result.status}: {result.reason}",
                 f"use a build of the runtime that reads this version, or pin the converter; {WHERE_TO_GET[name]}")


def _probe_run(agent: AndroidAgent, probe: Path, backend: str, accelerator: str = "cpu"):
    """Run the host's tiny probe model once on the phone (2 timed runs, no cool-down wait): the doctor's check
    that a tool reads the files this splitbench writes, and what it says on an accelerator."""
    ref = ArtifactRef.from_path(probe, key="", backend=backend)  # hashes every file once; keyed by that content
    ref = dataclasses.replace(ref, key=f"doctor-{backend}-{ref.sha256[:16]}")
    job = MeasureJob(artifact_path=agent.prepare(ref), backend=backend, input_shape=(1, 3, 16, 16), runs=2, warmup=1,
                     warm_loads=0, timeout_s=120, accelerator=accelerator)
    o = agent.options
    agent.options = dataclasses.replace(o, cool_timeout_s=0.0)
    try:
        return agent.measure(job)
    finally:
        agent.options = o


def _check_accelerators(agent: AndroidAgent, name: str, probes: dict[str, Path]) -> list[Check]:
    """Per accelerator off the CPU, whether this tool runs it here: what its --help lacks, or, with a probe model,
    what the tool said when asked for it (the delegate applied, partly, not at all; a build without the provider).
    Not a failure either way (a phone without an NPU is nothing to fix): ``ok`` or ``?`` with the tool's words."""
    tool = agent.tools[name]
    backend = P.BACKEND_FOR_TOOL[name]
    found = tool.can_ask
    checks = []
    for accelerator in ("gpu", "npu"):
        what = f"{name} on the {accelerator}"
        if accelerator not in found.candidates:
            checks.append(Check(what, None, found.missing.get(accelerator, "not offered")))
            continue
        settings = " or ".join(s.setting for s in found.candidates[accelerator])
        probe = probes.get(backend)
        if probe is None:
            checks.append(Check(what, None, f"{settings}; no {backend} converter here to try it"))
            continue
        r = _probe_run(agent, probe, backend, accelerator)
        d = r.delegation
        counts = f", {d.delegated_nodes} of {d.total_nodes} nodes" if d and d.total_nodes else ""
        if r.ok:
            checks.append(Check(what, True, f"{d.setting}: {d.applied}{counts}" if d else "runs"))
        else:
            checks.append(Check(what, None, f"does not run here: {r.reason[:300]}"))
    return checks
