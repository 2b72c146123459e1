"""``mvault completion bash|zsh|fish``: print the shell completion script (click's shell completion).

The script calls ``mvault`` back with ``_MVAULT_COMPLETE=<shell>_complete`` to complete a word; that
path lists command names from ``client.cli.main``'s table, so completing a name imports no command.
"""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class

from client.cli._common import Ctx, emit, json_flag

__all__ = ["COMMANDS", "SHELLS", "completion_script"]

PROG = "mvault"
COMPLETE_VAR = "_MVAULT_COMPLETE"
SHELLS = ("bash", "zsh", "fish")


def completion_script(root: click.Command, shell: str) -> str:
    """The script that ``_MVAULT_COMPLETE=<shell>_source mvault`` prints, for the ``mvault`` executable."""
    complete = get_completion_class(shell)
    if complete is None:  # click.Choice keeps other names out
        raise click.BadParameter(f"one of {', '.join(SHELLS)}")
    return complete(root, {}, PROG, COMPLETE_VAR).source()


@click.command("completion")
@click.argument("shell", type=click.Choice(SHELLS))
@json_flag
@click.pass_context
def completion(c: click.Context, shell: str) -> None:
    """Print the shell completion script for SHELL (bash, zsh or fish).

    \b
    bash: eval "$(mvault completion bash)"    (in ~/.bashrc)
    zsh:  eval "$(mvault completion zsh)"     (in ~/.zshrc)
    fish: mvault completion fish > ~/.config/fish/completions/mvault.fish
    """
    ctx: Ctx = c.find_object(Ctx)  # type: ignore[assignment]
    script = completion_script(c.find_root().command, shell)
    emit(ctx, {"shell": shell, "script": script}, lambda: click.echo(script, nl=False))


COMMANDS: tuple[click.Command, ...] = (completion,)
