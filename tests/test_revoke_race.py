"""Review 24, finding 3 (tests/test_review24_exploits.py has the version held in the store until the revocation is
in, one SQLite server): the other order on one SQLite server (the revocation checked, held before its append, a
version dated after it stored meanwhile), and both orders over PostgreSQL with two server processes (the pair: two
applications over one database, each its own directory in memory; tests/helpers/pair.py): a version a seized device
uploads, dated after its revocation (its clock 60 s ahead), and the revocation, each judged by one process while the
other is being stored. The stores' transactions serialize them (the version's holds the signer's member chain and the
organization chain, shared on PostgreSQL, and re-reads their lengths; the revocation's holds the member chain and
re-reads the device's acts): either the version is refused or the revocation is not dated before it. Either way every
member can still read the team (a revocation stored before a version dated after it made every replay refuse the
version: ``ls`` exit 3 for everyone). The windows are held open by hooks on the store (over PostgreSQL: on one
process's store object only)."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from client.api import Api
from client.client import Client
from client.clock import Clock
from client.devicerevoke import device_revoke
from server.context import CHAINS, DOCUMENTS
from server.directory import Directory
from server.store.sqlite.vault import SQLiteStorage
from tests.conftest import MVAULT, Member, ServerThread
from tests.helpers.allies import own_server
from tests.helpers.guest_world import copied_ally
from tests.helpers.guests import laptop_of
from tests.helpers.members import SECRETS, session
from tests.helpers.pair import Pair
from vault.chains.member import Device
from vault.errors import VaultError
from vault.links import parse_link

AHEAD = 60  # the thief's clock: within the server's skew, after the revocation
ally = copied_ally  # a fresh ally server (one SQLite server, dora and the CLI)


def test_a_revocation_raced_with_a_version_dated_after_it_does_not_break_the_document(
        ally: Member, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    dora, server = ally, own_server(tmp_path)
    monkeypatch.setenv("MVAULT_PASSPHRASE_FILE", str(dora.passphrase_file))
    laptop = laptop_of(dora, tmp_path)  # seized
    dora.ok("team", "create", "plans")
    entered, stored = threading.Event(), threading.Event()
    real = SQLiteStorage.append_links

    async def append_links(self: SQLiteStorage, links: Any, *args: Any, **kwargs: Any) -> Any:
        links = list(links)
        if any(parse_link(x.wire).type == "device.revoke" for x in links):  # checked by the route, not yet stored
            entered.set()
            await asyncio.get_running_loop().run_in_executor(None, stored.wait, 60)
        return await real(self, links, *args, **kwargs)

    monkeypatch.setattr(SQLiteStorage, "append_links", append_links)
    revoke = subprocess.Popen([MVAULT, "device", "revoke", "laptop"], env=dora.env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        assert entered.wait(120), "the revocation never reached the store"
        (tmp_path / "plan.md").write_text("the thief's, dated ahead\n")
        laptop.env_extra["MVAULT_TEST_CLOCK_OFFSET"] = str(int(server.offset) + AHEAD)
        laptop.ok("put", "plans", str(tmp_path / "plan.md"))  # stored while the revocation waits
    finally:
        stored.set()
    out, err = revoke.communicate(timeout=60)
    # secure: the team stays readable (before the fix: exit 3, "document version signed by a device that was not
    # active then"); the revocation is refused (409: the device signed something dated after it; finding 2 keeps the
    # CLI from signing it again that late), or, if taken, dated after the version, and the laptop is shut out
    got, listing = dora.run("get", "plans", "plan.md", "-o", str(tmp_path / "got.md")), dora.run("ls", "plans")
    assert got.code == 0, got.err
    assert listing.code == 0 and "plan.md" in listing.out, listing.err
    if revoke.returncode == 0:
        assert laptop.run("ls", "plans").code != 0, out
    else:
        assert "signed something dated" in err, err


@pytest.mark.parametrize("act", ["message", "thread"])
def test_a_thread_act_raced_with_the_revocation_does_not_break_the_thread(
        act: str, ally: Member, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """As tests/test_review24_exploits.py's raced version, for a message and a thread record: the seized laptop's
    act, dated after the revocation, held in the store until the revocation is in. Before the fix the message was
    stored after the revocation and every ``thread read`` stopped at it (exit 3, "message signed by a device that
    was not active then"); the thread record was stored and ``thread ls`` warned that it cannot be shown."""
    dora, server = ally, own_server(tmp_path)
    monkeypatch.setenv("MVAULT_PASSPHRASE_FILE", str(dora.passphrase_file))
    laptop = laptop_of(dora, tmp_path)  # seized
    dora.ok("team", "create", "plans")
    dora.ok("thread", "create", "plans", "talk")
    dora.ok("thread", "post", "plans", "talk", "hello from dora")
    revoked, entered = threading.Event(), threading.Event()
    method = "add_messages" if act == "message" else "add_thread"
    real_store, real_commit = getattr(SQLiteStorage, method), Directory.commit_member

    async def held(self: SQLiteStorage, *args: Any, **kwargs: Any) -> Any:
        entered.set()
        await asyncio.get_running_loop().run_in_executor(None, revoked.wait, 60)
        return await real_store(self, *args, **kwargs)

    def commit_member(self: Directory, checked: Any) -> None:
        real_commit(self, checked)
        if checked[1].type == "device.revoke":
            revoked.set()

    monkeypatch.setattr(SQLiteStorage, method, held)
    monkeypatch.setattr(Directory, "commit_member", commit_member)
    command = ["thread", "post", "plans", "talk", "the thief's"] if act == "message" else \
        ["thread", "create", "plans", "cover"]
    env = {**laptop.env(), "MVAULT_TEST_CLOCK_OFFSET": str(int(server.offset) + AHEAD)}
    thief = subprocess.Popen([MVAULT, *command], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert entered.wait(120), "the thief's act never reached the store"  # judged, held before its transaction
        revoke = dora.run("device", "revoke", "laptop")
    finally:
        revoked.set()
    out, err = thief.communicate(timeout=60)
    monkeypatch.setattr(SQLiteStorage, method, real_store)
    shown = dora.run("thread", "read", "plans", "talk") if act == "message" else dora.run("thread", "ls", "plans")
    assert revoke.code == 0, revoke.err
    # secure: the thread stays readable, without the act dated after its device's revocation
    assert shown.code == 0, shown.err
    assert "the thief's" not in shown.out and "cover" not in shown.out and "cannot be shown" not in shown.err
    assert thief.returncode != 0 and "revoked" in err, (out, err)


@contextlib.asynccontextmanager
async def ahead(server: ServerThread, m: Member) -> AsyncIterator[Client]:
    """An in-process session of ``m`` (already opened once: ``session``) whose clock runs ``AHEAD`` s fast."""
    home, secrets = SECRETS[m.home]
    async with Api(server.url, bytes.fromhex(server.fingerprint)) as api:
        yield await Client.open(home, secrets, api, Clock(AHEAD))


def _hold(monkeypatch: pytest.MonkeyPatch, store: Any, method: str, entered: threading.Event,
          until: threading.Event) -> None:
    """``store.method`` (this one process's store object only) waits, once entered, until ``until`` is set."""
    real = getattr(store, method)

    async def held(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        await asyncio.get_running_loop().run_in_executor(None, until.wait, 60)
        return await real(*args, **kwargs)

    monkeypatch.setattr(store, method, held)


async def _readable(pair: Pair, m: Member) -> list[str]:
    """``m`` lists the team through each process (a replay that refuses a version raises)."""
    names: list[list[str]] = []
    for server in (pair.one, pair.two):
        async with session(server, m) as s:
            names.append(sorted(d.opened.name for d in await s.docs.ls("drafting") if d.opened is not None))
    assert names[0] == names[1]
    return names[0]


def _laptop(pair: Pair, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Member:
    monkeypatch.setenv("MVAULT_PASSPHRASE_FILE", str(pair.org.alice.passphrase_file))
    return laptop_of(pair.org.alice, tmp_path)  # through server one (alice's CLI)


async def revoked_while_held(pair: Pair, laptop: Member, entered: threading.Event, revoked: threading.Event,
                             act: Callable[[Client], Awaitable[Any]]) -> None:
    """``act`` on the laptop (its clock ``AHEAD`` s fast) through process one, held by the caller's hook once judged
    (it sets ``entered`` and waits for ``revoked``), while alice revokes the laptop through process two, which knows
    nothing of the act: the act is judged again once the revocation is stored and refused "revoked"."""
    async def thief() -> Any:
        async with ahead(pair.one, laptop) as s:
            return await act(s)

    held = asyncio.create_task(thief())
    try:
        assert await asyncio.to_thread(entered.wait, 60), "the laptop's act never reached the store"
        async with session(pair.two, pair.org.alice) as s:
            await device_revoke(s, "laptop")
    finally:
        revoked.set()
    with pytest.raises(VaultError, match="revoked"):
        await held


async def test_a_version_held_in_one_process_is_refused_once_the_other_stored_the_revocation(
        pair: Pair, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    alice, laptop = pair.org.alice, _laptop(pair, tmp_path, monkeypatch)
    async with session(pair.one, laptop):  # its keys unlocked once
        pass
    entered, revoked = threading.Event(), threading.Event()
    _hold(monkeypatch, pair.one.app[DOCUMENTS], "add_version", entered, revoked)  # judged, not yet stored
    (tmp_path / "held.txt").write_text("the thief's\n")
    await revoked_while_held(pair, laptop, entered, revoked, lambda s: s.docs.put(
        "drafting", tmp_path / "held.txt", "held.txt"))  # judged again after SignerMoved
    assert "held.txt" not in await _readable(pair, alice)


async def revocation_held_while(pair: Pair, laptop: Member, monkeypatch: pytest.MonkeyPatch,
                                act: Callable[[Client], Awaitable[Any]],
                                owner: Member | None = None) -> VaultError | None:
    """alice's (or ``owner``'s) ``device revoke laptop`` through process two, held once judged (before its append),
    while ``act`` runs on the laptop (its clock ``AHEAD`` s fast) through process one, where the revocation is not
    stored yet; then the revocation goes on. Returns its refusal (409: the device signed something dated after it),
    if any."""
    async with session(pair.one, laptop):  # its keys unlocked once
        pass
    entered, stored = threading.Event(), threading.Event()
    _hold(monkeypatch, pair.two.app[CHAINS], "append_links", entered, stored)  # judged, not yet appended

    async def revoke() -> None:
        async with session(pair.two, owner or pair.org.alice) as s:
            await device_revoke(s, "laptop")

    revoking = asyncio.create_task(revoke())
    try:
        assert await asyncio.to_thread(entered.wait, 60), "the revocation never reached the store"
        async with ahead(pair.one, laptop) as s:
            await act(s)
    finally:
        stored.set()
    try:
        await revoking
    except VaultError as e:
        return e
    return None


def dated_after_or_refused(device: Device, refused: VaultError | None, now: float) -> None:
    """The revocation, if taken, is dated after the laptop's act (dated ``AHEAD`` s fast); if refused, for that."""
    if refused is None:
        assert device.revoked is not None and device.revoked > int(now) + AHEAD - 30
    else:
        assert "signed something dated" in str(refused) and device.revoked is None, refused


async def test_a_revocation_held_in_one_process_is_refused_once_the_other_stored_a_version_dated_after_it(
        pair: Pair, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    alice, laptop = pair.org.alice, _laptop(pair, tmp_path, monkeypatch)
    (tmp_path / "first.txt").write_text("the thief's, dated ahead\n")
    refused = await revocation_held_while(pair, laptop, monkeypatch, lambda s: s.docs.put(
        "drafting", tmp_path / "first.txt", "first.txt"))
    # secure: the team stays readable through both processes, the version with it, and the revocation, if taken,
    # is dated after the version (here: refused, 409 "sign it again dated ... or later": finding 2 keeps it out)
    assert "first.txt" in await _readable(pair, alice)
    async with session(pair.two, alice) as s:
        view = await s.chains.view()
        dated_after_or_refused(view.members[s.session.me].devices[SECRETS[laptop.home][1].device.device_id], refused,
                               s.session.now())
