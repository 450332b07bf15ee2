"""Names as a terminal or a page shows them: what would steer the display made visible instead.

A name comes from the user or a device (a model's layer, a spec's target, a phone's model name, a results
directory's path). Shown raw, a right-to-left override (U+202E) reverses what follows it, so ``evil-simple``
can read ``elpmis-live``; an escape (``\\x1b``) moves the cursor or recolours a terminal; a newline splits a
row. :func:`visible` replaces each such character by its Python escape (``\\u202e``, ``\\x1b``, ``\\n``), and
a byte of a path that is not UTF-8 (Python keeps it as a lone surrogate) by the byte (``\\xff``), so the
name is shown whole, on one line, and can be written in any encoding.
"""

from __future__ import annotations

import unicodedata

# Unicode's bidirectional formatting characters (UAX #9, "Explicit Directional Formatting Characters",
# plus the implicit marks): embeddings and overrides, their pop, the isolates, LRM, RLM and ALM.
BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _escape(ch: str) -> str:
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8, as os.fsdecode keeps it (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    if code <= 0xFF:
        return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(ch, f"\\x{code:02x}")
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def _hidden(ch: str) -> bool:
    return ch in BIDI_CONTROLS or unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp")


def visible(text: object, *, keep: str = "") -> str:
    """``text`` with every control character (C0, C1, DEL), bidirectional formatting character, line or
    paragraph separator and undecodable byte replaced by its escape; the characters in ``keep`` (e.g.
    ``"\\n"`` for a block of text) stay as they are. Other text, right-to-left letters included, is unchanged."""
    s = str(text)
    if all(ch.isprintable() or ch in keep for ch in s) and not any(ch in BIDI_CONTROLS for ch in s):
        return s  # the common case, fast
    return "".join(_escape(ch) if _hidden(ch) and ch not in keep else ch for ch in s)


def markup(text: object) -> str:
    """``text`` for a rich markup string (a title, a progress description, a line with [colour]): made
    :func:`visible`, and its square brackets escaped so that a name is shown, never obeyed as markup."""
    from rich.markup import escape

    return escape(visible(text))


def cell(value: object) -> str:
    """A table cell as a message quotes it: text in quotes (``'nan'``), a number as written (``-3``, ``inf``)."""
    return visible(repr(value) if isinstance(value, str) else str(value))
