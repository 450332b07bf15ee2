"""The TOML spec: one file says which model, which cuts, which embeddings, backends and targets.

Everything is validated before any work starts. A mistake becomes one :class:`UserError` line that
names the key (``[split].cuts``) and what would be valid.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from device_agents.base import ACCELERATORS
from harness.config.backends import NAMES as BACKENDS
from harness.core.errors import UserError

EMBEDDINGS = ("simple", "reduced")  # "full" (on-premise) is always added by the harness
FULL = "full"
# The numbers a phone part computes in: float32 as trained, or int8 after post-training static quantization
# (calibrated on real inputs). Part of a configuration's identity: an int8 row never stands for a float32 one.
PRECISIONS = ("float32", "int8")


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
    precisions: tuple[str, ...] = ("float32",)  # each configuration is exported once per precision


@dataclass(frozen=True)
class RunSpec:
    targets: tuple[str, ...] = ("cpu-1core",)
    runs: int = 60  # timed inferences per configuration (the papers' 60)
    warmup: int = 5
    warm_loads: int = 5  # warm load-time repetitions, each in a fresh process
    timeout_s: float = 900.0  # per configuration and backend
    accelerators: tuple[str, ...] = ("cpu",)  # each artifact is measured once per accelerator (cpu, gpu, npu)


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


SEED_MAX = 2**32 - 1  # numpy, torch and scikit-learn all take a seed in [0, 2**32 - 1]
INPUT_ELEMENTS_MAX = 2**28  # a 1 GiB float32 example input; a bigger one is a mistyped shape


def _plain(x: float) -> str:
    """A bound as people write it: 1000000, 0.5 (not 1e+06)."""
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


@dataclass(frozen=True)
class Range:
    """The valid values of a number (finite always): ``low`` to ``high``, ``low`` excluded when ``low_open``."""

    kind: type | tuple[type, ...]  # int, or (int, float) for a number
    low: float
    high: float = math.inf
    low_open: bool = False

    def describe(self) -> str:
        noun = "an integer" if self.kind is int else "a number"
        low = f"> {_plain(self.low)}" if self.low_open else f">= {_plain(self.low)}"
        if math.isinf(self.high):
            return f"{'an integer' if self.kind is int else 'a finite number'} {low}"
        if self.low_open:
            return f"{noun} {low} and <= {_plain(self.high)}"
        return f"{noun} from {_plain(self.low)} to {_plain(self.high)}"

    def accepts(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, self.kind):
            return False
        if isinstance(value, float) and not math.isfinite(value):
            return False
        above = value > self.low if self.low_open else value >= self.low
        return above and value <= self.high


@dataclass(frozen=True)
class Field:
    """One key of a spec table: the TOML type(s) it takes, what it is for people, and for a number (or a
    list or table of numbers: each item) its valid :class:`Range`."""

    types: type | tuple[type, ...]
    what: str
    range: Range | None = None

    def describe(self) -> str:
        """What a valid value is, for the one-line message (with the range when it is a number)."""
        if self.range is None:
            return self.what
        if self.types in (list, dict):
            return f"{self.what}, each {self.range.describe()}"
        return f"{self.range.describe()} ({self.what})"


def _seed(what: str) -> Field:
    return Field(int, what, Range(int, 0, SEED_MAX))


# table -> key -> Field ("" is the top level). Tuples of str/int are given as lists in TOML. Every number
# is finite and in its range (the range is in the message); `parse_spec` adds the checks between keys.
SCHEMA: dict[str, dict[str, Field]] = {
    "": {"name": Field(str, "a name for the setting")},
    "model": {
        "zoo": Field(str, "a zoo model name (see `splitbench models`)"),
        "source": Field(str, '"path/to/file.py:factory"'),
        "weights": Field(str, "a state_dict file"),
        "seed": _seed("the seed of the weights and the example input"),
        "input_shape": Field(list, "a list of integers such as [1, 3, 224, 224]", Range(int, 1, 2**31 - 1)),
    },
    "split": {
        "cuts": Field(list, "a list of cut names"),
        "embeddings": Field(list, f"a list drawn from {list(EMBEDDINGS)}"),
        "reduced_dims": Field(dict, "a table of cut = k", Range(int, 1, 65536)),
    },
    "export": {
        "backends": Field(list, f"a list drawn from {list(BACKENDS)}"),
        "calibration_samples": Field(int, "inputs the PCA is fitted on", Range(int, 2, 65536)),
        "calibration_seed": _seed("the seed of the calibration inputs"),
        "cache_dir": Field(str, "a directory"),
        "precisions": Field(list, f"a list drawn from {list(PRECISIONS)}"),
    },
    "run": {
        "targets": Field(list, "a list of target profiles such as ['cpu-1core']"),
        "runs": Field(int, "timed runs", Range(int, 1, 1_000_000)),
        "warmup": Field(int, "warm-up runs", Range(int, 0, 1_000_000)),
        "warm_loads": Field(int, "warm loads, each in a fresh process", Range(int, 0, 10_000)),
        "timeout_s": Field((int, float), "seconds per configuration and backend",
                           Range((int, float), 0.001, 7 * 24 * 3600)),
        "accelerators": Field(list, f"a list drawn from {list(ACCELERATORS)}"),
    },
    "privacy": {
        "csv": Field(str, "a CSV of privacy scores keyed by model, cut, embedding (and noise_ratio)"),
        "data": Field(str, "an .npz of inputs, primary and sensitive labels for the noise sweep"),
        "ratios": Field(list, "a list of noise ratios", Range((int, float), 0)),
        "seed": _seed("the seed of the noise sweep"),
        "estimator": Field(str, "an estimator name: splitbench, dpfe or osia (see `splitbench privacy-score --help`)"),
        "split": Field(str, 'how the attacker splits the inputs: "stratified" or "dpfe"'),
    },
    "budget": {
        "max_latency_ms": Field((int, float), "milliseconds of end-to-end latency", Range((int, float), 0)),
        "max_memory_mb": Field((int, float), "MB of phone model memory", Range((int, float), 0)),
        "max_upload_kb": Field((int, float), "kB of uploaded feature", Range((int, float), 0)),
        "min_accuracy": Field((int, float), "a primary-task accuracy as a fraction, 0.9 for 90%", Range((int, float), 0, 1)),
        "network": Field(str, "lte, 3g, wifi, 5g, or custom (with uplink_mbps)"),
        "uplink_mbps": Field((int, float), "Mbps", Range((int, float), 0, low_open=True)),
        "delay_ms": Field((int, float), "milliseconds", Range((int, float), 0)),
    },
}


# Tables handed whole to a platform's device agent, which validates them (an unknown key is one line
# from the agent, before any work).
DEVICE_TABLES = ("android", "ios")


def _where(table: str, key: str) -> str:
    return f"[{table}].{key}" if table else key


def _check_table(data: dict, table: str, origin: str) -> None:
    schema = SCHEMA[table]
    for key, value in data.items():
        if key not in schema:
            known = ", ".join(schema) or "none"
            raise UserError(f"{origin}: unknown key {_where(table, key)}; known keys: {known}")
        f = schema[key]
        if isinstance(value, bool) or not isinstance(value, f.types):
            raise UserError(f"{origin}: {_where(table, key)} must be {f.describe()}, got {value!r}")
        if f.range is None:
            continue
        if isinstance(value, list):
            bad = [v for v in value if not f.range.accepts(v)]
            if bad:
                raise UserError(f"{origin}: {_where(table, key)} must be {f.describe()}; got {bad[0]!r}")
        elif isinstance(value, dict):
            for item, v in value.items():
                if not f.range.accepts(v):
                    raise UserError(f"{origin}: {_where(table, key)}.{item} must be {f.range.describe()}, "
                                    f"got {v!r}")
        elif not f.range.accepts(value):
            raise UserError(f"{origin}: {_where(table, key)} must be {f.describe()}, got {value!r}")


def _finite_numbers(value: Any, where: str, origin: str) -> None:
    """A device table is the agent's to validate, but nan and inf are never a setting: refused here."""
    if isinstance(value, float) and not math.isfinite(value):
        raise UserError(f"{origin}: {where} must be a finite number, got {value!r}")
    if isinstance(value, dict):
        for k, v in value.items():
            _finite_numbers(v, f"{where}.{k}", origin)
    elif isinstance(value, list):
        for v in value:
            _finite_numbers(v, where, origin)


def _shape(value: list, origin: str) -> tuple[int, ...]:
    """``[model].input_shape`` (each dimension already in range): not empty, and not absurdly large."""
    if not value:
        raise UserError(f"{origin}: [model].input_shape must be {SCHEMA['model']['input_shape'].what}, got []")
    if math.prod(value) > INPUT_ELEMENTS_MAX:
        raise UserError(f"{origin}: [model].input_shape {value!r} has {math.prod(value):,} elements; at most "
                        f"{INPUT_ELEMENTS_MAX:,} (a 1 GiB float32 input)")
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


def parse_spec(data: dict[str, Any], origin: str = "spec", path: Path | None = None, text_hash: str = "") -> Spec:
    """Validate a parsed TOML document and build the :class:`Spec`. Checks names, not models."""
    top = {k: v for k, v in data.items() if not isinstance(v, dict)}
    _check_table(top, "", origin)
    for table, value in data.items():
        if isinstance(value, dict) and table in DEVICE_TABLES:
            _finite_numbers(value, f"[{table}]", origin)
            continue
        if isinstance(value, dict):
            if table not in SCHEMA or table == "":
                known = ", ".join([*(f"[{t}]" for t in SCHEMA if t), *(f"[{t}]" for t in DEVICE_TABLES)])
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
    input_shape = _shape(m["input_shape"], origin) if "input_shape" in m else None
    model = ModelSpec(zoo=m.get("zoo"), source=m.get("source"), weights=weights,
                      seed=m.get("seed", 0), input_shape=input_shape)

    s = data.get("split", {})
    dims = s.get("reduced_dims", {})
    split = SplitSpec(
        cuts=_str_list(s["cuts"], "[split].cuts", origin) if "cuts" in s else None,
        embeddings=_str_list(s["embeddings"], "[split].embeddings", origin, EMBEDDINGS) if "embeddings" in s else ("simple",),
        reduced_dims=dict(dims),
    )

    e = data.get("export", {})
    export = ExportSpec(
        backends=_str_list(e["backends"], "[export].backends", origin, BACKENDS) if "backends" in e else BACKENDS,
        calibration_samples=e.get("calibration_samples", 32),
        calibration_seed=e.get("calibration_seed", 0),
        cache_dir=(base / e["cache_dir"]).resolve() if "cache_dir" in e else None,
        precisions=_str_list(e["precisions"], "[export].precisions", origin, PRECISIONS) if "precisions" in e
        else ("float32",),
    )

    r = data.get("run", {})
    run = RunSpec(
        targets=_str_list(r["targets"], "[run].targets", origin) if "targets" in r else ("cpu-1core",),
        runs=r.get("runs", 60), warmup=r.get("warmup", 5), warm_loads=r.get("warm_loads", 5),
        timeout_s=float(r.get("timeout_s", 900.0)),
        accelerators=_str_list(r["accelerators"], "[run].accelerators", origin, ACCELERATORS) if "accelerators" in r
        else ("cpu",),
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
        if not privacy["ratios"]:
            raise UserError(f"{origin}: [privacy].ratios must be a non-empty list of noise ratios (0: no noise)")
        privacy["ratios"] = tuple(float(v) for v in privacy["ratios"])
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

    try:  # each number's range is checked already (SCHEMA); here the network and its figures together
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
