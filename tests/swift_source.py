"""The agent app's Swift sources read with tree-sitter-swift (no Swift compiler on this host): syntax errors,
and the Codable types' JSON keys, for the checks in tests/test_ios_swift.py.

tree-sitter parses; it does not type-check. A source that parses can still fail to compile (an unknown
name, a wrong type): that only a Mac with Xcode can tell (``make ios-agent``, the Simulator tests).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import tree_sitter_swift
from tree_sitter import Language, Node, Parser

APP = Path(__file__).resolve().parents[1] / "device_agents" / "ios" / "app"
LANGUAGE = Language(tree_sitter_swift.language())


def parse(source: bytes) -> Node:
    return Parser(LANGUAGE).parse(source).root_node


def syntax_errors(source: bytes) -> list[str]:
    """Every ERROR or MISSING node, as "line:column: what" (1-based), in source order."""
    found = []

    def walk(node: Node) -> None:
        if node.type == "ERROR" or node.is_missing:
            line, col = node.start_point
            what = f"missing {node.type}" if node.is_missing else f"cannot parse {node.text.decode()[:60]!r}"
            found.append(f"{line + 1}:{col + 1}: {what}")
        for child in node.children:
            walk(child)

    walk(parse(source))
    return found


def swift_files() -> list[Path]:
    return sorted(APP.rglob("*.swift"))


# --------------------------------------------------------------------------------------------------
# Types and their keys


@dataclass
class SwiftType:
    """A struct, class or enum of the source: its stored properties (name -> the type it names, if any),
    its CodingKeys (case -> JSON key) and the keys its ``encode(to:)`` writes."""

    name: str
    kind: str
    stored: dict[str, str | None] = field(default_factory=dict)
    coding_keys: dict[str, str] | None = None
    encoded: set[str] | None = None


def _name_of_type(node: Node | None) -> str | None:
    """The type a type annotation names, through optionals and arrays (``Model?`` -> Model)."""
    if node is None:
        return None
    if node.type == "type_identifier":
        return node.text.decode()
    ids = [n for n in _descendants(node) if n.type == "type_identifier"]
    return ids[-1].text.decode() if ids else None


def _descendants(node: Node):
    for child in node.children:
        yield child
        yield from _descendants(child)


def _stored_properties(body: Node) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for prop in body.children:
        if prop.type != "property_declaration":
            continue
        modifiers = next((c for c in prop.children if c.type == "modifiers"), None)
        if modifiers is not None and re.search(r"\b(static|class)\b", modifiers.text.decode()):
            continue
        if any(c.type == "computed_property" for c in prop.children):
            continue
        names = [c for c in prop.children if prop.field_name_for_child(prop.children.index(c)) == "name"
                 and c.type == "pattern"]
        annotation = next((c for c in prop.children if c.type == "type_annotation"), None)
        value = prop.child_by_field_name("value")
        typed = _name_of_type(annotation.child_by_field_name("name")) if annotation is not None else None
        if typed is None and value is not None and value.type == "call_expression":
            typed = value.children[0].text.decode()  # `var memory = MemoryFacts()`
        for pattern in names:
            ident = pattern.child_by_field_name("bound_identifier") or pattern
            out[ident.text.decode()] = typed
    return out


def _coding_keys(body: Node) -> dict[str, str] | None:
    for decl in body.children:
        if decl.type == "class_declaration" and decl.child_by_field_name("name").text.decode() == "CodingKeys":
            keys = {}
            for entry in decl.child_by_field_name("body").children:
                if entry.type != "enum_entry":
                    continue
                names = [c.text.decode() for c in entry.children if c.type == "simple_identifier"]
                raw = next((c for c in entry.children if c.type == "line_string_literal"), None)
                for name in names:
                    keys[name] = raw.text.decode().strip('"') if raw is not None else name
            return keys
    return None


def _encoded_keys(body: Node) -> set[str] | None:
    """The ``forKey: .x`` cases of the type's ``encode(to:)``, None when it has none."""
    for decl in body.children:
        if decl.type == "function_declaration" and decl.child_by_field_name("name").text.decode() == "encode":
            keys = set()
            for node in _descendants(decl):
                if node.type == "value_argument":
                    label = node.child_by_field_name("name")
                    value = node.child_by_field_name("value")
                    if label is not None and label.text.decode() == "forKey" and value is not None \
                            and value.type == "prefix_expression":
                        keys.add(value.child_by_field_name("target").text.decode())
            return keys
    return None


def types(source: bytes) -> dict[str, SwiftType]:
    """Every struct, class and enum declared in ``source`` (nested ones too), by name."""
    out: dict[str, SwiftType] = {}
    for node in _descendants(parse(source)):
        if node.type != "class_declaration":
            continue
        kind = node.child_by_field_name("declaration_kind").text.decode()
        name = node.child_by_field_name("name").text.decode()
        body = node.child_by_field_name("body")
        t = SwiftType(name, kind)
        if kind in ("struct", "class") and body is not None:
            t.stored = _stored_properties(body)
            t.coding_keys = _coding_keys(body)
            t.encoded = _encoded_keys(body)
        out[name] = t
    return out


def snake(name: str) -> str:
    """JSONDecoder's .convertFromSnakeCase, backwards: jobId -> job_id."""
    return re.sub(r"([A-Z])", lambda m: "_" + m[1].lower(), name)


def json_keys(t: SwiftType, snake_case: bool) -> dict[str, str]:
    """Property -> the JSON key it is coded as: its CodingKeys case, else its name (snake_cased when the
    decoder converts from snake case)."""
    if t.coding_keys is not None:
        return {p: t.coding_keys[p] for p in t.coding_keys}
    return {p: snake(p) if snake_case else p for p in t.stored}


def uses_snake_case(source: bytes, type_name: str) -> bool:
    """Whether the type's code sets ``keyDecodingStrategy = .convertFromSnakeCase`` (an assignment node,
    not a comment or a string)."""
    for node in _descendants(parse(source)):
        if node.type == "class_declaration" and node.child_by_field_name("name").text.decode() == type_name:
            for a in _descendants(node):
                if a.type != "assignment":
                    continue
                target, result = a.child_by_field_name("target"), a.child_by_field_name("result")
                if target is not None and result is not None and result.type == "prefix_expression" \
                        and target.text.decode().endswith(".keyDecodingStrategy") \
                        and result.child_by_field_name("target").text.decode() == "convertFromSnakeCase":
                    return True
    return False
