"""Debian's age and age-keygen, nothing of ours: identities for successors, and reading an age export with them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

AGE = shutil.which("age")
AGE_KEYGEN = shutil.which("age-keygen")


def age_identity(folder: Path, name: str) -> tuple[Path, str]:
    """A fresh age identity made by Debian's age-keygen: (its file, its recipient)."""
    assert AGE_KEYGEN is not None
    key = folder / f"{name}.key"
    subprocess.run([AGE_KEYGEN, "-o", str(key)], check=True, capture_output=True)
    recipient = subprocess.run([AGE_KEYGEN, "-y", str(key)], check=True, capture_output=True, text=True).stdout
    return key, recipient.strip()


def age_decrypt_untar(archive: Path, key: Path, into: Path) -> None:
    """Debian's age and tar, nothing of ours."""
    assert AGE is not None
    into.mkdir()
    plain = subprocess.run([AGE, "-d", "-i", str(key), str(archive)], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=plain, check=True, capture_output=True)
