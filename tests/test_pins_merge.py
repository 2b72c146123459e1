"""Every save of the pins is a merge under a lock (fix21, review round 21; client/pinmerge.py): what another command of
the member pinned between one command's read and its save stays, two states of one chain, document or log neither of
which is further stop as a fork, and a deliberate lowering (a restore acceptance, a dropped pin, the log pin put back
after a stop, a server move's scratch pins) lowers only what it names.

alice's real home (made with the real CLI against the real server); "another command" is the real CLI in its own
process, or a second ``Home`` on the same directory (another command in this process's place). The exploits with the
server holding its answers are tests/test_review21_exploits.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from client import restore
from client.api import Api
from client.client import Client
from client.home import Home, Pins
from client.moves import _Scratch
from client.pinmerge import ANCHOR_DAYS, lowered, merged
from tests.conftest import Org, security_team
from tests.helpers.members import alice_pinned
from vault.errors import LogInconsistent, RollbackDetected


@pytest.fixture
def plan(org: Org, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    doc = tmp_path / "plan.md"
    alice_pinned(org, doc, "v1: the plan", monkeypatch)
    doc.write_text("v2: the plan, changed after the meeting")
    return doc


def _plan_key(pins: Pins) -> str:
    [key] = pins.docs
    return key


def test_a_pin_another_command_saved_between_a_read_and_a_save_stays(org: Org, plan: Path) -> None:
    """A command reads the pins, another (the real CLI) pins version 2 and a newer checkpoint, the first saves a
    verification: the file holds all three. Before fix21 the save wrote back version 1 and the older log pin."""
    home = Home(org.alice.home)
    mine = home.pins()
    key = _plan_key(mine)
    assert int(mine.docs[key][0]) == 1
    org.alice.ok("put", "drafting", str(plan))
    theirs = Home(home.path).pins()
    mine.verified["bob"] = "cd" * 32
    home.save_pins(mine)
    now = Home(home.path).pins()
    assert now.docs[key] == theirs.docs[key] and int(now.docs[key][0]) == 2
    assert now.log["size"] == theirs.log["size"] > 0 and now.log["root"] == theirs.log["root"]
    assert now.verified["bob"] == "cd" * 32
    assert mine == now  # the saving command's pins are the merged ones after
    org.alice.ok("history", "drafting", "plan.md")  # the merged file is one the real client checks and uses


def test_two_saves_of_one_chain_document_or_log_at_the_same_point_with_different_heads_stop(org: Org,
                                                                                            plan: Path) -> None:
    """Two commands were shown two histories at the same length: the second save stops (the rollback/fork error),
    choosing neither; the file holds the first. Before fix21 the second save overwrote the first silently."""
    path = Home(org.alice.home).path
    first, second = Home(path), Home(path)
    a, b = first.pins(), second.pins()
    chain = next(iter(a.chains))
    key = _plan_key(a)
    seq = int(a.chains[chain][0]) + 1
    a.chains[chain], b.chains[chain] = [seq, "aa" * 32], [seq, "bb" * 32]
    first.save_pins(a)
    with pytest.raises(RollbackDetected, match="forked"):
        second.save_pins(b)
    assert Home(path).pins().chains[chain] == [seq, "aa" * 32]
    a, b = first.pins(), second.pins()
    a.docs[key], b.docs[key] = [2, "a1" * 32], [2, "b1" * 32]
    first.save_pins(a)
    with pytest.raises(RollbackDetected, match="forked"):
        second.save_pins(b)
    assert Home(path).pins().docs[key] == [2, "a1" * 32]
    a, b = first.pins(), second.pins()
    size = int(a.log["size"]) + 5
    a.log.update(size=size, root="a2" * 32)
    b.log.update(size=size, root="b2" * 32)
    first.save_pins(a)
    with pytest.raises(LogInconsistent, match="two different audit logs"):
        second.save_pins(b)
    assert Home(path).pins().log["root"] == "a2" * 32


def test_a_lowering_lowers_only_what_it_names(org: Org, plan: Path) -> None:
    """``lower_pins`` (a restore acceptance followed, a deletion's pin dropped by `republish`): the chain and the
    log it names go down, every other pin keeps what another command (the real CLI) pinned meanwhile."""
    home = Home(org.alice.home)
    mine = home.pins()
    key = _plan_key(mine)
    chain = next(c for c in mine.chains if c != "org")
    before_log = dict(mine.log)
    org.alice.ok("put", "drafting", str(plan))
    theirs = Home(home.path).pins()
    assert int(theirs.log["size"]) > int(before_log["size"])
    mine.chains.pop(chain)
    mine.log = {**before_log, "restored": [{"size": 1, "time": 1}]}
    home.lower_pins(mine, chains=[chain], log=True)
    now = Home(home.path).pins()
    assert chain not in now.chains and now.log == mine.log
    assert now.docs[key] == theirs.docs[key] and int(now.docs[key][0]) == 2  # not named: the newer pin stays
    assert {c: p for c, p in now.chains.items()} == {c: p for c, p in theirs.chains.items() if c != chain}


def test_the_log_pin_put_back_after_a_stop_is_only_the_one_this_command_set(org: Org, plan: Path) -> None:
    """A command stopped for a rollback puts back the log pin its login moved (``restore.keep_log_pin``), but not
    over a newer checkpoint another command (the real CLI) accepted meanwhile. Before fix21 it put the older pin
    back whatever the file held. The control: with no other command, the pin is put back."""
    home = Home(org.alice.home)

    async def session(meanwhile: bool) -> tuple[dict[str, Any], dict[str, Any]]:
        async with Api(org.server.url, bytes.fromhex(org.server.fingerprint)) as api:
            c = await Client.open(home, home.unlock(), api)
            assert c.session.log_before is not None
            if meanwhile:
                await asyncio.to_thread(org.alice.ok, "whoami")
            after_other = dict(Home(home.path).pins().log)
            restore.keep_log_pin(c.session)
            return c.session.log_before, after_other

    before, _ = asyncio.run(session(False))
    assert Home(home.path).pins().log == before  # the control: put back
    before, other = asyncio.run(session(True))
    now = Home(home.path).pins().log
    assert int(other["size"]) > int(before["size"])
    assert (now["size"], now["root"]) == (other["size"], other["root"]), "another command's checkpoint undone"


def test_the_log_pin_put_back_after_a_stop_keeps_the_anchors_another_command_added(org: Org, plan: Path) -> None:
    """The log pin put back after a stop (``restore.keep_log_pin``, no merge: the file's log pin is replaced by the
    one read before) keeps the log anchors the file holds (session 24, fix34a): one another command added meanwhile
    (here written straight into the file, a day ahead) stays, and the checkpoint is put back."""
    home = Home(org.alice.home)
    added = [3, 0]

    async def session() -> dict[str, Any]:
        async with Api(org.server.url, bytes.fromhex(org.server.fingerprint)) as api:
            c = await Client.open(home, home.unlock(), api)
            assert c.session.log_before is not None

            def another(pins: Pins) -> None:
                added[1] = int(pins.log["seen_at"]) + 86400
                pins.log["anchors"] = [*pins.log["anchors"], list(added)]

            Home(home.path).change_pins(another)
            restore.keep_log_pin(c.session)
            return c.session.log_before

    before = asyncio.run(session())
    now = Home(home.path).pins().log
    assert (now["size"], now["root"]) == (before["size"], before["root"])
    assert added in now["anchors"] and all(a in now["anchors"] for a in before["anchors"]), now["anchors"]


def test_a_servers_move_keeps_what_another_command_pinned_meanwhile(org: Org, plan: Path) -> None:
    """``moves``' scratch pins are merged in when the move is accepted (``keep``): a document version pinned by
    another command (the real CLI) while the new place was checked stays. Before fix21 ``keep`` wrote the scratch
    copy whole. A new place with another checkpoint-signing key brings its own log pin."""
    home = Home(org.alice.home)
    scratch = _Scratch(home)
    key = _plan_key(scratch.pins())
    org.alice.ok("put", "drafting", str(plan))
    checked = scratch.pins()
    checked.keys["someone"] = "ab" * 32
    scratch.save_pins(checked)
    scratch.keep()
    now = Home(home.path).pins()
    assert int(now.docs[key][0]) == 2 and now.keys["someone"] == "ab" * 32
    checked = scratch.pins()
    checked.log = {"size": 1, "root": "ee" * 32, "time": 1, "log_key": "ef" * 32, "seen_at": 1}
    scratch.save_pins(checked)
    scratch.keep()
    now = Home(home.path).pins()
    assert now.log["log_key"] == "ef" * 32 and now.log["size"] == 1 and int(now.docs[key][0]) == 2


def _value(**tables: Any) -> dict[str, Any]:
    return {name: dict(tables.get(name, {}))
            for name in ("chains", "docs", "keys", "verified", "log", "signers", "signers_at")}


def test_the_merge_rules_for_restores_signers_and_the_logs_bounds() -> None:
    """The rules the file-level tests above do not reach (client/pinmerge.py): a side that followed a restore
    acceptance the other's read predates wins its chains, documents and log whole (a command that read before the
    acceptance cannot raise the lowered pins again); signers follow the organization chain pin that wins; the log's
    lower bounds take the larger; verified keys are never dropped."""
    log = {"size": 9, "root": "aa" * 32, "log_key": "11" * 32, "time": 5, "seen_at": 5}
    old = _value(chains={"org": [7, "o7"], "t": [4, "t4"]}, log=log, verified={"bob": "b1"}, signers={"x": ["d"]})
    accepted = _value(chains={"org": [5, "o5"]}, log={**log, "size": 6, "root": "cc" * 32, "restored": [{"size": 6}]},
                      verified={"carol": "c1"}, signers={"y": ["e"]})
    for disk, mine in ((old, accepted), (accepted, old)):
        out = merged(disk, mine)
        assert out["chains"] == {"org": [5, "o5"]} and out["log"]["size"] == 6 and out["signers"] == {"y": ["e"]}
        assert out["verified"] == {"bob": "b1", "carol": "c1"}
    ahead = _value(chains={"org": [8, "o8"]}, log={**log, "size": 12, "root": "dd" * 32, "witness_size": 3,
                                                    "time": 4}, signers={"z": ["f"]})
    behind = _value(chains={"org": [7, "o7"]}, log={**log, "witness_size": 9, "outside_size": 2, "time": 6},
                    signers={"x": ["d"]})
    out = merged(ahead, behind)
    assert out["chains"]["org"] == [8, "o8"] and out["signers"] == {"z": ["f"]}
    assert (out["log"]["size"], out["log"]["root"]) == (12, "dd" * 32)
    assert (out["log"]["witness_size"], out["log"]["outside_size"], out["log"]["time"]) == (9, 2, 6)
    with pytest.raises(LogInconsistent, match="different keys"):
        merged(ahead, _value(log={**log, "log_key": "22" * 32}))


def test_a_save_merges_only_what_its_command_changed_since_its_read() -> None:
    """Review round 23's rules (client/pinmerge.py), given the value the saving command read: a device the file's
    side dropped from the restore signers stays out when the saver left the member as read, and when both sides
    changed the member only the devices both list stay (fail closed); the next save of a list computed at the
    positions the file's is at (``Chains.view`` recomputing it: ``signers_at``) puts it back whole (review round 25:
    no longer "a side that alone changed it", which A -> B -> A fools). keys/verified: the saver's value only if
    it changed it. After a restore acceptance the saver's read predates, its own changes stay, the lost stay
    lowered, the rest is the acceptance's."""
    read = _value(chains={"org": [3, "o3"]}, verified={"bob": "b1"}, keys={"bob": "k1"},
                  signers={"dora": ["phone", "seized"]})
    disk = _value(chains={"org": [3, "o3"]}, verified={"bob": "b2"}, keys={"bob": "k1"}, signers={"dora": ["phone"]})
    stale = _value(chains={"org": [3, "o3"]}, verified={"bob": "b1"}, keys={"bob": "k2"},
                   signers={"dora": ["phone", "seized"]})
    out = merged(disk, stale, read)
    assert out["signers"] == {"dora": ["phone"]} and out["verified"] == {"bob": "b2"} and out["keys"] == {"bob": "k2"}
    both = merged(disk, _value(chains={"org": [3, "o3"]}, signers={"dora": ["new", "phone", "seized"]}), read)
    assert both["signers"] == {"dora": ["phone"]}
    recomputed = _value(chains={"org": [3, "o3"]}, signers={"dora": ["new", "phone"]}, signers_at={"dora": [3, 0]})
    assert merged(both, recomputed, both)["signers"] == {"dora": ["new", "phone"]}
    assert merged(disk, stale)["signers"] == {"dora": ["phone"]}  # no read known: the devices both list
    before = _value(chains={"org": [7, "o7"], "t": [4, "t4"], "u": [2, "u2"]}, docs={"t/d": [1, "v1"]})
    accepted = _value(chains={"org": [5, "o5"], "t": [4, "t4"], "u": [2, "u2"]}, docs={"t/d": [1, "v1"]},
                      log={"size": 6, "root": "cc" * 32, "restored": [{"size": 6, "lost": {"chains": {"org": [5, ""]},
                                                                                          "docs": {}}}]})
    older = _value(chains={"org": [8, "o8"], "t": [6, "t6"], "u": [2, "u2"]}, docs={"t/d": [2, "v2"]},
                   log={"size": 9, "root": "aa" * 32})
    out = merged(accepted, older, before)
    assert out["chains"] == {"org": [5, "o5"], "t": [6, "t6"], "u": [2, "u2"]} and out["docs"] == {"t/d": [2, "v2"]}
    assert out["log"]["size"] == 6 and out["log"]["restored"]
    with pytest.raises(RollbackDetected):
        merged(accepted, _value(chains={"t": [4, "t4x"]}), before)  # a changed entry still forks


def test_the_next_view_puts_back_a_restore_signer_a_merge_left_out(org: Org, plan: Path, make_member: Any) -> None:
    """The fail-closed signers merge may leave a device out until the next view: the next command's view recomputes
    the list from the verified chains and saves it (it alone changed it since its read)."""
    security_team(org, make_member)
    org.alice.ok("put", "drafting", str(plan))  # alice's view pins carol's device among the restore signers
    home = Home(org.alice.home)
    signers = home.pins().signers
    assert signers and any(signers.values())
    member = next(m for m, devices in signers.items() if devices)
    home.change_pins(lambda p: p.signers.update({member: p.signers[member][1:]}))  # one device left out
    assert Home(org.alice.home).pins().signers != signers
    org.alice.ok("put", "drafting", str(plan))  # the next command: its view recomputes the signers
    assert Home(org.alice.home).pins().signers == signers


def test_a_list_of_restore_signers_computed_at_older_chain_state_never_replaces_a_newer_one() -> None:
    """Review round 25 (client/pinmerge.py ``signers_at``): each member's list is keyed on the chain positions it
    was computed at ([org seq, member chain seq]). The list of the side at least as far on both wins, whatever the
    command read (A -> B -> A: a device added then revoked, equal to the read again); neither dominating: only the
    devices both list, at the larger positions (and they stay: a later list computed at older state does not get
    past them); a side that does not list a member is at its own chain pins; a lowering lowers the positions with
    the pins; a list without positions (pins older versions wrote) is at its side's chain pins, and two such at the
    same pins keep only the devices both list."""
    read = _value(chains={"org": [3, "o3"], "dora": [4, "d4"]}, signers={"dora": ["phone"]},
                  signers_at={"dora": [3, 4]})
    revoked = _value(chains={"org": [3, "o3"], "dora": [6, "d6"]}, signers={"dora": ["phone"]},
                     signers_at={"dora": [3, 6]})  # B: "new" added (5) and revoked (6): the read's list again
    added = _value(chains={"org": [3, "o3"], "dora": [5, "d5"]}, signers={"dora": ["new", "phone"]},
                   signers_at={"dora": [3, 5]})  # A: served only the add
    for out in (merged(revoked, added, read), merged(revoked, added), merged(added, revoked, read)):
        assert out["signers"] == {"dora": ["phone"]} and out["signers_at"] == {"dora": [3, 6]}
    role = _value(chains={"org": [5, "o5"], "dora": [4, "d4"]}, signers={"dora": ["phone"], "erin": ["laptop"]},
                  signers_at={"dora": [5, 4], "erin": [5, 2]})  # A: erin given the role at org 5
    removed = _value(chains={"org": [6, "o6"], "dora": [4, "d4"], "erin": [2, "e2"]}, signers={"dora": ["phone"]},
                     signers_at={"dora": [6, 4]})  # B: and removed at org 6
    assert merged(removed, role, read)["signers"] == {"dora": ["phone"]}
    assert merged(role, removed, read)["signers"] == {"dora": ["phone"]}
    org_ahead = _value(chains={"org": [7, "o7"], "dora": [5, "d5"]}, signers={"dora": ["a", "b"]},
                       signers_at={"dora": [7, 5]})
    member_ahead = _value(chains={"org": [6, "o6"], "dora": [8, "d8"]}, signers={"dora": ["a", "c"]},
                          signers_at={"dora": [6, 8]})
    cut = merged(org_ahead, member_ahead, read)
    assert cut["signers"] == {"dora": ["a"]} and cut["signers_at"] == {"dora": [7, 8]}
    assert merged(cut, org_ahead, cut)["signers"] == {"dora": ["a"]}  # the older list does not get past the cut
    again = _value(chains={"org": [7, "o7"], "dora": [8, "d8"]}, signers={"dora": ["a", "c"]},
                   signers_at={"dora": [7, 8]})
    assert merged(cut, again, cut)["signers"] == {"dora": ["a", "c"]}  # a list computed there: the next view's
    lowered_value = dict(cut, chains={"org": [7, "o7"], "dora": [5, "d5x"]},
                         log={"size": 1, "root": "aa" * 32, "restored": [{"size": 1}]})
    assert merged(cut, lowered_value)["signers_at"] == {"dora": [7, 5]}  # a restore's lowering lowers them too
    legacy = _value(chains={"org": [3, "o3"]}, signers={"dora": ["new", "phone"]})  # no positions: older pins
    assert merged(_value(chains={"org": [3, "o3"]}, signers={"dora": ["phone"]}), legacy)["signers"] == {
        "dora": ["phone"]}
    assert merged(legacy, revoked)["signers"] == {"dora": ["phone"]}  # computed further than the old file's pins


def test_a_view_stores_the_positions_its_restore_signers_were_computed_at_and_an_older_file_reads(
        org: Org, plan: Path, make_member: Any) -> None:
    """``Chains.view`` keys each member's list on the org and member chain pins it verified; a pins file an older
    version wrote (no ``signers_at``) reads, its lists at their file's chain pins, and the next view adds them."""
    security_team(org, make_member)
    home = Home(org.alice.home)
    written = home._update_pins(lambda disk: {k: v for k, v in (disk or {}).items() if k != "signers_at"})
    assert "signers_at" not in written  # the file as an older version writes it: no such table
    old = Home(org.alice.home).pins()
    assert old.signers and not old.signers_at
    org.alice.ok("put", "drafting", str(plan))
    pins = Home(org.alice.home).pins()
    assert pins.signers and set(pins.signers_at) == set(pins.signers)
    for member, (org_seq, member_seq) in pins.signers_at.items():
        assert [org_seq, member_seq] == [int(pins.chains["org"][0]), int(pins.chains[member][0])]


def test_the_log_anchors_are_a_union_whichever_log_wins() -> None:
    """The log anchors (``pins.log["anchors"]``: [size, time], this device saw the log at that size at that time;
    session 24, fix34a) bound what retention may have deleted: a concurrent save never drops one, whichever side's
    checkpoint wins (the larger, a restore acceptance's, a log pin put back after a stop); per day the smallest size
    stays, days more than ``ANCHOR_DAYS`` before the newest go."""
    day = 86400
    log = {"size": 9, "root": "aa" * 32, "log_key": "11" * 32, "time": 5, "seen_at": 5}
    early = _value(log={**log, "anchors": [[4, 10 * day], [9, 11 * day]]})
    late = _value(log={**log, "size": 12, "root": "dd" * 32, "anchors": [[7, 10 * day + 60], [12, 12 * day]]})
    for disk, mine in ((early, late), (late, early)):
        out = merged(disk, mine)
        assert out["log"]["size"] == 12
        assert out["log"]["anchors"] == [[4, 10 * day], [9, 11 * day], [12, 12 * day]]
    accepted = _value(log={**log, "size": 6, "root": "cc" * 32, "restored": [{"size": 6}], "anchors": [[6, 13 * day]]})
    for disk, mine, read in ((late, accepted, None), (accepted, late, None), (accepted, late, late)):
        out = merged(disk, mine, read)
        assert out["log"]["size"] == 6 and out["log"]["anchors"] == [[7, 10 * day + 60], [12, 12 * day],
                                                                     [6, 13 * day]]
    put_back = lowered(late, early, log=True)
    assert put_back["log"]["size"] == 9 and put_back["log"]["anchors"] == [[4, 10 * day], [9, 11 * day],
                                                                          [12, 12 * day]]
    far = merged(early, _value(log={**log, "anchors": [[30, (11 + ANCHOR_DAYS) * day]]}))
    assert far["log"]["anchors"] == [[9, 11 * day], [30, (11 + ANCHOR_DAYS) * day]]
    assert "anchors" not in merged(_value(log=log), _value(log=log))["log"]  # pins older versions wrote
