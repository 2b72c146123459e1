"""`mvault --version` and `mvault-server --version` (issue 15): one line, the program and the package version."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from vault import __version__

BIN = Path(sys.executable).parent


@pytest.mark.parametrize("program", ["mvault", "mvault-server"])
def test_version(program: str) -> None:
    done = subprocess.run([str(BIN / program), "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{program} {__version__}\n"
    assert done.stderr == ""
