"""The shared organization of the HTTP API tests (``tests/test_api_*.py``) as fixtures, and the links,
messages and waits those tests build by hand.

``w`` is one organization per test module and backend (``api_world``, module scope: each module's tests run
in their order on a world of their own, as when they were one module): alice founded it (NCC), bob
is a writer in team "drafting", carol a reader of team "side" whose role ends half an hour after it
was given (``World.carol_until``, on the server's clock: far past a module's run even on a loaded
machine); the tests that need it ended move the server clock to a minute past it (``past_carol``).
Building it costs several Argon2 unlocks and CLI runs; every test leaves it usable for the next.
It is a plugin of ``tests/conftest.py`` (``pytest_plugins``).
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from client import admin
from client.client import Client
from client.home import Home
from client.threads.team import Threads
from client.view import View
from server.context import CONFIG, Config
from tests.conftest import PASSPHRASE, Member, ServerThread
from tests.helpers.api_world import (
    Actor,
    Newcomer,
    World,
    info_of,
    join_body,
    new_invite,
    newcomer,
    now,
    org_join,
    session,
)
from tests.helpers.http import Http
from tests.helpers.members import unlock_here
from tests.helpers.postgres import PerBackend
from vault.encoding import encode
from vault.keys import DeviceKeys
from vault.links import Link, make_link
from vault.messages import Body as MsgBody
from vault.messages import Message, make_message
from vault.teamkeys import TeamKey, box_hash

CAROL_TERM = 1800  # carol's role in "side" ends this many seconds (server clock) after it is given


def past_carol(w: World) -> None:
    """Move the server clock to a minute past the end of carol's role, however long the module took to get
    here. The jump stays shorter than a session's life (sessions opened before it still work)."""
    w.server.advance(w.carol_until + 60 - w.server.clock())


async def _side_team(w: World) -> tuple[str, str]:
    async with session(w, w.alice) as s:
        side = await admin.create_team(s, "side", "program")
        w.carol_until = int(w.server.clock()) + CAROL_TERM
        await admin.add_member(s, "side", "carol", "reader", w.carol_until)
        view = await s.chains.view(refresh=True)
        return view.team_by_name("drafting").team_id, side.team_id


@contextmanager
def _api_world(root: Path, database_url: str) -> Iterator[World]:
    pf = root / "passphrase"
    pf.write_text(PASSPHRASE + "\n")
    server = ServerThread(root / "server-data", database_url=database_url).start()
    w: World | None = None
    try:
        members = {n: Member(root / f"home-{n}", n, pf) for n in ("alice", "bob", "carol")}
        alice = members["alice"]
        assert server.invite is not None
        alice.ok("join", server.invite, "--name", "alice")
        unlock_here(alice)  # her 4 commands after the join skip Argon2id (an agent, stopped after the first test)
        for name in ("bob", "carol"):
            members[name].ok("join", alice.json("invite")["invite"], "--name", name)
        alice.ok("team", "create", "drafting", "--kind", "program")
        alice.ok("team", "add", "drafting", "bob", "--role", "writer")
        actors = {}
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("MVAULT_PASSPHRASE_FILE", str(pf))
            mp.delenv("MVAULT_SESSION", raising=False)
            for name, m in members.items():
                home = Home(m.home)
                actors[name] = Actor(m, home, home.unlock(), home.config().member_id)
        w = World(server, actors["alice"], actors["bob"], actors["carol"])
        w.drafting, w.side = asyncio.run(_side_team(w))
        yield w
    finally:
        (w.server if w is not None else server).stop()


@pytest.fixture(scope="module")
def api_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PerBackend[World]]:
    """The module's organizations, one per backend its tests run on (``w`` picks the test's)."""
    with PerBackend(lambda url: _api_world(tmp_path_factory.mktemp("api"), url)) as worlds:
        yield worlds


@pytest.fixture
def w(api_world: PerBackend[World], request: pytest.FixtureRequest) -> Iterator[World]:
    """The shared organization of the test's backend; clock offset and upload limit are put back afterwards."""
    world = api_world.get(request)
    offset = world.server.offset
    yield world
    world.server.offset = offset
    world.server.app[CONFIG].max_upload = Config.max_upload


def bad_sig(link: Link) -> bytes:
    """The same link with one bit of its signature flipped."""
    sig = bytes([link.sig[0] ^ 1]) + link.sig[1:]
    return encode({"link": link.raw, "sig": sig, "xsig": link.xsig})


async def org_link_of(s: Client, w: World, type_: str, body: dict[str, Any], *, signer: Actor | None = None,
                      when: int | None = None) -> Link:
    """An organization link on top of the current head, signed by ``signer`` (default: the session's member)."""
    org = (await s.chains.view(refresh=True)).org
    member_id, device = (s.session.me, s.session.device) if signer is None else (signer.member_id, signer.device)
    return make_link(chain=org.org_id, seq=org.seq + 1, prev=org.head,
                     time=max(now(w), org.time) if when is None else when, signer=member_id, device=device,
                     type_=type_, body=body)


async def joined_newcomer(s: Client, w: World, h: Http, name: str) -> Newcomer:
    """A new member (own member chain) admitted through alice's invite."""
    secret = await new_invite(s, w)
    n = newcomer(name, now(w))
    status, res = await h.call("POST", "/api/v1/join",
                               js=join_body(n, org_join(n, secret, await info_of(h), now(w))))
    assert status == 201 and res["status"] == "admitted", res
    return n


def member_link(n: Newcomer, type_: str, body: dict[str, Any], *, seq: int, prev: bytes, when: int,
                chain: str | None = None, device: DeviceKeys | None = None) -> Link:
    return make_link(chain=n.member_id if chain is None else chain, seq=seq, prev=prev, time=when,
                     signer=n.member_id, device=device or n.device, type_=type_, body=body)


def team_add_link(s: Client, view: View, team_id: str, key: TeamKey, member: str, *,
                  role: str = "reader", seq_delta: int = 1, prev: bytes | None = None,
                  when: int | None = None, chain: str | None = None,
                  org_seq: int | None = None) -> tuple[Link, dict[str, bytes]]:
    team, m = view.teams[team_id], view.members[member]
    box = key.seal_for(member, m.puk_gen, m.puk_box_public)
    link = make_link(
        chain=chain or team_id, seq=team.seq + seq_delta, prev=team.head if prev is None else prev,
        time=max(int(time.time()), team.time) if when is None else when, signer=s.session.me, device=s.session.device,
        type_="team.add",
        body={"member": member, "role": role, "until": None,
              "org_seq": view.org.seq if org_seq is None else org_seq,
              "key": {"gen": key.gen, "boxes": [{"member": member, "puk_gen": m.puk_gen,
                                                  "hash": box_hash(box)}]}},
    )
    return link, {member: box}


def _prelude(value: dict[str, Any]) -> bytes:
    raw = encode(value)
    return struct.pack(">I", len(raw)) + raw


async def _wait_for_empty_tmp(server: ServerThread) -> None:
    """Once the server has handled the refused or cut request (its handler ended), its temporary file is gone. (The
    check was: an empty directory, then 0.3 s: a handler still on its way to the upload's temporary file under load
    makes it after the check, and may still hold it 0.3 s later.)"""
    tmp = server.data_dir / "tmp"
    end = asyncio.get_running_loop().time() + 30
    while server.handling() or any(tmp.iterdir()):
        if asyncio.get_running_loop().time() > end:
            break
        await asyncio.sleep(0.05)
    assert not server.handling(), "the server still handles the request after 30 s"
    assert not any(tmp.iterdir()), "an interrupted upload left a temporary file"


async def thread_in(w: World, actor: Actor, team_name: str, name: str, expire: int = 0) -> tuple[str, str]:
    """(team id, thread id) of ``name``, created by ``actor`` if it does not exist yet."""
    async with session(w, actor) as s:
        threads = await Threads.open(s, team_name)
        tid = await threads.thread_of(name)
        if any(t["thread"] == tid for t in (await s.session.api.get(threads.base))["threads"]):
            return threads.team.team_id, tid
        await threads.create(name, expire)
        return threads.team.team_id, tid


async def next_message(w: World, actor: Actor, team_name: str, name: str, text: str = "hello", *,
                       gen: int | None = None, **override: Any) -> Message:
    """A correctly chained message of ``actor`` (fields can be overridden), not posted."""
    async with session(w, actor) as s:
        threads = await Threads.open(s, team_name)
        ct = await threads.resolve(name)
        team = threads.team
        key = await s.keys.team_key(team, gen or team.generation)
        last = ct.checker.senders.get(s.session.device.device_id)
        fields: dict[str, Any] = {
            "thread": ct.checker.thread, "rec": ct.checker.rec, "team_seq": team.seq, "sender": s.session.me,
            "device": s.session.device,
            "seq": last.seq + 1 if last else 1, "prev": last.id if last else None,
            "prev_time": last.time if last else 0, "seen": [], "time": now(w)}
        fields.update(override)
        return make_message(key, MsgBody(text), **fields)


def msgs_path(team: str, thread: str) -> str:
    return f"/api/v1/teams/{team}/threads/{thread}/messages"
