"""The TOML spec: one file says which model, which cuts, which embeddings, backends and targets.

Everything is validated before any work starts. A mistake becomes one :class:`UserError` line that
names the key (``[split].cuts``) and what would be valid.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from harness.config.backends import NAMES as BACKENDS
from harness.core.errors import UserError

EMBEDDINGS = ("simple", "reduced")  # "full" (on-premise) is always added by the harness
FULL = "full"


@dataclass(frozen=True)
class ModelSpec:
    zoo: str | None = None  # a zoo model name, or
    source: str | None = None  # "path/to/file.py:factory" returning (module, example_input)
    weights: Path | None = None  # a state_dict file; seeded random weights otherwise
    seed: int = 0
    input_shape: tuple[int, ...] | None = None  # overrides the zoo model's input shape


@dataclass(frozen=True)
class SplitSpec:
    cuts: tuple[str, ...] | None = None  # None: every cut the zoo model names
    embeddings: tuple[str, ...] = ("simple",)
    reduced_dims: dict[str, int] = field(default_factory=dict)  # k per cut; zoo default otherwise


@dataclass(frozen=True)
class ExportSpec:
    backends: tuple[str, ...] = BACKENDS
    calibration_samples: int = 32  # inputs the PCA of a reduced embedding is fitted on
    calibration_seed: int = 0
    cache_dir: Path | None = None  # None: results/cache beside the working directory


@dataclass(frozen=True)
class RunSpec:
    targets: tuple[str, ...] = ("cpu-1core",)
    runs: int = 60  # timed inferences per configuration (the papers' 60)
    warmup: int = 5
    warm_loads: int = 5  # warm load-time repetitions, each in a fresh process
    timeout_s: float = 900.0  # per configuration and backend


@dataclass(frozen=True)
class Spec:
    name: str
    path: Path | None
    model: ModelSpec
    split: SplitSpec = SplitSpec()
    export: ExportSpec = ExportSpec()
    run: RunSpec = RunSpec()
    privacy: dict[str, Any] = field(default_factory=dict)  # csv or data (resolved paths), ratios, seed
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)  # [android] / [ios]: the agent's options
    budget: dict[str, Any] = field(default_factory=dict)  # [budget]: the limits report.html answers for
    text_hash: str = ""  # sha256 of the spec file's bytes

    @property
    def base_dir(self) -> Path:
        return self.path.parent if self.path else Path.cwd()


# key -> (expected type(s), description). Tuples of str/int are given as lists in TOML.
_SCHEMA: dict[str, dict[str, tuple[type | tuple[type, ...], str]]] = {
    "": {"name": (str, "a name for the setting")},
    "model": {
        "zoo": (str, "a zoo model name (see `splitbench models`)"),
        "source": (str, '"path/to/file.py:factory"'),
        "weights": (str, "a state_dict file"),
        "seed": (int, "an integer seed"),
        "input_shape": (list, "a list of integers such as [1, 3, 224, 224]"),
    },
    "split": {
        "cuts": (list, "a list of cut names"),
        "embeddings": (list, f"a list drawn from {list(EMBEDDINGS)}"),
        "reduced_dims": (dict, "a table of cut = k"),
    },
    "export": {
        "backends": (list, f"a list drawn from {list(BACKENDS)}"),
        "calibration_samples": (int, "a positive integer"),
        "calibration_seed": (int, "an integer"),
        "cache_dir": (str, "a directory"),
    },
    "run": {
        "targets": (list, "a list of target profiles such as ['cpu-1core']"),
        "runs": (int, "a positive integer"),
        "warmup": (int, "a non-negative integer"),
        "warm_loads": (int, "a non-negative integer"),
        "timeout_s": ((int, float), "seconds"),
    },
    "privacy": {
        "csv": (str, "a CSV of privacy scores keyed by model, cut, embedding (and noise_ratio)"),
        "data": (str, "an .npz of inputs, primary and sensitive labels for the noise sweep"),
        "ratios": (list, "a list of noise ratios >= 0"),
        "seed": (int, "an integer seed"),
        "estimator": (str, "an estimator name: splitbench, dpfe or osia (see `splitbench privacy-score --help`)"),
        "split": (str, 'how the attacker splits the inputs: "stratified" or "dpfe"'),
    },
    "budget": {
        "max_latency_ms": ((int, float), "milliseconds of end-to-end latency"),
        "max_memory_mb": ((int, float), "MB of phone model memory"),
        "max_upload_kb": ((int, float), "kB of uploaded feature"),
        "min_accuracy": ((int, float), "a primary-task accuracy in [0, 1] (0.9 for 90%)"),
        "network": (str, "lte, 3g, wifi, 5g, or custom (with uplink_mbps)"),
        "uplink_mbps": ((int, float), "Mbps"),
        "delay_ms": ((int, float), "milliseconds"),
    },
}


# Tables handed whole to a platform's device agent, which validates them (an unknown key is one line
# from the agent, before any work).
DEVICE_TABLES = ("android", "ios")


def _where(table: str, key: str) -> str:
    return f"[{table}].{key}" if table else key


def _check_table(data: dict, table: str, origin: str) -> None:
    schema = _SCHEMA[table]
    for key, value in data.items():
        if key not in schema:
            known = ", ".join(schema) or "none"
            raise UserError(f"{origin}: unknown key {_where(table, key)}; known keys: {known}")
        expected, what = schema[key]
        if isinstance(value, bool) or not isinstance(value, expected):
            raise UserError(f"{origin}: {_where(table, key)} must be {what}, got {value!r}")


def _int_list(value: list, where: str, origin: str, minimum: int = 1) -> tuple[int, ...]:
    if not value or not all(isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in value):
        raise UserError(f"{origin}: {where} must be a list of integers >= {minimum}, got {value!r}")
    return tuple(value)


def _str_list(value: list, where: str, origin: str, allowed: tuple[str, ...] | None = None) -> tuple[str, ...]:
    if not value or not all(isinstance(v, str) for v in value):
        raise UserError(f"{origin}: {where} must be a non-empty list of strings, got {value!r}")
    if allowed is not None:
        for v in value:
            if v not in allowed:
                raise UserError(f"{origin}: {where} has unknown value {v!r}; valid: {', '.join(allowed)}")
    if len(set(value)) != len(value):
        raise UserError(f"{origin}: {where} lists a value twice: {value!r}")
    return tuple(value)


def _positive(value: int | float, where: str, origin: str, minimum: float = 1) -> None:
    if value < minimum:
        raise UserError(f"{origin}: {where} must be >= {minimum}, got {value!r}")


def parse_spec(data: dict[str, Any], origin: str = "spec", path: Path | None = None, text_hash: str = "") -> Spec:
    """Validate a parsed TOML document and build the :class:`Spec`. Checks names, not models."""
    top = {k: v for k, v in data.items() if not isinstance(v, dict)}
    _check_table(top, "", origin)
    for table, value in data.items():
        if isinstance(value, dict) and table in DEVICE_TABLES:
            continue
        if isinstance(value, dict):
            if table not in _SCHEMA or table == "":
                known = ", ".join([*(f"[{t}]" for t in _SCHEMA if t), *(f"[{t}]" for t in DEVICE_TABLES)])
                raise UserError(f"{origin}: unknown table [{table}]; known tables: {known}")
            _check_table(value, table, origin)
    base = path.parent if path else Path.cwd()

    m = data.get("model")
    if not isinstance(m, dict) or not m:
        raise UserError(f"{origin}: missing [model] table (give zoo = \"vgg16_gender\" or source = \"file.py:factory\")")
    if ("zoo" in m) == ("source" in m):
        raise UserError(f"{origin}: [model] needs exactly one of zoo or source")
    if "zoo" in m:
        import models  # the zoo is a torch-free table: checking the name here costs nothing

        if m["zoo"] not in models.zoo():
            raise UserError(f"{origin}: [model].zoo: unknown model {m['zoo']!r}; the zoo has: {', '.join(models.zoo())}")
    weights = None
    if "weights" in m:
        weights = (base / m["weights"]).resolve()
        if not weights.is_file():
            raise UserError(f"{origin}: [model].weights: file not found: {weights}")
    if "source" in m:
        file_part, _, factory = m["source"].rpartition(":")
        if not file_part or not factory:
            raise UserError(f'{origin}: [model].source must look like "path/to/file.py:factory", got {m["source"]!r}')
        if not (base / file_part).is_file():
            raise UserError(f"{origin}: [model].source: file not found: {(base / file_part).resolve()}")
    input_shape = _int_list(m["input_shape"], "[model].input_shape", origin) if "input_shape" in m else None
    model = ModelSpec(zoo=m.get("zoo"), source=m.get("source"), weights=weights,
                      seed=m.get("seed", 0), input_shape=input_shape)

    s = data.get("split", {})
    dims = s.get("reduced_dims", {})
    for cut, k in dims.items():
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise UserError(f"{origin}: [split].reduced_dims.{cut} must be a positive integer, got {k!r}")
    split = SplitSpec(
        cuts=_str_list(s["cuts"], "[split].cuts", origin) if "cuts" in s else None,
        embeddings=_str_list(s["embeddings"], "[split].embeddings", origin, EMBEDDINGS) if "embeddings" in s else ("simple",),
        reduced_dims=dict(dims),
    )

    e = data.get("export", {})
    if "calibration_samples" in e:
        _positive(e["calibration_samples"], "[export].calibration_samples", origin, 2)
    export = ExportSpec(
        backends=_str_list(e["backends"], "[export].backends", origin, BACKENDS) if "backends" in e else BACKENDS,
        calibration_samples=e.get("calibration_samples", 32),
        calibration_seed=e.get("calibration_seed", 0),
        cache_dir=(base / e["cache_dir"]).resolve() if "cache_dir" in e else None,
    )

    r = data.get("run", {})
    for key, minimum in (("runs", 1), ("warmup", 0), ("warm_loads", 0), ("timeout_s", 0.001)):
        if key in r:
            _positive(r[key], f"[run].{key}", origin, minimum)
    run = RunSpec(
        targets=_str_list(r["targets"], "[run].targets", origin) if "targets" in r else ("cpu-1core",),
        runs=r.get("runs", 60), warmup=r.get("warmup", 5), warm_loads=r.get("warm_loads", 5),
        timeout_s=float(r.get("timeout_s", 900.0)),
    )
    privacy = dict(data.get("privacy", {}))
    if "csv" in privacy and "data" in privacy:
        raise UserError(f"{origin}: [privacy] takes csv (scores you computed) or data (inputs to score), not both")
    for key in ("csv", "data"):
        if key in privacy:
            privacy[key] = (base / privacy[key]).resolve()
            if not privacy[key].is_file():
                raise UserError(f"{origin}: [privacy].{key}: file not found: {privacy[key]}")
    if "ratios" in privacy:
        r = privacy["ratios"]
        if not r or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in r):
            raise UserError(f"{origin}: [privacy].ratios must be a list of numbers >= 0, got {r!r}")
        privacy["ratios"] = tuple(float(v) for v in r)
    for key, allowed in (("estimator", ("splitbench", "dpfe", "osia")), ("split", ("stratified", "dpfe"))):
        if key in privacy and privacy[key] not in allowed:
            raise UserError(f"{origin}: [privacy].{key}: unknown value {privacy[key]!r}; valid: {', '.join(allowed)}")
    if "split" in privacy and "data" not in privacy:
        raise UserError(f"{origin}: [privacy].split applies to the noise sweep of [privacy].data, not to a csv")
    budget = _budget_table(data.get("budget", {}), origin)
    name = data.get("name") or (path.stem if path else (model.zoo or "model"))
    devices = {t: _device_table(data[t], base) for t in DEVICE_TABLES if isinstance(data.get(t), dict)}
    return Spec(name=name, path=path, model=model, split=split, export=export, run=run,
                privacy=privacy, devices=devices, text_hash=text_hash, budget=budget)


def _budget_table(table: dict[str, Any], origin: str) -> dict[str, Any]:
    """``[budget]``: the limits `splitbench recommend` takes, for the report's first answer (not identity)."""
    from harness.config.network import get_profile

    for key, value in table.items():
        if key != "network" and value < 0:
            raise UserError(f"{origin}: [budget].{key} must be >= 0, got {value!r}")
    if table.get("min_accuracy", 0) > 1:
        raise UserError(f"{origin}: [budget].min_accuracy is a fraction in [0, 1] (0.9 for 90%), "
                        f"got {table['min_accuracy']!r}")
    try:
        get_profile(table.get("network", "lte"), uplink_mbps=table.get("uplink_mbps"), delay_ms=table.get("delay_ms"))
    except UserError as exc:
        raise UserError(f"{origin}: [budget]: {exc}") from None
    return {k: float(v) if k != "network" else v for k, v in table.items()}


def _device_table(table: dict[str, Any], base: Path) -> dict[str, Any]:
    """A device table with its paths (``[android.tools]``, ``[ios].app``) resolved against the spec's folder."""
    table = dict(table)
    if isinstance(table.get("app"), str):
        table["app"] = str((base / table["app"]).resolve())
    if isinstance(table.get("tools"), dict):
        table["tools"] = {k: str((base / v).resolve()) if isinstance(v, str) else v for k, v in table["tools"].items()}
    return table


def load_spec(path: str | Path) -> Spec:
    """Read and validate a TOML spec file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"spec file not found: {path}")
    raw = path.read_bytes()
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid TOML: {exc}") from None
    return parse_spec(data, origin=str(path), path=path.resolve(), text_hash=hashlib.sha256(raw).hexdigest())


# --------------------------------------------------------------------------------------------------
# The spec a run measures, and its identity


def effective_spec(spec: Spec, *, targets: Iterable[str] | None = None, runs: int | None = None) -> Spec:
    """The spec with the command line's overrides applied (they change what is measured, so its hash)."""
    run = spec.run
    if targets:
        targets = tuple(targets)
        if len(set(targets)) != len(targets):
            raise UserError(f"--target lists a target twice: {', '.join(targets)}")
        run = dataclasses.replace(run, targets=targets)
    if runs is not None:
        if runs < 1:
            raise UserError(f"--runs must be >= 1, got {runs}")
        run = dataclasses.replace(run, runs=runs)
    return dataclasses.replace(spec, run=run)


def spec_dict(spec: Spec) -> dict[str, Any]:
    """The spec as plain JSON data (paths as strings)."""
    return json.loads(json.dumps(dataclasses.asdict(spec), default=str))


# What never changes a number: where the spec file and the cache are, the timeout, display names.
_NOT_IDENTITY = (("path",), ("text_hash",), ("export", "cache_dir"), ("run", "timeout_s"), ("name",),
                 ("budget",))


def spec_hash(spec: Spec) -> str:
    """Hash of what the spec asks to measure: not where the file is, its comments or formatting, the
    timeout or the cache directory (none of them changes a number)."""
    d = spec_dict(spec)
    for path in _NOT_IDENTITY:
        parent = d
        for key in path[:-1]:
            parent = parent.get(key) or {}
        if isinstance(parent, dict):
            parent.pop(path[-1], None)
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()
