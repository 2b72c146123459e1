"""``mvault``: the member's command line (the root group, its exit codes, and its command groups).

Every failure prints one line (``error: ...``) to stderr and exits non-zero; ``--json``
prints machine-readable output; ``MVAULT_HOME`` and ``MVAULT_PASSPHRASE_FILE`` (or ``--passphrase-command``,
``MVAULT_PASSPHRASE_COMMAND``) make it scriptable, and ``mvault unlock`` starts a short unlock session
(like ``bw unlock``).

Exit codes: 0 fine; 1 an error (or a log that does not verify, a violated rule: ``audit``);
2 a usage error; 70 an internal error (a bug: ``MVAULT_DEBUG=1`` shows the traceback);
130 aborted or interrupted.

Each group module (account, teams, members, devices, documents, audit, threads) imports only
``client.cli._common`` and the client API, never another group; this module registers them.
"""

from __future__ import annotations

import os
import sys

import click

from client.cli import account, audit, devices, documents, members, teams, threads
from client.cli._common import Ctx, err
from client.passphrase import Passphrases
from vault import __version__
from vault.errors import VaultError


@click.group()
@click.version_option(__version__, "--version", prog_name="mvault", message="%(prog)s %(version)s")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.option("--passphrase-command", metavar="CMD", default=None,
              help="run CMD (no shell) for the passphrase: the first line it prints (before MVAULT_PASSPHRASE_COMMAND "
                   "and MVAULT_PASSPHRASE_FILE)")
@click.pass_context
def cli(c: click.Context, as_json: bool, passphrase_command: str | None) -> None:
    """Member Vault: end-to-end encrypted team documents."""
    c.obj = Ctx(as_json)
    c.obj.home.passphrases = Passphrases(passphrase_command)


for group in (account, teams, members, devices, documents, audit, threads):
    for command in group.COMMANDS:
        cli.add_command(command)


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except VaultError as e:
        err.print_line(f"error: {e.message}")
        sys.exit(1)
    except click.exceptions.Abort:
        err.print("aborted")
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except OSError as e:
        err.print_line(f"error: {e.strerror or e}: {e.filename or ''}".rstrip(": "))
        sys.exit(1)
    except Exception as e:  # never a traceback for people; MVAULT_DEBUG=1 shows it
        if os.environ.get("MVAULT_DEBUG"):
            raise
        err.print_line(f"internal error: {type(e).__name__}: {e}")
        sys.exit(70)


if __name__ == "__main__":
    main()
