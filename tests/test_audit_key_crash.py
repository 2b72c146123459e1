"""A crash between a publication's ``audit.key`` event and the write of its key (fix36b). ``put_key`` appends the
event first (review 36, finding 3: the log order of the statement is the order of its checks), so such a crash leaves
the log one publication ahead of the stored key. At start the server reads the log's last leaves for a statement
newer than the stored key (``server/recorder.py`` ``_logged_statement``), judges it as the stored key is judged, and
takes and stores it: the events after the restart are sealed to the key the log says is in force. Without it they
were sealed to no key (the stored generation is behind the team's) until the Security Team's next command published
the key again, and every one of them was "sealed to audit key generation 0, not the published 3"."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

from server.context import AUDIT, STATE
from tests.conftest import Org, security_team


def _stored(org: Org) -> bytes | None:
    """The audit key stored in audit.db's meta table (SQLite: this module's server)."""
    with sqlite3.connect(org.server.data_dir / "audit.db") as db:
        row = db.execute("SELECT value FROM meta WHERE key='audit_key'").fetchone()
    return None if row is None else bytes(row[0])


def test_a_key_logged_but_not_stored_before_a_crash_is_in_force_after_the_restart(
        org: Org, make_member: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    carol = security_team(org, make_member)
    assert "key generation 3" in carol.ok("team", "rotate", "sec").out
    store = org.server.app[AUDIT]
    before = _stored(org)
    real = store.set_meta

    async def lost(key: str, value: bytes) -> None:  # the server stops before the key's write reaches the disk
        if key != "audit_key":
            await real(key, value)

    with monkeypatch.context() as m:
        m.setattr(store, "set_meta", lost)
        assert "published the audit key of team sec (generation 3)" in carol.ok("whoami").err
        assert _stored(org) == before  # logged, not stored
    org.server = org.server.restart()
    key = org.server.app[STATE].key
    assert (key.gen, key.pub is not None) == (3, True)
    assert _stored(org) not in (None, before)  # stored at the start
    org.bob.ok("whoami")
    org.alice.ok("whoami")
    r = carol.ok("whoami")
    assert "published the audit key" not in r.err, r.err  # in force: nothing to publish again
    verify = carol.run("audit", "verify")
    assert verify.code == 0 and "PROBLEM" not in verify.out, verify.out
