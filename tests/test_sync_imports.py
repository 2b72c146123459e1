"""A one-pass `mvault sync` loads neither the file watcher nor the thread messages (session 17): the command's module
and the client it drives, imported in a fresh interpreter, leave ``watchfiles`` (with ``anyio``) and ``vault.messages``
out of ``sys.modules``; starting a watch still finds ``watchfiles`` (tests/test_sync_watch*.py run real watches)."""

from __future__ import annotations

import subprocess
import sys
from typing import get_args

from tests.test_layers import ROOT
from vault import messages, msglimits
from vault.wire import schemas

PROBE = """
import sys
import client.cli.main, client.cli.sync, client.sync.engine, client.sync.watch
loaded = [m for m in ("watchfiles", "anyio", "vault.messages") if m in sys.modules]
print(",".join(loaded))
"""


def test_one_pass_sync_loads_no_watcher_and_no_messages() -> None:
    r = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, check=True)
    assert r.stdout.strip() == ""


def test_the_limits_are_the_messages() -> None:
    assert (messages.MAX_TEXT, messages.MAX_BODY, messages.MAX_RECORD) == \
        (msglimits.MAX_TEXT, msglimits.MAX_BODY, msglimits.MAX_RECORD)
    assert get_args(schemas.MessageBytes)[1].max_length == messages.MAX_RECORD  # the wire's bound
