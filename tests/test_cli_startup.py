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
from tests.conftest import Org

BIN = Path(sys.executable).parent
HEAVY = ("aiohttp", "rich", "nacl", "argon2", "msgspec", "uvloop", "cryptography")
#: what ``mvault ARGS...`` imported: ``main()`` is run in a process that prints ``sys.modules`` at exit
PROBE = """
import atexit, json, sys
from client.cli.main import main
out = sys.argv[1]
def dump():
    print(json.dumps(sorted(sys.modules)), file=open(out, "w"))
    if "aiohttp.connector" in sys.modules:  # the CA store aiohttp's default verified context holds
        stats = sys.modules["aiohttp.connector"]._SSL_CONTEXT_VERIFIED.cert_store_stats()
        print(json.dumps(stats), file=open(out + ".ca", "w"))
atexit.register(dump)
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


#: What a command that moves a small file without a terminal has no use for (issue 17, a command's start):
#: rich at all (progress bars and tables are for a terminal, and nothing is printed through a console: the row
#: goes to the pipe as a tab-separated line; client/terminal.py makes its consoles at their first use),
#: certificate parsing (an ``spki`` pin only; the default ``cert`` pin is a SHA-256 of the DER).
NOT_FOR_A_SMALL_TRANSFER = ("rich", "cryptography.x509")


def test_a_small_get_loads_no_progress_bar_no_certificate_parser_and_no_ca_store(org: Org, tmp_path: Path) -> None:
    """``mvault get`` of a small file (a real server, a real session) imports none of
    ``NOT_FOR_A_SMALL_TRANSFER``, and aiohttp's default verified TLS context, which the client never uses,
    was made without reading the system's CA store (it trusts nothing: client/aiohttp_quiet.py)."""
    small = tmp_path / "small.txt"
    small.write_bytes(b"a small file\n" * 10)
    org.alice.ok("put", "drafting", str(small))
    got = tmp_path / "got.txt"
    modules = imported(tmp_path, "get", "drafting", "small.txt", "-o", str(got), env=org.alice.env())
    assert got.read_bytes() == small.read_bytes()  # the command did its work
    assert "aiohttp" in modules and "client.download" in modules and "client.terminal" in modules
    assert sorted(m for m in modules if m.startswith(NOT_FOR_A_SMALL_TRANSFER)) == []
    assert json.loads((tmp_path / "modules.json.ca").read_text())["x509_ca"] == 0


def test_the_ca_variables_are_given_back_after_aiohttps_import(monkeypatch: pytest.MonkeyPatch) -> None:
    """A member's own ``SSL_CERT_FILE`` is set again after the quiet import, an absent ``SSL_CERT_DIR`` absent."""
    from client.aiohttp_quiet import no_system_ca_store

    monkeypatch.setenv("SSL_CERT_FILE", "/etc/member-cas.pem")
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    with no_system_ca_store():
        assert os.environ["SSL_CERT_FILE"] == os.devnull
        assert "SSL_CERT_DIR" in os.environ
    assert os.environ["SSL_CERT_FILE"] == "/etc/member-cas.pem"
    assert "SSL_CERT_DIR" not in os.environ


def test_a_webpki_pin_still_trusts_the_system_cas() -> None:
    """The store aiohttp skips at import is read for a ``webpki`` pin: its context holds the system's CAs and
    checks the host name."""
    import ssl

    from client.api import transport_check
    from vault.pin import Pin

    context = transport_check(Pin("webpki"))
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.cert_store_stats() == ssl.create_default_context().cert_store_stats()


def test_a_commands_import_runs_no_collection_and_leaves_the_collector_on() -> None:
    """While a command's modules are imported the collector does not run (allocations that would set off
    collections set off none), and it is on again after, its generations back as before the freeze."""
    import gc

    from client.cli.main import imports_without_collection

    assert gc.isenabled()
    before = sum(generation["collections"] for generation in gc.get_stats())
    try:
        with imports_without_collection():
            assert not gc.isenabled()
            made: list[list[int]] = [[] for _ in range(20 * gc.get_threshold()[0])]  # 20x gen 0's threshold
        assert sum(generation["collections"] for generation in gc.get_stats()) == before
        assert gc.isenabled() and gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()  # this test process's objects collectable again
    assert len(made) > 0


def test_the_shipped_protocols_are_parsed_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """A command asks for the shipped security protocols several times (the view, the checkpoint's rules, the outside
    witnesses): the TOML is parsed for the first ask only (at most its two parses, schema and values), and every ask
    gets the same, unchanged protocols."""
    import tomllib

    from security import protocols

    parses: list[int] = []
    real_loads = tomllib.loads

    def loads(text: str) -> dict[str, object]:
        parses.append(len(text))
        return real_loads(text)

    monkeypatch.setattr(tomllib, "loads", loads)
    first = protocols.defaults()
    assert protocols.defaults() is first and protocols.defaults() is first
    assert len(parses) <= 2
    assert first == protocols.parse(protocols.default_text())  # what a fresh parse gives
