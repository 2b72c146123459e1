"""``mvault``: the member's command line (the root group, its exit codes, and its command groups).

Every failure prints one line (``error: ...``) to stderr and exits non-zero; a usage error adds one
line ``hint: run 'mvault CMD --help'``. Under ``--json`` (before or after the command) a failure is
one JSON object on stderr instead: ``{"error": CODE, "message": TEXT, "exit_code": N}``, where CODE
is the ``VaultError``'s ``code`` (vault/errors.py), or ``usage``, ``interrupted``, ``io_error``
(a local file), ``failed`` (another refusal of click's), ``internal``. ``MVAULT_HOME`` and
``MVAULT_PASSPHRASE_FILE`` (or ``--passphrase-command``, ``MVAULT_PASSPHRASE_COMMAND``) make it
scriptable, and ``mvault unlock`` starts a short unlock session
(like ``bw unlock``).

Exit codes (``EXIT_*`` below; a ``VaultError``'s comes from its class, ``exit_code``):

* 0: done.
* 1: refused, a conflict, or a failure: a refusal by the server (even one it names with a
  security code: it refused our request, it was not caught lying), not found, a wrong
  passphrase, an unreachable server, a local file; ``audit verify`` or ``audit report``
  finding a problem or a violated rule.
* 2: usage: an unknown command or option, a missing or malformed argument.
* 3: a security error: what the server or storage served failed a check here: ``CryptoError``
  (``DecryptionFailed``, ``BadSignature``, ``Truncated``, ``IntegrityError`` and its
  ``ProofError``/``LogInconsistent``), ``RollbackDetected``, ``ServerMismatch`` (certificate or
  organization root not the pinned one). Stop and tell your Security Team.
* 70: an internal error (a bug: ``MVAULT_DEBUG=1`` shows the traceback).
* 130: interrupted (Ctrl-C) or aborted at a prompt.

Each group module (account, teams, members, devices, documents, files, audit, incident, threads, completion) imports
only ``client.cli._common`` and the client API, never another group. This module imports none of
them: ``COMMANDS`` names each command's module and short help, and a module is imported (by name,
``importlib``) only when one of its commands runs, as pip's command registry does. So
``mvault --help`` and ``--version`` load click and nothing heavy (no aiohttp, rich, nacl), and a
command pays only for its own group's imports. tests/test_cli_startup.py keeps the table equal to
the modules' own ``COMMANDS`` and checks what ``--help`` imports.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import io
import json
import os
import sys
from collections.abc import Iterator
from typing import Any, NoReturn

import click
from click.shell_completion import CompletionItem

from client.passphrase import Passphrases
from client.sanitize import one_line
from vault import __version__
from vault.errors import EXIT_FAILED, EXIT_SECURITY, VaultError

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130
__all__ = ["EXIT_FAILED", "EXIT_INTERNAL", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_SECURITY", "EXIT_USAGE", "cli", "main"]

#: Every ``mvault`` command: its name -> (the module whose ``COMMANDS`` holds it, its short help).
COMMANDS: dict[str, tuple[str, str]] = {
    "join": ("client.cli.account", "Make keys (asks a passphrase) and join the organization with an invite CODE."),
    "unlock": ("client.cli.account", "Unlock for a few minutes: an agent holds the key in memory; prints `export "
                                     "MVAULT_SESSION=...` for your shell (not key material: useless once the agent is"
                                     " gone)."),
    "lock": ("client.cli.account", "End the unlock session now: the agent forgets the key and exits."),
    "whoami": ("client.cli.account", "Who you are, on which server, with which roles."),
    "invite": ("client.cli.account", "Print a one-time invite code for a new member; `invite ls` lists open invites, "
                                     "`invite revoke ID` withdraws one."),
    "status": ("client.cli.account", "Server, unlock session, who you are, pinned checkpoint, pending work, warnings."),
    "passphrase": ("client.cli.account", "Your keystore's passphrase."),
    "team": ("client.cli.teams", "Create and manage teams."),
    "leave": ("client.cli.teams", "Leave a team (its key is rotated by the next key holder's client)."),
    "admit": ("client.cli.members", "Admit a pending member (NCC; after the bootcamp)."),
    "role": ("client.cli.members", "Grant or revoke organization roles (NCC only)."),
    "members": ("client.cli.members", "The organization: roles, devices, verified or not."),
    "verify": ("client.cli.members", "Show the safety number you and MEMBER compare in person."),
    "vouch": ("client.cli.members", "Vouch for MEMBER: a signed record in the organization chain (rule vouching)."),
    "remove": ("client.cli.members", "NCC: remove MEMBER from the organization: logins stop, and they are out of "
                                     "every team at once."),
    "device": ("client.cli.devices", "Your devices: add, link, list, revoke."),
    "recovery-key": ("client.cli.devices", "Make a paper key (an offline device): write down the key and the server "
                                           "line, keep them safe."),
    "recover": ("client.cli.devices", "On a fresh machine: restore access with a recovery key (CODE, its groups with "
                                      "or without spaces; asked when not given, so that it stays out of the shell's "
                                      "history)."),
    "put": ("client.cli.documents", "Encrypt and upload each PATH as a new document, or a new version of it."),
    "get": ("client.cli.documents", "Download, verify and decrypt a document (written only if everything verifies)."),
    "ls": ("client.cli.documents", "Documents of a team: names, sizes, versions, authors."),
    "history": ("client.cli.documents", "Every version of a document."),
    "rm": ("client.cli.files", "Delete a document: a signed deletion as its newest version (its history is kept; "
                               "restore brings it back)."),
    "mv": ("client.cli.files", "Rename a document: its content under NEW (history follows it), then OLD deleted."),
    "restore": ("client.cli.files", "Bring back a deleted or older version of a document as its newest version."),
    "restored": ("client.cli.restored", "A server restored from an older backup: what this device sees, and the "
                 "Security Team's acceptance."),
    "republish": ("client.cli.restored", "After a restore: put back documents this device holds newer local copies "
                  "of; list what is lost."),
    "sync": ("client.cli.sync", "Keep folder DIR in step with team TEAM's documents: one pass that pulls, pushes "
                                "and reports."),
    "export": ("client.cli.export", "Export a team's documents as files with a manifest signed in SSH's format (or "
                                     "age-encrypted); `export verify` checks one."),
    "audit": ("client.cli.audit", "The audit log: read, export, verify, witness, report, exposure."),
    "incident": ("client.cli.incident", "Incidents: a departure or a lost device, from the removal to the last weekly "
                                        "review."),
    "thread": ("client.cli.threads", "Team threads: end-to-end encrypted, signed messages, delivered live."),
    "coalition": ("client.cli.coalition", "Coalition spaces: a team shared with allied organizations, each pinned "
                                          "by its root and coalition key."),
    "server": ("client.cli.server", "Where this client reaches the organization's server; moving it."),
    "org": ("client.cli.org", "The organization as a whole: closing it (NCC proposes, NCC and Security Team "
                              "approve)."),
    "completion": ("client.cli.completion", "Print the shell completion script for SHELL (bash, zsh or fish)."),
}
#: the module of ``Ctx``, the object every command is given (imported when a command runs, not for ``--help``)
CONTEXT_MODULE = "client.cli._common"


@contextlib.contextmanager
def imports_without_collection() -> Iterator[None]:
    """No garbage collection while a command's modules are imported (their thousands of new objects, none of
    them garbage, set off one collection after another: ~50 ms of CPU per command here), and what they made
    frozen after (``gc.freeze``: the command's own collections do not walk the modules' objects again)."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_on:
            gc.enable()


def load_command(name: str, module_name: str) -> click.Command:
    """Import ``module_name`` and return its command ``name`` (from the module's ``COMMANDS``)."""
    with imports_without_collection():
        commands: tuple[click.Command, ...] = importlib.import_module(module_name).COMMANDS
    for command in commands:
        if command.name == name:
            return command
    raise LookupError(f"{module_name} has no command {name!r}")  # a wrong table: tests/test_cli_startup.py


class LazyGroup(click.Group):
    """A group that knows its commands by name and short help (``table``) and imports a command's module
    only when that command is resolved (run, its own help shown, its arguments completed)."""

    def __init__(self, *args: Any, table: dict[str, tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.table = table

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.table})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.table and cmd_name not in self.commands:
            self.add_command(load_command(cmd_name, self.table[cmd_name][0]))
        return super().get_command(ctx, cmd_name)

    def listing(self) -> click.Group:
        """A stand-in group of every command's name and short help, for listing (never run)."""
        stand_ins = [click.Command(name, help=short_help) for name, (_, short_help) in self.table.items()]
        return click.Group(self.name, commands=[*stand_ins, *self.commands.values()])

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        self.listing().format_commands(ctx, formatter)

    def shell_complete(self, ctx: click.Context, incomplete: str) -> list[CompletionItem]:
        listed = self.listing().commands
        names = [CompletionItem(name, help=listed[name].get_short_help_str()) for name in self.list_commands(ctx)
                 if name.startswith(incomplete) and not listed[name].hidden]
        return names + click.Command.shell_complete(self, ctx, incomplete)


@click.group(cls=LazyGroup, table=COMMANDS)
@click.version_option(__version__, "--version", prog_name="mvault", message="%(prog)s %(version)s")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.option("--passphrase-command", metavar="CMD", default=None,
              help="run CMD (no shell) for the passphrase: the first line it prints (before MVAULT_PASSPHRASE_COMMAND "
                   "and MVAULT_PASSPHRASE_FILE)")
@click.option("--space", metavar="NAME", default=None,
              help="work as a guest in the host's coalition space NAME joined with `mvault coalition join`")
@click.pass_context
def cli(c: click.Context, as_json: bool, passphrase_command: str | None, space: str | None) -> None:
    """Member Vault: end-to-end encrypted team documents."""
    c.obj = importlib.import_module(CONTEXT_MODULE).Ctx(as_json)
    c.obj.home.passphrases = Passphrases(passphrase_command)
    c.obj.space = space  # the space is opened when a command runs (it reads the sealed home)


def error_line(text: str) -> None:
    """One line on stderr, control characters shown escaped (without loading the rich consoles)."""
    click.echo(one_line(text), err=True)


def wants_json(args: list[str]) -> bool:
    """``--json`` anywhere before ``--``: known before click parses anything, so that a usage error (which
    stops parsing before the command's ``--json`` is seen) is reported as JSON too."""
    return "--json" in (args[:args.index("--")] if "--" in args else args)


def fail(as_json: bool, code: str, message: str, exit_code: int, hint: str | None = None) -> NoReturn:
    """Report a failure on stderr, one line (two with a hint), or one JSON object; exit ``exit_code``."""
    if as_json:  # ensure_ascii: every control or bidi character of the message stays escaped
        sys.stderr.write(json.dumps({"error": code, "message": message, "exit_code": exit_code}, ensure_ascii=True)
                         + "\n")
    else:
        error_line(f"error: {message}")
        if hint is not None:
            error_line(f"hint: {hint}")
    sys.exit(exit_code)


def whole_writes() -> None:
    """Make sure every byte printed reaches stdout and stderr. Under ``python -u`` or ``PYTHONUNBUFFERED``, the
    byte layer below ``sys.stdout`` is the raw file, and a short write silently drops the rest of the text. A pipe
    gives such short writes once uvloop has run and closed a loop (uvloop 0.23, Linux 6.18: 64 KiB of a
    250 KiB ``--json ls``, exit status 0). A buffered layer keeps writing until everything is out."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        raw = getattr(stream, "buffer", None)
        if isinstance(stream, io.TextIOWrapper) and isinstance(raw, io.RawIOBase):
            # the old wrapper stays referenced as sys.__stdout__/__stderr__, so its file is not closed
            setattr(sys, name, io.TextIOWrapper(io.BufferedWriter(raw), encoding=stream.encoding,
                                                errors=stream.errors, line_buffering=True))


def main() -> None:
    whole_writes()
    as_json = wants_json(sys.argv[1:])
    try:
        cli.main(standalone_mode=False)
    except VaultError as e:
        fail(as_json, e.code, e.message, e.exit_code)
    except click.exceptions.NoArgsIsHelpError as e:  # `mvault`, `mvault team`: the help, as click shows it
        e.show()
        sys.exit(EXIT_USAGE)
    except click.UsageError as e:  # BadParameter, NoSuchOption, MissingParameter, an unknown command
        command = e.ctx.command_path if e.ctx is not None else "mvault"
        fail(as_json, "usage", e.format_message(), EXIT_USAGE, f"run '{command} --help'")
    except click.exceptions.Abort as e:  # click's form of Ctrl-C (after a blank line closing the "^C"), or EOF
        fail(as_json, "interrupted", "interrupted" if isinstance(e.__cause__, KeyboardInterrupt) else "aborted",
             EXIT_INTERRUPTED)
    except click.ClickException as e:
        fail(as_json, "failed", e.format_message(), e.exit_code)
    except KeyboardInterrupt:
        fail(as_json, "interrupted", "interrupted", EXIT_INTERRUPTED)
    except OSError as e:
        fail(as_json, "io_error", f"{e.strerror or e}: {e.filename or ''}".rstrip(": "), EXIT_FAILED)
    except Exception as e:  # never a traceback for people; MVAULT_DEBUG=1 shows it
        if os.environ.get("MVAULT_DEBUG"):
            raise
        fail(as_json, "internal", f"internal error: {type(e).__name__}: {e}", EXIT_INTERNAL)


if __name__ == "__main__":
    main()
