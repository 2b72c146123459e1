"""The lost-device incident from the Security Team's side, driven through the real CLI (issue 18).

``mvault incident lost-device`` belongs to the ``incident`` group (client/cli/incident.py, another helper's);
until the group adds it, ``lost_device`` runs the real ``mvault`` entry point (``client.cli.main.main``: its
error handling, ``--json``, exit codes) with the command added to it, in a subprocess like ``Member.run``."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import Member, Result

LAUNCH = ("from client.cli import main as m; from client.cli.incident_lost import lost_device; "
          "m.cli.add_command(lost_device); m.main()")


def lost_device(member: Member, *args: str) -> Result:
    """``mvault lost-device ARGS`` as ``member`` (``mvault incident lost-device`` once wired into the group)."""
    p = subprocess.run([sys.executable, "-c", LAUNCH, "lost-device", *args], env=member.env(), capture_output=True,
                       text=True, cwd=member.home.parent, timeout=600)
    return Result(p.returncode, p.stdout, p.stderr)
