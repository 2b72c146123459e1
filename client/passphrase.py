"""Where the keystore passphrase comes from, and whether a new one is strong enough.

The passphrase of an existing keystore comes from the first of:

1. ``--passphrase-command CMD`` (the global option);
2. ``MVAULT_PASSPHRASE_COMMAND`` (setting it and ``MVAULT_PASSPHRASE_FILE`` both is refused as ambiguous);
3. ``MVAULT_PASSPHRASE_FILE``;
4. the terminal (a prompt; refused when standard input is not a terminal).

A command is split like a shell would (``shlex``) and run without a shell; the first line of its standard
output is the passphrase; a non-zero exit or an empty output is an error. Its standard input and error are
the terminal's, so it may ask (``pass``, ``gpg``, a pinentry).

A new passphrase (``join``, ``device link``, ``recover``) comes from the same sources; ``passphrase change``
reads the new one from ``--new-passphrase-file`` or prompts. Prompts for a new passphrase read standard
input when it is not a terminal (a line each), so a script or test can answer them. A new passphrase must
have at least ``MIN_LENGTH`` characters and an estimated ``10**10`` guesses or more (zxcvbn score 4), judged
before it is asked a second time: the reason is shown ("too short: at least 10 characters", "too common")
and it is asked again. See SECURITY.md ("Passphrases").
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import click

from vault.errors import KeystoreError

MIN_LENGTH = 10
MIN_SCORE = 4  # zxcvbn: an estimated 10**10 guesses or more
ATTEMPTS = 3
NO_SOURCE = "no passphrase: set MVAULT_PASSPHRASE_FILE or MVAULT_PASSPHRASE_COMMAND, or run in a terminal"


def weakness(passphrase: str, context: Sequence[str] = ()) -> str | None:
    """Why ``passphrase`` is too weak for a new keystore, or None. ``context``: words the passphrase should
    not lean on (the member's and organization's names)."""
    if len(passphrase) < MIN_LENGTH:
        return f"too short: at least {MIN_LENGTH} characters"
    import zxcvbn  # ~25 ms of start-up: only commands that make a passphrase load it

    result = zxcvbn.zxcvbn(passphrase, user_inputs=["mvault", "member", "vault", *context], max_length=128)
    if result["score"] >= MIN_SCORE:
        return None
    feedback = result["feedback"]
    warning = str(feedback.get("warning") or "").rstrip(".")
    reason = "too common" if "common" in warning.lower() else "too easy to guess"
    hints = " ".join(str(s) for s in feedback.get("suggestions") or [])
    detail = warning or f"about 10^{int(result['guesses_log10'])} guesses where it needs 10^10"
    return f"{reason} ({detail[:1].lower()}{detail[1:]})" + (f"; {hints[:1].lower()}{hints[1:]}" if hints else "")


@dataclass(frozen=True)
class Passphrases:
    """The passphrase sources of one command (``command``: the ``--passphrase-command`` option)."""

    command: str | None = None

    def current(self, label: str = "passphrase") -> str:
        """The passphrase of the existing keystore (``label``: the prompt's)."""
        given = self._given()
        if given is not None:
            return given
        if not os.isatty(0):
            raise KeystoreError(NO_SOURCE)
        return _prompt(label)

    def new(self, context: Sequence[str] = ()) -> str:
        """A new passphrase from the usual sources (checked, no confirmation) or prompts."""
        given = self._given()
        if given is not None:
            return _checked(given, context)
        return ask_new(context)

    def source(self) -> str | None:
        """Where ``current`` would take the passphrase from without a prompt ("passphrase command" or
        "passphrase file"), or None: it would ask."""
        if self.command or os.environ.get("MVAULT_PASSPHRASE_COMMAND"):
            return "passphrase command"
        return "passphrase file" if os.environ.get("MVAULT_PASSPHRASE_FILE") else None

    def _given(self) -> str | None:
        """From a command or file (see the module docstring), or None: ask."""
        if self.command:
            return run_command(self.command, "--passphrase-command")
        command = os.environ.get("MVAULT_PASSPHRASE_COMMAND")
        path = os.environ.get("MVAULT_PASSPHRASE_FILE")
        if command and path:
            raise KeystoreError("both MVAULT_PASSPHRASE_COMMAND and MVAULT_PASSPHRASE_FILE are set: set one")
        if command:
            return run_command(command, "MVAULT_PASSPHRASE_COMMAND")
        if path:
            return read_file(path, "MVAULT_PASSPHRASE_FILE")
        return None


def ask_new(context: Sequence[str] = ()) -> str:
    """Prompt for a new passphrase: judged first, then asked a second time to confirm it."""
    for _ in range(ATTEMPTS):
        first = _prompt("new passphrase")
        problem = weakness(first, context)
        if problem:
            click.echo(f"that passphrase is {problem}: choose another", err=True)
            continue
        if _prompt("repeat the new passphrase") == first:
            return first
        click.echo("the two entries differ: once more", err=True)
    raise KeystoreError(f"no acceptable new passphrase after {ATTEMPTS} attempts")


def read_file(path: str, what: str) -> str:
    """A passphrase file: UTF-8, every trailing CR and LF removed."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise KeystoreError(f"cannot read {what}: {e.strerror}") from e
    except UnicodeDecodeError as e:
        raise KeystoreError(f"{what} is not UTF-8 text") from e
    return text.rstrip("\r\n")


def new_from_file(path: str, context: Sequence[str] = ()) -> str:
    return _checked(read_file(path, "--new-passphrase-file"), context)


def run_command(command: str, what: str) -> str:
    """Run a passphrase command (no shell): the first line of its standard output."""
    try:
        args = shlex.split(command)
    except ValueError as e:
        raise KeystoreError(f"{what}: cannot split {command!r}: {e}") from e
    if not args:
        raise KeystoreError(f"{what} is empty")
    try:
        done = subprocess.run(args, stdout=subprocess.PIPE, check=False)
    except OSError as e:
        raise KeystoreError(f"{what}: cannot run {args[0]!r}: {e.strerror or e}") from e
    if done.returncode != 0:
        raise KeystoreError(f"{what} {args[0]!r} failed (exit status {done.returncode}); no passphrase")
    try:
        lines = done.stdout.decode("utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise KeystoreError(f"{what} {args[0]!r} printed something that is not UTF-8 text") from e
    if not lines or not lines[0]:
        raise KeystoreError(f"{what} {args[0]!r} printed no passphrase (its first line is empty)")
    return lines[0]


def _checked(passphrase: str, context: Sequence[str]) -> str:
    problem = weakness(passphrase, context)
    if problem:
        raise KeystoreError(f"the new passphrase is {problem}")
    return passphrase


def _prompt(label: str) -> str:
    """One prompt: hidden on a terminal; a line of standard input when it is not one."""
    if os.isatty(0):
        return str(click.prompt(label, hide_input=True, err=True))
    click.echo(f"{label}: ", err=True, nl=False)
    line = sys.stdin.readline()
    if not line:
        click.echo("", err=True)
        raise KeystoreError(NO_SOURCE)
    return line.rstrip("\r\n")
