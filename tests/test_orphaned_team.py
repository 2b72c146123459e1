"""A team none of whose members holds the key (its holders were removed by someone who held none)
is re-keyed by one of its admins, through the real server and CLI (SECURITY.md, "Orphaned teams")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.conftest import Org, join_member
from tests.helpers.members import unlock_here


def test_an_admin_re_keys_a_team_whose_only_key_holder_was_removed(org: Org, make_member: Any,
                                                                     tmp_path: Path) -> None:
    dana, erin = join_member(org, make_member, "dana"), join_member(org, make_member, "erin")
    unlock_here(org.alice, dana, erin)  # their commands skip Argon2id (the unlock itself: tests/test_auth.py)
    org.alice.ok("role", "grant", "dana", "ncc")
    org.alice.ok("team", "create", "circle-9", "--kind", "circle")
    old = tmp_path / "old.md"
    old.write_text("before the re-key")
    org.alice.ok("put", "circle-9", str(old))
    # NCC dana (not in the circle) adds erin as admin and bob as reader: no key to give them.
    dana.ok("team", "add", "circle-9", "erin", "--role", "admin")
    dana.ok("team", "add", "circle-9", "bob", "--role", "reader")
    # Before alice's client runs again, dana removes her: nobody in the team holds the key now.
    assert dana.json("team", "remove", "circle-9", "alice")["rotated"] is False
    show = erin.json("team", "show", "circle-9")
    assert any("no member holds the key" in p for p in show["pending"]), show
    assert not any(m["has_key"] for m in show["members"])
    new = tmp_path / "new.md"
    new.write_text("after the re-key")
    r = erin.run("put", "circle-9", str(new))
    assert r.code != 0 and "error: team circle-9 needs a key rotation first" in r.err, r.err

    # A reader may not re-key; the admin is told how, and does.
    r = org.bob.run("team", "rotate", "circle-9")
    assert r.code != 0 and "only one of its admins" in r.err, r.err
    assert "re-key it with `mvault team rotate circle-9`" in erin.ok("whoami").err
    done = erin.json("team", "rotate", "circle-9")
    assert done == {"team": "circle-9", "generation": 2, "rekeyed": True}
    show = erin.json("team", "show", "circle-9")
    assert show["rekeyed"] == {"2": "erin"} and not any("no member holds" in p for p in show["pending"])
    assert "re-keyed by erin" in erin.ok("team", "show", "circle-9").out

    # New content works again; bob gets the key from erin's client (dana may still add members).
    erin.ok("put", "circle-9", str(new))
    assert {m["name"]: m["has_key"] for m in org.bob.json("team", "show", "circle-9")["members"]} == {
        "bob": True, "erin": True}
    org.bob.ok("get", "circle-9", "new.md", "-o", str(tmp_path / "b.md"))
    assert (tmp_path / "b.md").read_text() == "after the re-key"
    # Nothing from before the re-key is readable with the new key; alice, removed, gets nothing new.
    assert erin.run("get", "circle-9", "old.md", "-o", str(tmp_path / "e.md")).code != 0
    org.alice.fails("get", "circle-9", "new.md", "-o", str(tmp_path / "a.md"))
    # With a key holder in the team again, a member without the key may not rotate it.
    rotated = erin.json("team", "rotate", "circle-9")
    assert rotated["rekeyed"] is False and rotated["generation"] == 3
