"""Every command's ``--help``, as a user sees it: a flag shows no value after it (``--resume``, not
``--resume <bool>``), an option that takes a value still shows its type, and the help exits 0.

The commands are read from the CLI itself, so a command or flag added later is covered.
"""

from __future__ import annotations

import re

import pytest
import typer

from harness.cli import app, main


def _commands(command=None, path=()):
    """(argv path, click command) for every command and group of the CLI, the root included."""
    command = command or typer.main.get_command(app)
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, (*path, name))


COMMANDS = list(_commands())


def test_every_command_is_listed():
    names = {" ".join(p) for p, _ in COMMANDS}
    assert {"", "run", "export", "report", "recommend", "cluster", "cluster start-head", "cluster join"} <= names


@pytest.mark.parametrize("path,command", COMMANDS, ids=[" ".join(p) or "splitbench" for p, _ in COMMANDS])
def test_help_shows_no_value_after_a_flag(path, command, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # one line per option: the flag and what follows it stay together
    assert main([*path, "--help"]) == 0
    out = capsys.readouterr().out
    assert "<bool>" not in out
    options = [p for p in command.params if isinstance(p, typer.core.TyperOption)]
    flags = [o for o in options if o.is_flag]
    for flag in [*flags, "--help"]:
        name = flag if isinstance(flag, str) else flag.opts[0]
        line = next((ln for ln in out.splitlines() if re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", ln)
                     and "│" in ln), None)
        assert line is not None, f"{name} missing from `{' '.join(path)} --help`"
        after = line.split(name, 1)[1].strip()
        assert not after.startswith("<"), f"{name} shows a value: {line.strip()}"
    for option in options:
        if option.is_flag or option.hidden:
            continue
        name = option.opts[0]
        assert re.search(rf"{re.escape(name)}\s+<", out), f"{name} lost its type in `{' '.join(path)} --help`"
