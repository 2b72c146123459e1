"""``mvault completion bash|zsh|fish`` (issue 15): prints click's completion script for ``mvault``, the same
script ``_MVAULT_COMPLETE=<shell>_source mvault`` prints, and the bash one completes in a real bash."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
MVAULT = str(BIN / "mvault")


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MVAULT, *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **env})


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_each_shell_gets_its_script(shell: str) -> None:
    done = run("completion", shell)
    assert done.returncode == 0, done.stderr
    assert "mvault" in done.stdout and "_MVAULT_COMPLETE" in done.stdout
    assert f"{shell}_complete" in done.stdout
    assert done.stdout == run(_MVAULT_COMPLETE=f"{shell}_source").stdout


def test_json_carries_the_script() -> None:
    done = run("--json", "completion", "zsh")
    assert done.returncode == 0, done.stderr
    value = json.loads(done.stdout)
    assert value["shell"] == "zsh"
    assert value["script"] == run("completion", "zsh").stdout


def test_an_unknown_shell_is_a_usage_error() -> None:
    done = run("completion", "ksh")
    assert done.returncode == 2
    assert done.stdout == ""
    assert "ksh" in done.stderr


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_the_bash_script_completes_commands_and_subcommands() -> None:
    script = 'eval "$(mvault completion bash)"; COMP_WORDS=($WORDS); COMP_CWORD=$CWORD; _mvault_completion mvault; ' \
             'printf "%s\\n" "${COMPREPLY[@]}"'
    names = run_bash(script, WORDS="mvault te", CWORD="1")
    assert names == ["team"]
    assert run_bash(script, WORDS="mvault team cr", CWORD="2") == ["create"]


def run_bash(script: str, **env: str) -> list[str]:
    done = subprocess.run(["bash", "--norc", "-c", script], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **env})
    assert done.returncode == 0, done.stderr
    return done.stdout.split()
