"""docs/ios.md stays true to the code: its worked example spec loads, with an [ios] table the agent
accepts; every precondition the agent checks and every launch refusal it names are on the page; the iOS
code cites the page, not README sections."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("pymobiledevice3", reason="the ios extra is not installed (pip install 'splitbench[ios]')")

from device_agents.ios.session import ALL_CHECKS, FIX, parse_options  # noqa: E402
from harness.split.configurations import configurations  # noqa: E402
from harness.config.spec import load_spec  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "ios.md"


def test_the_worked_example_spec_loads_with_its_ios_table(tmp_path):
    blocks = [b for b in re.findall(r"```toml\n(.*?)```", DOC.read_text(), re.S) if "\n[ios]\n" in b]
    assert len(blocks) == 1
    path = tmp_path / "first_iphone.toml"
    path.write_text(blocks[0])
    spec = load_spec(path)
    assert list(spec.run.targets) == ["ios"] and list(spec.export.backends) == ["coreml"]
    opts = parse_options(spec.devices["ios"])
    assert opts.bundle_id == "com.yourname.splitbench-agent" and spec.run.accelerators == ("cpu",)
    assert Path(opts.app) == tmp_path / "build" / "ios-agent" / "SplitbenchAgent.ipa"  # relative to the spec
    assert [c.cut for c in configurations(spec)] == ["conv4_2", "conv6_1", "conv7", "full"]


def test_the_page_names_every_precondition_and_launch_refusal():
    text = DOC.read_text()
    rows = set(re.findall(r"^\| ([^|]+?) \|", text, re.M))
    assert set(ALL_CHECKS) <= rows, set(ALL_CHECKS) - rows
    for said in ("`Security`", "`NotFound`", "`Locked`", "no process", "any other error"):
        assert any(r.startswith(said) for r in rows), said
    assert "Settings > General > VPN & Device Management" in FIX["untrusted"] and "docs/ios.md" in FIX["untrusted"]


def test_the_ios_code_cites_the_page_not_readme_sections():
    make = (REPO / "Makefile").read_text()
    target = make[make.index("# The iPhone agent app"):]
    target = target[:target.index("\n\n")] if "\n\n" in target else target  # the ios-agent target alone
    texts = {str(f): f.read_text() for f in [*sorted((REPO / "device_agents" / "ios").rglob("*.py")),
                                             REPO / "device_agents" / "ios" / "README.md"]}
    texts["Makefile: ios-agent"] = target
    for where, text in texts.items():
        assert not re.search(r"README's|README\.md's|the README", text), where
    assert "docs/ios.md" in target
    for step in ("xcode-select -s /Applications/Xcode.app/Contents/Developer", "Settings > Accounts",
                 "DEVELOPMENT_TEAM", "pip install -e '.[ios]'", "Developer Mode", "BUNDLE_ID",
                 "Run (⌘R)"):
        assert step in DOC.read_text(), step
