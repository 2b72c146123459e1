"""``mvault``: the member's command line (the root group, its exit codes, and its command groups).

Every failure prints one line (``error: ...``) to stderr and exits non-zero; a usage error adds one
line ``hint: run 'mvault CMD --help'``. Under ``--json`` (before or after the command) a failure is
one JSON object on stderr instead: ``{"error": CODE, "message": TEXT, "exit_code": N}``, where CODE
is the ``VaultError``'s ``code`` (vault/errors.py), or ``usage``, ``interrupted``, ``io_error``
(a local file), ``failed`` (another refusal of click's), ``internal``. ``MVAULT_HOME`` and
``MVAULT_PASSPHRASE_FILE`` make it scriptable, and ``mvault unlock`` starts a short unlock session
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

Each group module (account, teams, members, devices, documents, audit, threads) imports only
``client.cli._common`` and the client API, never another group; this module registers them.
"""

from __future__ import annotations

import json
import os
import sys
from typing import NoReturn

import click

from client.cli import account, audit, devices, documents, members, teams, threads
from client.cli._common import Ctx, err
from vault import __version__
from vault.errors import EXIT_FAILED, EXIT_SECURITY, VaultError

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130
__all__ = ["EXIT_FAILED", "EXIT_INTERNAL", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_SECURITY", "EXIT_USAGE", "cli", "main"]


@click.group()
@click.version_option(__version__, "--version", prog_name="mvault", message="%(prog)s %(version)s")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_context
def cli(c: click.Context, as_json: bool) -> None:
    """Member Vault: end-to-end encrypted team documents."""
    c.obj = Ctx(as_json)


for group in (account, teams, members, devices, documents, audit, threads):
    for command in group.COMMANDS:
        cli.add_command(command)


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
        err.print_line(f"error: {message}")
        if hint is not None:
            err.print_line(f"hint: {hint}")
    sys.exit(exit_code)


def main() -> None:
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
