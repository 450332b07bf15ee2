"""From a spec to split configurations, and from a configuration to its phone and cloud parts.

A configuration is (model, cut, embedding). The phone part of a cut runs the network from its input
up to and including the cut module; the cloud part (``rest``) runs the remainder on the cut's
output. Splitting uses ``torch.fx`` so any module whose cut is a single tensor can be split, not only
``nn.Sequential``: a skip connection crossing the cut is refused with a clear message.

torch is imported inside the functions that need it, so validating a spec and reading the export
cache stay fast.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from device_agents.base import sha256_file
from harness.core.errors import UserError
from harness.config.spec import FULL, Spec

if TYPE_CHECKING:  # pragma: no cover
    import torch


@dataclass(frozen=True)
class Configuration:
    """The identity of one split configuration (what runs on the phone)."""

    model: str
    cut: str  # a cut name, or "full" for on-premise
    embedding: str  # "simple", "reduced" or "full"
    reduced_dim: int | None = None  # k of the PCA projection (reduced only)
    order: int = 0  # position in model order, for tables and figures

    @property
    def name(self) -> str:
        return FULL if self.cut == FULL else f"{self.cut}-{self.embedding}"


@dataclass
class LoadedModel:
    """A built network with its example input and what identifies it for the cache."""

    name: str
    module: "torch.nn.Module"
    example_input: "torch.Tensor"
    cuts: tuple[str, ...]  # the cuts to configure, in model order
    definition_hash: str
    weights_id: str  # "seed:N" or the sha256 of the state_dict file


@dataclass(frozen=True)
class ModelIdentity:
    """What identifies the model for the cache, known without building it."""

    name: str
    definition_hash: str
    weights_id: str
    input_shape: tuple[int, ...]
    available_cuts: tuple[str, ...] | None  # None: not known until the module is built
    default_cuts: tuple[str, ...] | None
    reduced_dims: dict[str, int]


_FILE_HASHES: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """sha256 of a file, memoised on (path, size, mtime) so a warm cache lookup reads nothing big."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _FILE_HASHES:
        _FILE_HASHES[key] = sha256_file(path)
    return _FILE_HASHES[key]


def _weights_id(spec: Spec) -> str:
    return f"file:{file_sha256(spec.model.weights)[:16]}" if spec.model.weights else f"seed:{spec.model.seed}"


def _user_source(spec: Spec) -> tuple[Path, str]:
    file_part, _, factory = spec.model.source.rpartition(":")
    return (spec.base_dir / file_part).resolve(), factory


def definition_file(spec: Spec) -> Path:
    """The file that defines the model: the ``source`` file, or the zoo entry's ``models/<family>.py``."""
    if spec.model.zoo:
        import models

        return models.get(spec.model.zoo).source
    return _user_source(spec)[0]


def _user_module_name(path: Path) -> str:
    return f"splitbench_user_{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"


def _import_user_source(path: Path) -> Any:
    """Execute a ``source`` file as a fresh module (registered under :func:`_user_module_name`); a file that
    fails to import is one line."""
    name = _user_module_name(path)
    loader = importlib.util.spec_from_file_location(name, path)
    user = importlib.util.module_from_spec(loader)
    sys.modules[name] = user
    try:
        loader.loader.exec_module(user)
    except Exception as exc:  # noqa: BLE001 - report the user's own error in one line
        sys.modules.pop(name, None)
        raise UserError(f"[model].source: importing {path} failed: {type(exc).__name__}: {exc}") from None
    return user


def model_module(spec: Spec) -> Any:
    """The module that defines the model, imported under the name :func:`load_model` gives a ``source`` file;
    imported again when the file changed since. A ``source`` file that fails to import is one line."""
    if spec.model.zoo:
        import models

        return importlib.import_module(f"models.{models.get(spec.model.zoo).family}")
    path, _ = _user_source(spec)
    st = path.stat()
    stamp = (st.st_size, st.st_mtime_ns)
    known = sys.modules.get(_user_module_name(path))
    if known is not None and getattr(known, "__splitbench_stat__", None) == stamp:
        return known
    user = _import_user_source(path)
    user.__splitbench_stat__ = stamp
    return user


def identify(spec: Spec) -> ModelIdentity:
    """The model's cache identity. For zoo models this needs no torch work at all."""
    if spec.model.zoo:
        import models

        entry = models.get(spec.model.zoo)
        return ModelIdentity(entry.name, entry.definition_hash(), _weights_id(spec),
                             spec.model.input_shape or entry.input_shape, entry.cuts, entry.cuts,
                             dict(entry.reduced_dims))
    path, factory = _user_source(spec)
    # The example input's shape is only known once the factory runs; a spec may state it.
    return ModelIdentity(f"{path.stem}:{factory}", hashlib.sha256(path.read_bytes()).hexdigest()[:16],
                         _weights_id(spec), spec.model.input_shape or (), None, None, {})


def configurations(spec: Spec, available_cuts: tuple[str, ...] | None = None) -> list[Configuration]:
    """Every configuration of the spec, in model order; on-premise (``full``) always last.

    ``available_cuts`` is the list to check cut names against (the zoo's cuts are used when None;
    a user model's cut names are checked against ``named_modules()`` when it is built).
    """
    ident = identify(spec)
    valid = available_cuts if available_cuts is not None else ident.available_cuts
    cuts = spec.split.cuts if spec.split.cuts is not None else ident.default_cuts
    if cuts is None:
        raise UserError(f"{spec.path or 'spec'}: [split].cuts is required for a model given by source")
    if valid is not None:
        for cut in cuts:
            if cut not in valid:
                raise UserError(f"{spec.path or 'spec'}: [split].cuts: unknown cut {cut!r} for {ident.name}; "
                                f"valid cuts: {', '.join(valid)}")
        if valid is ident.available_cuts:  # zoo: keep the model's order whatever the spec's order
            cuts = tuple(c for c in valid if c in cuts)
    out: list[Configuration] = []
    for cut in cuts:
        for emb in spec.split.embeddings:
            k = None
            if emb == "reduced":
                k = spec.split.reduced_dims.get(cut, ident.reduced_dims.get(cut))
                if k is None:
                    raise UserError(f"{spec.path or 'spec'}: [split].reduced_dims.{cut} is needed for the reduced embedding")
            out.append(Configuration(ident.name, cut, emb, k, len(out)))
    out.append(Configuration(ident.name, FULL, FULL, None, len(out)))
    return out


def _load_state_dict(module: "torch.nn.Module", path: Path) -> None:
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's to fix
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]  # torch's messages run long
        raise UserError(f"[model].weights: cannot read {path} as a torch.save file: {first}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise UserError(f"[model].weights: {path.name} holds a {type(state).__name__}, not a state_dict "
                        "(save it with torch.save(model.state_dict(), path))")
    try:
        module.load_state_dict(state)
    except (RuntimeError, TypeError) as exc:
        # torch's message is "Error(s) in loading state_dict for X:" then one indented line per problem.
        lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
        detail = "; ".join(lines[1:] or lines[:1])
        if len(detail) > 300:
            detail = detail[:297] + "..."
        raise UserError(f"[model].weights: {path.name} does not match {type(module).__name__}: {detail}") from None


def load_model(spec: Spec) -> LoadedModel:
    """Build the network (seeded random weights, or the user's state_dict) and its example input."""
    import torch

    ident = identify(spec)
    torch.manual_seed(spec.model.seed)
    if spec.model.zoo:
        import models

        entry = models.get(spec.model.zoo)
        module = entry.build()
        example = torch.randn(*ident.input_shape, generator=torch.Generator().manual_seed(spec.model.seed))
    else:
        path, factory = _user_source(spec)
        user = _import_user_source(path)  # executed afresh, after the seed: its top level may draw numbers
        fn = getattr(user, factory, None)
        if not callable(fn):
            raise UserError(f"[model].source: {path} has no function {factory!r}")
        try:
            result = fn()
        except Exception as exc:  # noqa: BLE001 - the user's factory failed: one line, as for the import
            first = (str(exc).strip().splitlines() or [""])[0]
            raise UserError(f"[model].source: {factory}() failed: {type(exc).__name__}: {first}") from None
        if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], torch.nn.Module)
                and isinstance(result[1], torch.Tensor)):
            raise UserError(f"[model].source: {factory}() must return (torch.nn.Module, example_input tensor)")
        module, example = result
        if spec.model.input_shape and tuple(example.shape) != spec.model.input_shape:
            example = torch.randn(*spec.model.input_shape, generator=torch.Generator().manual_seed(spec.model.seed))
    if spec.model.weights:
        _load_state_dict(module, spec.model.weights)
    module.eval()
    names = tuple(n for n, _ in module.named_modules() if n)
    cuts = spec.split.cuts if spec.split.cuts is not None else ident.default_cuts
    for cut in cuts or ():
        if cut not in names:
            raise UserError(f"{spec.path or 'spec'}: [split].cuts: unknown cut {cut!r} for {ident.name}; "
                            f"valid cuts: {', '.join(names)}")
    return LoadedModel(ident.name, module, example, tuple(cuts or ()), ident.definition_hash, ident.weights_id)


# --------------------------------------------------------------------------------------------------
# One pass before any export: the input fits, every cut gives one tensor


def check_forward(loaded: LoadedModel, spec: Spec) -> None:
    """Run the whole model once on its example input; a :class:`UserError` line when it cannot take the
    input (a wrong ``[model].input_shape``: the layer that failed is named), or when a cut's module, or
    the model itself, returns anything but one tensor (a phone part uploads one tensor).

    The pass runs on the ``meta`` device (shapes only, as :func:`harness.split.costs.count_macs` does); only when
    that fails is it run for real, so the error is the real one and is reported once.
    """
    import torch
    from torch.func import functional_call

    module, x = loaded.module, loaded.example_input
    outputs: dict[str, Any] = {}  # cut -> what its module returned
    entered: list[str] = []  # the modules entered and not yet left: the last one is where a failure is
    names = {m: n for n, m in module.named_modules()}
    cuts = set(loaded.cuts)

    def enter(m, _args):
        entered.append(names.get(m, ""))

    def leave(m, _args, out):
        name = entered.pop() if entered else ""
        if name in cuts:
            outputs.setdefault(name, out)

    hooks = [m.register_forward_pre_hook(enter) for m in module.modules()]
    hooks += [m.register_forward_hook(leave) for m in module.modules()]
    try:
        meta = {n: torch.empty_like(t, device="meta") for n, t in (*module.named_parameters(), *module.named_buffers())}
        try:
            with torch.no_grad():
                out = functional_call(module, meta, (x.to("meta"),))
        except Exception:  # noqa: BLE001 - an op without a meta kernel, or an input the model cannot take:
            entered.clear()  # the real pass says which
            outputs.clear()
            failure = None
            try:
                with torch.no_grad():
                    out = module(x)
            except Exception as exc:  # noqa: BLE001 - the model's own error, for the user's line
                failure = exc
            if failure is not None:
                raise UserError(_input_error(loaded, spec, entered[-1] if entered else "", failure)) from None
    finally:
        for h in hooks:
            h.remove()
    for cut in loaded.cuts:
        if cut in outputs and not isinstance(outputs[cut], torch.Tensor):
            raise UserError(f"{spec.path or 'spec'}: [split].cuts: {cut!r} returns {_kind(outputs[cut])}, not one "
                            "tensor; the phone part's output is the feature it uploads and must be a single "
                            "tensor: choose another cut (a module that returns one tensor)")
    if not isinstance(out, torch.Tensor):
        raise UserError(f"{spec.path or 'spec'}: [model]: {loaded.name} returns {_kind(out)}, not one tensor; "
                        "on-premise runs the whole model on the phone, so its forward() must return a single "
                        "tensor (return the main output only)")


def _kind(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)}"
    return f"a {type(value).__name__}"


def _input_error(loaded: LoadedModel, spec: Spec, layer: str, exc: BaseException) -> str:
    """One line: which input, which layer failed and how, and the input the model was built for."""
    detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if len(detail) > 200:
        detail = detail[:197] + "..."
    sub = dict(loaded.module.named_modules()).get(layer) if layer else None
    where = f"layer {layer!r} ({type(sub).__name__})" if sub is not None else "its forward()"
    shape = list(loaded.example_input.shape)
    origin = spec.path or "spec"
    if spec.model.input_shape is None:
        key = "[model].zoo" if spec.model.zoo else "[model].source"
        return f"{origin}: {key}: {loaded.name} cannot run its own example input {shape}: {where} fails: {detail}"
    built_for = _default_input_shape(spec)
    hint = f"; {loaded.name} was built for {list(built_for)}" if built_for else ""
    return (f"{origin}: [model].input_shape {shape} does not fit {loaded.name}: {where} fails: {detail}{hint} "
            "(fix or remove [model].input_shape)")


def _default_input_shape(spec: Spec) -> tuple[int, ...] | None:
    """The input shape the model comes with (the zoo's; a source factory's example, from the module
    :func:`load_model` imported), or None when it cannot be had."""
    if spec.model.zoo:
        import models

        return tuple(models.get(spec.model.zoo).input_shape)
    path, factory = _user_source(spec)
    user = sys.modules.get(_user_module_name(path))
    try:
        return tuple(getattr(user, factory)()[1].shape)
    except Exception:  # noqa: BLE001 - only a hint: the line is complete without it
        return None


# --------------------------------------------------------------------------------------------------
# Splitting


def _trace(module: "torch.nn.Module", cut: str):
    import torch.fx as fx

    class CutTracer(fx.Tracer):
        # The cut module must stay one node, whatever it contains (a ResNet stage, a conv block).
        def is_leaf_module(self, m, qualname):  # noqa: N802 - torch.fx API
            return qualname == cut or super().is_leaf_module(m, qualname)

    try:
        graph = CutTracer().trace(module)
    except Exception as exc:  # noqa: BLE001 - fx raises many types; all mean "cannot trace"
        raise UserError(f"cannot split {type(module).__name__}: torch.fx could not trace it ({exc})") from None
    return graph


def split_at(module: "torch.nn.Module", cut: str) -> tuple["torch.nn.Module", "torch.nn.Module"]:
    """Split ``module`` after the module named ``cut``: returns (phone, rest) with rest(phone(x)) == module(x)."""
    import torch.fx as fx
    import torch.nn as nn

    if cut == FULL:
        return module, nn.Identity()
    graph = _trace(module, cut)
    nodes = list(graph.nodes)
    cut_nodes = [n for n in nodes if n.op == "call_module" and n.target == cut]
    if not cut_nodes:
        valid = ", ".join(n for n, _ in module.named_modules() if n)
        raise UserError(f"unknown cut {cut!r} (not called in forward); valid cuts: {valid}")
    if len(cut_nodes) > 1:
        raise UserError(f"cut {cut!r} is called {len(cut_nodes)} times in forward; a cut must be called once")
    cut_node = cut_nodes[0]

    before: set = set()
    stack = [cut_node]
    while stack:
        node = stack.pop()
        if node not in before:
            before.add(node)
            stack.extend(node.all_input_nodes)

    phone_graph = fx.Graph()
    env: dict = {}
    for node in nodes:
        if node in before:
            env[node] = phone_graph.node_copy(node, lambda n: env[n])
    phone_graph.output(env[cut_node])

    rest_graph = fx.Graph()
    renv: dict = {cut_node: rest_graph.placeholder("feature")}
    for node in nodes:
        if node in before or node.op == "placeholder":
            continue
        for inp in node.all_input_nodes:
            if inp in renv:
                continue
            if inp.op == "get_attr":  # a parameter or constant: safe to read on both sides
                renv[inp] = rest_graph.node_copy(inp, lambda n: renv[n])
            else:
                raise UserError(f"cannot cut at {cut!r}: {node.name} after the cut also uses {inp.name} from "
                                f"before it (a skip connection crosses the cut); cut after the block instead")
        renv[node] = rest_graph.node_copy(node, lambda n: renv[n])

    phone = fx.GraphModule(module, phone_graph, class_name="PhonePart")
    rest = fx.GraphModule(module, rest_graph, class_name="CloudPart")
    return phone.eval(), rest.eval()


def reduce_with_pca(phone: "torch.nn.Module", rest: "torch.nn.Module", calibration: "torch.Tensor", k: int,
                    seed: int) -> tuple["torch.nn.Module", "torch.nn.Module", dict[str, Any]]:
    """The reduced embedding: append a dense PCA projection (fitted on ``calibration``) to the phone part.

    The cloud part starts with the reconstruction (the transposed projection plus the mean).
    Returns (phone_reduced, rest_reduced, info) with the explained variance ratio in ``info``.
    """
    import numpy as np
    import torch
    import torch.nn as nn
    from sklearn.decomposition import PCA

    with torch.no_grad():
        feats = phone(calibration)
    shape = tuple(feats.shape[1:])
    flat = feats.reshape(feats.shape[0], -1).double().numpy()
    n, d = flat.shape
    if k > min(n, d):
        raise UserError(f"reduced embedding: k={k} is larger than min(calibration samples {n}, feature size {d}); "
                        "raise [export].calibration_samples or lower [split].reduced_dims")
    pca = PCA(n_components=k, random_state=seed, svd_solver="full").fit(flat)
    w = torch.from_numpy(pca.components_.astype(np.float32))  # (k, d)
    mean = torch.from_numpy(pca.mean_.astype(np.float32))

    project = nn.Linear(d, k)
    reconstruct = nn.Linear(k, d)
    with torch.no_grad():
        project.weight.copy_(w)
        project.bias.copy_(-(w @ mean))
        reconstruct.weight.copy_(w.T)
        reconstruct.bias.copy_(mean)
    phone_r = nn.Sequential()
    phone_r.add_module("phone", phone)
    phone_r.add_module("flatten", nn.Flatten(1))
    phone_r.add_module("pca", project)
    rest_r = nn.Sequential()
    rest_r.add_module("reconstruct", reconstruct)
    rest_r.add_module("unflatten", nn.Unflatten(1, shape))
    rest_r.add_module("rest", rest)
    info = {"explained_variance_ratio": float(pca.explained_variance_ratio_.sum()), "feature_dim": d}
    return phone_r.eval(), rest_r.eval(), info


def calibration_batch(example: "torch.Tensor", samples: int, seed: int) -> "torch.Tensor":
    """Seeded inputs shaped like the example (no data set can be downloaded here)."""
    import torch

    shape = (samples, *example.shape[1:])
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(example.dtype)


def build_parts(loaded: LoadedModel, config: Configuration, spec: Spec) -> tuple["torch.nn.Module", "torch.nn.Module", dict[str, Any]]:
    """The (phone, rest) modules of one configuration, with extra facts (PCA variance) in a dict."""
    phone, rest = split_at(loaded.module, config.cut)
    if config.embedding != "reduced":
        return phone, rest, {}
    calib = calibration_batch(loaded.example_input, spec.export.calibration_samples, spec.export.calibration_seed)
    return reduce_with_pca(phone, rest, calib, config.reduced_dim, spec.export.calibration_seed)
