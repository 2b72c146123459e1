"""Start-up of ``mvault`` (issue 15): commands are known by name and short help, and a command's module is
imported only when that command runs, so ``--help`` and ``--version`` load no aiohttp, rich or nacl.

Checked through ``sys.modules`` of a real ``mvault`` process (never timings), and the lazy table against
the command modules' own ``COMMANDS``.
"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

import client.cli
from client.cli.main import COMMANDS, LazyGroup, cli

BIN = Path(sys.executable).parent
HEAVY = ("aiohttp", "rich", "nacl", "argon2", "msgspec", "uvloop", "cryptography")
#: what ``mvault ARGS...`` imported: ``main()`` is run in a process that prints ``sys.modules`` at exit
PROBE = """
import atexit, json, sys
from client.cli.main import main
out = sys.argv[1]
atexit.register(lambda: print(json.dumps(sorted(sys.modules)), file=open(out, "w")))
sys.argv = ["mvault", *sys.argv[2:]]
main()
"""


def imported(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> set[str]:
    out = tmp_path / "modules.json"
    full_env = {**os.environ, "MVAULT_HOME": str(tmp_path / "home"), "COLUMNS": "80", **(env or {})}
    done = subprocess.run([sys.executable, "-c", PROBE, str(out), *args], capture_output=True, text=True,
                          env=full_env, timeout=60)
    assert "Traceback" not in done.stderr, done.stderr
    return set(json.loads(out.read_text()))


def group_modules() -> list[str]:
    """Every module of client/cli that defines commands (a ``COMMANDS`` tuple)."""
    names = [f"client.cli.{info.name}" for info in pkgutil.iter_modules(client.cli.__path__)
             if info.name not in ("__main__", "main")]
    return sorted(name for name in names if hasattr(importlib.import_module(name), "COMMANDS"))


def real_commands() -> dict[str, click.Command]:
    return {command.name or "": command for name in group_modules()
            for command in importlib.import_module(name).COMMANDS}


def test_the_table_is_the_real_commands() -> None:
    """Each name in the table is a command of the module it names, with the same short help, and every
    command of every group module is in the table."""
    real = {name: (command.callback.__module__ if command.callback else "", command.get_short_help_str(10**6))
            for name, command in real_commands().items()}
    assert {name: (module, short) for name, (module, short) in COMMANDS.items()} == real
    assert {module for module, _ in COMMANDS.values()} == set(group_modules())


@pytest.mark.parametrize("args", [["--help"], ["--version"], []])
def test_help_and_version_import_no_heavy_library(tmp_path: Path, args: list[str]) -> None:
    modules = imported(tmp_path, *args)
    assert sorted(m for m in modules if m.split(".")[0] in HEAVY) == []
    assert sorted(m for m in modules if m.startswith("client.cli.") and m != "client.cli.main") == []


def test_help_lists_every_command_as_click_would(tmp_path: Path) -> None:
    """``mvault --help`` is what click prints for a group holding every real command (same rows, same
    cut of each help at the terminal width)."""
    eager = click.Group("mvault", commands=list(real_commands().values()), params=cli.params, help=cli.help)
    expected = eager.get_help(click.Context(eager, info_name="mvault", terminal_width=78))
    done = subprocess.run([str(BIN / "mvault"), "--help"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "COLUMNS": "80"})
    assert done.returncode == 0, done.stderr
    assert done.stdout == expected + "\n"
    for name in COMMANDS:
        assert f"\n  {name} " in done.stdout


def test_a_command_imports_only_its_own_group(tmp_path: Path) -> None:
    modules = imported(tmp_path, "team", "--help")
    groups = {m for m in modules if m.startswith("client.cli.")} - {"client.cli.main", "client.cli._common"}
    assert groups == {"client.cli.teams"}


def test_completing_a_command_name_imports_no_command(tmp_path: Path) -> None:
    env = {"_MVAULT_COMPLETE": "bash_complete", "COMP_WORDS": "mvault t", "COMP_CWORD": "1"}
    modules = imported(tmp_path, env=env)
    assert sorted(m for m in modules if m.split(".")[0] in HEAVY or m.startswith("client.cli.")) \
        == ["client.cli.main"]


def test_completing_a_subcommand_loads_its_group(tmp_path: Path) -> None:
    env = {**os.environ, "_MVAULT_COMPLETE": "bash_complete", "COMP_WORDS": "mvault team c", "COMP_CWORD": "2"}
    done = subprocess.run([str(BIN / "mvault")], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["plain,create"]


def test_a_wrong_table_entry_is_a_clear_bug() -> None:
    group = LazyGroup("mvault", table={"nosuch": ("client.cli.teams", "Missing.")})
    with pytest.raises(LookupError, match="client.cli.teams has no command 'nosuch'"):
        group.get_command(click.Context(group), "nosuch")
