"""The lost-device incident from the Security Team's side, driven through the real CLI (issue 18):
``mvault incident lost-device`` as ``member``."""

from __future__ import annotations

from tests.conftest import Member, Result


def lost_device(member: Member, *args: str) -> Result:
    """``mvault incident lost-device ARGS`` as ``member``."""
    return member.run("incident", "lost-device", *args)
