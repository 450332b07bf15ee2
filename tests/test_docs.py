"""The documentation holds together: README.md is a front page, every relative link of README.md and
docs/*.md reaches a file (and, for ``#anchor``, a heading of it, slugged as GitHub does), and every place in
the code that cites the README or a docs page names a file (and a section) that exists."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path


from harness.core import exitcodes

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
MAX_README_LINES = 300

# Text files of the repository whose citations are checked. Not: the pages themselves (their links are
# checked below), this file, and third-party text kept as test fixtures (it cites other projects' READMEs).
SOURCE_SUFFIXES = {".py", ".toml", ".yml", ".yaml", ".md", ".swift", ".js", ".css", ".cfg", ".txt", ".json"}
NOT_SOURCES = ("README.md", "docs/", "tests/fixtures/", "tests/test_docs.py")

FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
INLINE_CODE = re.compile(r"`+[^`]*`+")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REF_LINK = re.compile(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$")
HTML_ID = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"")


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks."""
    out, fenced = [], False
    for n, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            out.append((n, line))
    return out


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: link text kept, lower case, punctuation but '-' and '_' dropped,
    spaces to '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor of a markdown file, duplicates numbered as GitHub numbers them."""
    seen: dict[str, int] = {}
    out: set[str] = set()
    for _, line in prose_lines(path.read_text(encoding="utf-8")):
        out.update(HTML_ID.findall(line))
        m = HEADING.match(line)
        if not m:
            continue
        base = slug(m.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        out.add(base if count == 0 else f"{base}-{count}")
    return out


def headings(path: Path) -> set[str]:
    return {m.group(2).strip() for _, line in prose_lines(path.read_text(encoding="utf-8"))
            if (m := HEADING.match(line))}


def pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def rel(path: Path) -> str:
    return path.resolve().relative_to(ROOT).as_posix()


def links(path: Path) -> list[tuple[int, str]]:
    out = []
    for n, line in prose_lines(path.read_text(encoding="utf-8")):
        line = INLINE_CODE.sub("", line)
        out += [(n, t) for t in LINK.findall(line)]
        if m := REF_LINK.match(line):
            out.append((n, m.group(1)))
    return out


def check_target(target: Path, anchor: str, where: str) -> str | None:
    """None when ``target`` (and its ``anchor``) exist, else what is wrong."""
    if not target.exists():
        return f"{where}: {target.relative_to(ROOT) if target.is_relative_to(ROOT) else target} does not exist"
    if anchor and target.suffix == ".md" and anchor not in anchors(target):
        return f"{where}: {rel(target)} has no heading with the anchor #{anchor}"
    return None


def test_readme_is_a_front_page():
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n <= MAX_README_LINES, f"README.md has {n} lines; move detail to a docs/ page (at most {MAX_README_LINES})"


def test_every_relative_link_resolves():
    problems = []
    checked = 0
    for page in pages():
        for n, target in links(page):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            path_part, _, anchor = target.partition("#")
            dest = page if not path_part else (ROOT / path_part.lstrip("/") if path_part.startswith("/")
                                               else page.parent / path_part)
            checked += 1
            if problem := check_target(dest.resolve(), anchor, f"{rel(page)}:{n} ({target})"):
                problems.append(problem)
    assert checked > 20, f"only {checked} relative links found: is the link pattern still right?"
    assert not problems, "\n".join(problems)


def test_every_page_is_listed():
    listed = {p: {t.partition("#")[0] for _, t in links(p)} for p in (README, DOCS / "README.md")}
    names = {p.name for p in DOCS.glob("*.md") if p.name != "README.md"}
    for name in sorted(names):
        assert f"docs/{name}" in listed[README], f"README.md does not list docs/{name}"
        assert name in listed[DOCS / "README.md"], f"docs/README.md does not list {name}"


def test_readme_exit_codes_are_the_code():
    text = README.read_text(encoding="utf-8")
    table = {int(m) for m in re.findall(r"^\| (\d+) \|", text, re.M)}
    assert table == {code for code, _ in exitcodes.TABLE}, "README's exit-code table differs from harness/core/exitcodes.py"


# --------------------------------------------------------------------------------------------------
# Citations in the code

DOCS_CITATION = re.compile(r"(?<![\w/.-])(docs/[\w-]+\.md)(?:#([\w-]+))?")
README_PATH = re.compile(r"(?<![\w/.-])((?:[\w.-]+/)*README\.md)")
# the README's "Section", the README's Section section, the "Section" section of the (top-level) README
README_SECTION = re.compile(r"README(?:\.md)?'s\s+(?:\"([^\"]+)\"|((?:[A-Z][\w()-]*\s+)+)section)"
                            r"|\"([^\"]+)\"\s+section\s+of\s+the\s+(?:top-level\s+)?README")


def sources() -> list[Path]:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.splitlines()
    return [ROOT / f for f in files
            if (Path(f).suffix in SOURCE_SUFFIXES or Path(f).name == "Makefile")
            and not any(f == x or (x.endswith("/") and f.startswith(x)) for x in NOT_SOURCES)
            and (ROOT / f).is_file()]


def citations() -> list[tuple[str, str, str]]:
    """(where, kind, what): every docs page, README file and README section the code names."""
    out = []
    for path in sources():
        text = path.read_text(encoding="utf-8", errors="replace")
        for m in DOCS_CITATION.finditer(text):
            out.append((f"{rel(path)}:{text.count(chr(10), 0, m.start()) + 1}", "page", m.group(0)))
        for m in README_PATH.finditer(text):
            out.append((f"{rel(path)}:{text.count(chr(10), 0, m.start()) + 1}", "file", m.group(1)))
        for m in README_SECTION.finditer(text):
            section = " ".join((m.group(1) or m.group(2) or m.group(3)).split())
            out.append((f"{rel(path)}:{text.count(chr(10), 0, m.start()) + 1}", "section", section))
    return out


def test_code_cites_existing_pages_and_sections():
    found = citations()
    assert any(kind == "page" for _, kind, _ in found), "no docs/ citation found in the code: is the scan still right?"
    readme_headings = headings(README)
    problems = []
    for where, kind, what in found:
        if kind == "page":
            page, _, anchor = what.partition("#")
            if problem := check_target((ROOT / page).resolve(), anchor, f"{where} ({what})"):
                problems.append(problem)
        elif kind == "file":
            if not (ROOT / what).is_file():
                problems.append(f"{where}: {what} does not exist")
        elif what not in readme_headings:
            problems.append(f"{where}: README.md has no section {what!r} (cite the docs/ page that holds it)")
    assert not problems, "\n".join(problems)


def test_slug_is_githubs():
    assert slug("Measuring on `cpu-1core`") == "measuring-on-cpu-1core"
    assert slug("Devices, sessions and what a number is (agent contract v2)") == \
        "devices-sessions-and-what-a-number-is-agent-contract-v2"
    assert slug("Finding where `load_ms_cold` is measured, from the folder names") == \
        "finding-where-load_ms_cold-is-measured-from-the-folder-names"
    assert slug("Comparing two runs: `splitbench compare`") == "comparing-two-runs-splitbench-compare"
