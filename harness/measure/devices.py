"""`splitbench devices`, `doctor` and `clean`: what this host can measure on, and the upkeep of devices.

Each platform's agent module answers (``discover``, ``doctor``, ``clean``; see
:func:`device_agents.base.discover_devices`); this module only prints.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from harness.core import exitcodes
from harness.core.errors import UserError
from harness.core.text import visible

PLATFORMS = ("local", "android", "ios")


def _console():
    from rich.console import Console

    console = Console()
    if not console.is_terminal:  # a pipe or a CI log: keep rows whole rather than cut them at 80 columns
        console.width = max(console.width, 200)
    return console


def _flat(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {_flat(v)}" for k, v in value.items()) or "—"
    if isinstance(value, (list, tuple)):
        return ", ".join(_flat(v) for v in value)
    return "—" if value is None else str(value)


def list_devices(*, json_out: bool = False) -> int:
    """Print every device (the local profile first, then phones); exit code 0 even with no phone."""
    from device_agents.base import discover_devices

    found, notes = discover_devices()
    if json_out:
        sys.stdout.write(json.dumps({"devices": [d.to_dict() for d in found], "notes": notes}, indent=2,
                                    default=str) + "\n")
        return exitcodes.OK
    from rich.table import Table
    from rich.text import Text

    def lines(texts) -> Text:  # what a phone reports about itself, shown as text: never markup, never a bidi override
        return Text("\n".join(visible(t) for t in texts) or "—")

    console = _console()
    table = Table("target", "device id", "device", "backends (runtime)", "accelerators", "details", show_lines=True)
    for d in found:
        table.add_row(lines([d.target]), lines([d.device_id]), lines([d.name]),
                      lines(f"{b}: {v}" for b, v in d.backends.items()),
                      lines(f"{b}: {', '.join(d.accelerators.get(b, ('cpu',)))}" for b in d.backends),
                      lines(f"{k}: {_flat(v)}" for k, v in d.fingerprint.items()))
    console.print(table)
    for line in accelerator_lines(found):
        console.print(line, highlight=False, markup=False)
    phones = [d for d in found if d.platform != "local"]
    if not phones:
        console.print("No phone attached: only the local profile can measure here. Android: enable USB debugging "
                      "and connect it (or `adb tcpip 5555`, then --target android:<host>:5555); iPhone: see "
                      "`splitbench doctor ios`.", highlight=False)
    for note in notes:
        console.print(f"note: {visible(note)}", highlight=False, markup=False)
    return exitcodes.OK


def accelerator_lines(found: list) -> list[str]:
    """Why a backend does not run on an accelerator, per device, one line per reason (the reason a planned row
    for it is skipped with)."""
    lines = []
    for d in found:
        why: dict[str, list[str]] = {}
        for key, reason in d.accelerator_notes.items():
            backend, _, accelerator = key.partition("/")
            if backend in d.backends and accelerator not in d.accelerators.get(backend, ("cpu",)):
                why.setdefault(reason, []).append(key)
        lines += [visible(f"{d.target} {d.device_id}: not on {', '.join(keys)}: {reason}") for reason, keys in why.items()]
    return lines


def _options(platform: str, spec_path: Path | None) -> dict[str, Any]:
    if spec_path is None:
        return {}
    from harness.config.spec import load_spec

    return dict(load_spec(spec_path).devices.get(platform, {}))


def _module(platform: str):
    import importlib

    if platform not in PLATFORMS:
        raise UserError(f"unknown platform {platform!r}; use one of {', '.join(PLATFORMS)}")
    try:
        return importlib.import_module(f"device_agents.{platform}.agent")
    except ImportError as exc:
        raise UserError(f"the {platform} agent is not available here: {exc}") from None


def probe_artifacts(directory: Path) -> tuple[dict[str, Path], dict[str, str]]:
    """A tiny model exported by this splitbench's own converters to every backend that converts here, for a
    device's tools to prove they read these files; and, per backend, the converters that wrote them."""
    from device_agents.host import installed_version
    from harness.config.backends import BACKENDS

    paths: dict[str, Path] = {}
    made_by: dict[str, str] = {}
    try:
        import torch

        from harness.core.fdcapture import capture_fds
    except ImportError:
        return paths, made_by
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()).eval()
    example = torch.randn(1, 3, 16, 16)
    for name, backend in BACKENDS.items():
        versions = [f"{dist} {v}" if (v := installed_version(dist)) else dist
                    for dist in backend.converter_packages if dist != "torch"]
        made_by[name] = ", ".join(versions) or name
        try:
            d = directory / name
            d.mkdir(parents=True, exist_ok=True)
            with capture_fds(directory / "converters.log"):
                paths[name] = backend.export(model, example, d).path
        except Exception:  # noqa: BLE001 - a converter missing here: that format is not probed
            continue
    return paths, made_by


def doctor(platform: str, *, target: str | None = None, spec_path: Path | None = None) -> int:
    """One line per check: ok, FAIL (with the fix) or ? (could not be told). Exit 0 when none failed."""
    import inspect
    import tempfile

    module = _module(platform)
    default = {"local": "cpu-1core"}.get(platform, platform)
    options = _options(platform, spec_path)
    with tempfile.TemporaryDirectory(prefix="splitbench-probe-") as tmp:
        if "probe_artifacts" in inspect.signature(module.doctor).parameters:  # the agent checks what its tools read
            options["probe_artifacts"], options["made_by"] = probe_artifacts(Path(tmp))
        checks = module.doctor(target or default, **options)
    console = _console()
    for c in checks:
        mark = {True: "[green]ok[/]  ", False: "[red]FAIL[/]", None: "[yellow]?[/]   "}[c.ok]
        line = f"{mark} {c.name}: {c.detail}" if c.detail else f"{mark} {c.name}"
        if c.ok is not True and c.fix:
            line += f" — fix: {c.fix}"
        console.print(line, highlight=False)
    return exitcodes.OK if all(c.ok is not False for c in checks) else exitcodes.USAGE


def clean(target: str, *, spec_path: Path | None = None) -> int:
    """Remove what splitbench left on the device; print what was removed."""
    from device_agents.base import target_platform

    platform = target_platform(target)
    removed = _module(platform).clean(target, **_options(platform, spec_path))
    console = _console()
    for item in removed:
        console.print(f"removed {visible(item)}", highlight=False, markup=False)
    if not removed:
        console.print(f"nothing of splitbench's was on {visible(target)}", highlight=False, markup=False)
    return exitcodes.OK
