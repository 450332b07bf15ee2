"""The tree shows the pipeline, and stays that way: no import cycles, each stage imports only the stages
before it, the device side never imports the host side, no private name crosses a module, no source file
over 600 lines (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("harness", "device_agents", "models")
# harness's stages in import order: a stage imports only those to its left. `results` (the record model, the
# store, the tables) comes before `measure`, whose writer loop writes into it; on top, the stage sequence
# (orchestrate), the demo and the command line.
STAGES = ("core", "config", "split", "export", "results", "measure", "analysis", "report", "top")
MAX_LINES = 600
SOURCE_SUFFIXES = (".py", ".swift", ".js", ".css", ".sh")


def _modules() -> dict[str, Path]:
    files = {}
    for package in PACKAGES:
        for f in (ROOT / package).rglob("*.py"):
            parts = list(f.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            files[".".join(parts)] = f
    return files


def _imports(files: dict[str, Path]) -> dict[str, dict[str, int]]:
    """module -> {imported project module: line}; lazy imports count, those under `if TYPE_CHECKING:` do not."""

    def resolve(name: str) -> str | None:
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    edges: dict[str, dict[str, int]] = {}
    for mod, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                   for n in ast.walk(node)}
        out: dict[str, int] = {}
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in files else node.module
                           for a in node.names]
            else:
                continue
            for t in targets:
                r = resolve(t)
                if r and r != mod:
                    out.setdefault(r, node.lineno)
        edges[mod] = out
    return edges


def _stage(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "harness":
        return None
    if len(parts) == 1:
        return "core"  # harness/__init__.py: the version only
    return parts[1] if parts[1] in STAGES else "top"


def test_no_import_cycles():
    files = _modules()
    edges = _imports(files)
    cycles, state, stack = [], {}, []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in edges[m]:
            if state.get(n) == 1:
                cycles.append(" -> ".join(stack[stack.index(n):] + [n]))
            elif n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(files):
        if m not in state:
            visit(m)
    assert cycles == []


def test_each_stage_imports_only_the_stages_before_it():
    edges = _imports(_modules())
    upward = [f"{m} -> {n} (line {line})" for m, targets in edges.items() for n, line in targets.items()
              if _stage(m) and _stage(n) and STAGES.index(_stage(n)) > STAGES.index(_stage(m))]
    assert upward == []


def test_the_device_side_never_imports_the_host_side():
    edges = _imports(_modules())
    assert [f"{m} -> {n}" for m, targets in edges.items() if m.startswith("device_agents")
            for n in targets if n.startswith("harness")] == []


def test_no_private_name_is_imported_from_another_module():
    found = []
    for mod, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in PACKAGES:
                found += [f"{mod}: from {node.module} import {a.name}" for a in node.names
                          if a.name.startswith("_") and not a.name.startswith("__")]
    assert found == []


def test_no_source_file_is_over_600_lines():
    long = [f"{p.relative_to(ROOT)}: {n} lines" for folder in (*PACKAGES, "tests", "benchmarks", "examples")
            for p in sorted((ROOT / folder).rglob("*")) if p.suffix in SOURCE_SUFFIXES
            and (n := len(p.read_text(encoding="utf-8", errors="replace").splitlines())) > MAX_LINES]
    assert long == []


def test_every_stage_is_a_package_and_every_module_has_a_stage():
    for stage in STAGES[:-1]:
        assert (ROOT / "harness" / stage / "__init__.py").is_file(), stage
    top = sorted(p.name for p in (ROOT / "harness").glob("*.py"))
    assert top == ["__init__.py", "cli.py", "demo.py", "orchestrate.py"]
