"""The shared organization of the audit API tests (``tests/test_audit_api_*.py``) and ``audit.db`` read
as a seized disk would be.

``audit_world`` is built once per test session (per worker) and backend, shared by the audit API modules:
alice founded it (NCC), bob is a writer in team "drafting" with one document, carol holds the org
role ``security`` and is admin of team "sec" (kind security) but holds no key of "drafting", dave
joined on bob's invite and waits for admission. Tests take it through ``aw``, which puts the server
clock back afterwards. It is a plugin of ``tests/conftest.py`` (``pytest_plugins``).
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from client.home import Home
from security.events import (
    ACTION_RULES,
    Checkpoint,
    Event,
    Leaf,
    audit_keypair,
    cosign_statement,
    open_leaf,
)
from security.merkle import leaf_hash
from tests.conftest import PASSPHRASE, Member, ServerThread
from tests.helpers.api_world import (
    Actor,
    Newcomer,
    World,
    found_body,
    info_of,
    join_body,
    new_invite,
    newcomer,
    now,
    org_create,
    org_join,
    session,
)
from tests.helpers.db import audit_db, audit_meta, leaves_from, log_size
from tests.helpers.http import Http, refused
from tests.helpers.members import unlock_here
from tests.helpers.postgres import PerBackend
from vault.crypto import labels
from vault.errors import DecryptionFailed
from vault.invite import InviteCode
from vault.links import Link, parse_link

CHECKPOINT = "/api/v1/audit/checkpoint"
LEAVES = "/api/v1/audit/leaves"
COSIGN = "/api/v1/audit/cosign"
KEY = "/api/v1/audit/key"
ATTEST = "/api/v1/audit/attest"
CHALLENGE = "/api/v1/auth/challenge"
LOGIN = "/api/v1/auth/login"
BAD_NUMBERS = ("-1", "abc", "1.5", "", "1e3", "0x10", "9" * 13, "%201")
LOW_ORDER = bytes(32)  # an X25519 public key nothing can be sealed to (libsodium refuses it)


@dataclass
class AuditWorld(World):
    sec: str = ""  # team of kind security: carol (admin) and alice, who created it
    dave: Newcomer | None = None  # joined on bob's invite, not admitted

    @property
    def pending(self) -> Newcomer:
        assert self.dave is not None
        return self.dave


async def _setup(w: AuditWorld) -> None:
    async with session(w, w.alice) as s:
        view = await s.chains.view(refresh=True)
        w.drafting, w.sec = view.team_by_name("drafting").team_id, view.team_by_name("sec").team_id
    async with session(w, w.bob) as s, Http(w.server) as h:
        secret = await new_invite(s, w)  # an invite by a plain member: the newcomer waits for admission
        dave = newcomer("dave", now(w))
        status, res = await h.call("POST", "/api/v1/join",
                                   js=join_body(dave, org_join(dave, secret, await info_of(h), now(w))))
        assert status == 201 and res["status"] == "pending", res
        w.dave = dave


@contextmanager
def _audit_world(root: Path, database_url: str) -> Iterator[AuditWorld]:
    pf = root / "passphrase"
    pf.write_text(PASSPHRASE + "\n")
    server = ServerThread(root / "server-data", database_url=database_url).start()
    try:
        members = {n: Member(root / f"home-{n}", n, pf) for n in ("alice", "bob", "carol")}
        alice = members["alice"]
        assert server.invite is not None
        alice.ok("join", server.invite, "--name", "alice")
        unlock_here(alice)  # her 8 commands after the join skip Argon2id (an agent, stopped after the first test)
        for name in ("bob", "carol"):
            members[name].ok("join", alice.json("invite")["invite"], "--name", name)
        alice.ok("team", "create", "drafting", "--kind", "program")
        alice.ok("team", "add", "drafting", "bob", "--role", "writer")
        alice.ok("role", "grant", "carol", "security")
        alice.ok("team", "create", "sec", "--kind", "security")
        alice.ok("team", "add", "sec", "carol", "--role", "admin")
        (root / "plan.md").write_text("strategy draft")
        members["bob"].ok("put", "drafting", str(root / "plan.md"))
        actors = {}
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("MVAULT_PASSPHRASE_FILE", str(pf))
            mp.delenv("MVAULT_SESSION", raising=False)
            for name, m in members.items():
                home = Home(m.home)
                actors[name] = Actor(m, home, home.unlock(), home.config().member_id)
        w = AuditWorld(server, actors["alice"], actors["bob"], actors["carol"])
        asyncio.run(_setup(w))
        yield w
    finally:
        server.stop()


@pytest.fixture(scope="session")
def audit_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PerBackend[AuditWorld]]:
    """The session's audit organizations, one per backend its tests run on (``aw`` picks the test's)."""
    with PerBackend(lambda url: _audit_world(tmp_path_factory.mktemp("audit-api"), url)) as worlds:
        yield worlds


@pytest.fixture
def aw(audit_world: PerBackend[AuditWorld], request: pytest.FixtureRequest) -> Iterator[AuditWorld]:
    world = audit_world.get(request)
    offset = world.server.offset
    yield world
    world.server.offset = offset


def stored_hashes(server: ServerThread) -> list[bytes]:
    con = audit_db(server)
    try:
        return [bytes(r[0]) for r in con.execute("SELECT hash FROM events ORDER BY idx")]
    finally:
        con.close()


def audit_state(server: ServerThread) -> dict[str, Any]:
    """What a refused request must not change in audit.db (the events themselves aside)."""
    con = audit_db(server)
    try:
        return {t: sorted(con.execute(f"SELECT * FROM {t}").fetchall())
                for t in (audit_meta(server), "cosigs")}
    finally:
        con.close()


Keys = tuple[bytes, bytes]


def keys_of(who: Actor | Newcomer) -> Keys:
    """The member's current member-key (PUK) box pair: it opens the events about that member."""
    if isinstance(who, Newcomer):
        return who.puk.box_keypair
    return who.secrets.puks[max(who.secrets.puks)].box_keypair


def opened(leaf: Leaf, keys: Keys) -> Event:
    return open_leaf(leaf, keys[0], keys[1], (1, 2))


def new_events(server: ServerThread, start: int, keys: Keys) -> list[Event]:
    """Every event from ``start``: each must open with these member keys."""
    return [opened(leaf, keys) for leaf in leaves_from(server, start)]


def _try_open(leaf: Leaf, keys: Keys) -> Event | None:
    try:
        return opened(leaf, keys)
    except DecryptionFailed:  # an event about someone else
        return None


def new_events_any(server: ServerThread, start: int, keys: Keys) -> list[Event]:
    """The events from ``start`` that these member keys open (others' are skipped)."""
    return [e for e in (_try_open(leaf, keys) for leaf in leaves_from(server, start)) if e is not None]


async def rejected(h: Http, method: str, path: str, status: int, *, code: str = "", **kw: Any) -> dict[str, str]:
    """``refused`` (vault state unchanged) and the audit state unchanged too."""
    before = audit_state(h.server)
    body = await refused(h, method, path, status, **kw)
    if code:
        assert body["error"] == code, body
    assert audit_state(h.server) == before, f"{method} {path} changed the audit state"
    return body


async def denied(h: Http, who: Actor | Newcomer, method: str, path: str, *, token: str, contains: str = "",
                 what: str = "", status: int = 403, code: str = "forbidden", **kw: Any) -> Event:
    """A refusal by the policy (403), or a probe of something the member may not see (404): nothing
    changes but the log, which gains exactly one ``denied`` event, attributed to the member's device."""
    size = log_size(h.server)
    await rejected(h, method, path, status, code=code, token=token, contains=contains, what=what, **kw)
    events = new_events(h.server, size, keys_of(who))
    assert len(events) == 1, f"{method} {path} ({what}): {len(events)} events for one refusal"
    (event,) = events
    assert event.result == "denied" and (event.actor, event.device) == (who.member_id, who.device.device_id), event
    assert event.detail.get("error") == code, event
    assert event.action == "request.denied" or event.action in ACTION_RULES, event
    if event.action == "request.denied":  # no handler described it: what was asked and what was answered
        assert dict(event.detail) == {"method": method, "status": status, "error": code}, event
        assert event.rules == ACTION_RULES["request.denied"]
    return event


@dataclass
class Served:
    checkpoint: Checkpoint
    sig: bytes
    proof: list[bytes]
    witness: dict[str, Any] | None
    log_key: bytes


def unb64(value: str) -> bytes:
    return base64.b64decode(value, validate=True)


async def checkpoint_of(h: Http, token: str, since: int | None = None) -> Served:
    path = CHECKPOINT if since is None else f"{CHECKPOINT}?from={since}"
    status, res = await h.call("GET", path, token=token)
    assert status == 200, res
    assert set(res) == {"checkpoint", "sig", "proof", "witness", "log_key", "witness_note", "witness_note_proof"}, res
    served = Served(Checkpoint.parse(unb64(res["checkpoint"])), unb64(res["sig"]),
                    [unb64(x) for x in res["proof"]], res["witness"], unb64(res["log_key"]))
    served.checkpoint.verify(served.log_key, served.sig)
    return served


async def audited_action(h: Http, w: AuditWorld, token: str) -> None:
    status, _ = await h.call("GET", f"/api/v1/teams/{w.drafting}/docs", token=token)
    assert status == 200


async def org_links(h: Http, token: str) -> list[Link]:
    status, chain = await h.call("GET", "/api/v1/chains/org", token=token)
    assert status == 200
    return [parse_link(unb64(x)) for x in chain["links"]]


async def leaves_page(h: Http, token: str, start: int, count: int | None = None) -> list[dict[str, Any]]:
    path = f"{LEAVES}?start={start}" + ("" if count is None else f"&count={count}")
    status, res = await h.call("GET", path, token=token)
    assert status == 200, res
    rows = res["leaves"]
    assert [r["index"] for r in rows] == list(range(start, start + len(rows))), "indices are contiguous"
    for r in rows:
        assert set(r) == {"index", "hash", "leaf"}
        assert leaf_hash(unb64(r["leaf"])) == unb64(r["hash"]), f"leaf {r['index']} does not match its hash"
        Leaf.parse(unb64(r["leaf"]))
    return list(rows)


def cosignature(signer: Actor, raw: bytes, when: int, member: str | None = None, device: str | None = None,
                tag: bytes = labels.SIG_COSIGN) -> bytes:
    """``signer``'s device signs the cosignature statement: the checkpoint, who (by default the
    signer) and when."""
    statement = cosign_statement(raw, member or signer.member_id, device or signer.device.device_id, when)
    return signer.device.sign(tag, statement)


async def audit_key_of(h: Http, token: str) -> dict[str, str] | None:
    status, res = await h.call("GET", KEY, token=token)
    assert status == 200 and set(res) == {"key"}, res
    return res["key"]  # type: ignore[no-any-return]


async def audit_pair_of(w: AuditWorld, gen: int) -> Keys:
    """The Security Team's audit key pair of generation ``gen`` (carol holds the team's key)."""
    async with session(w, w.carol) as s:
        team = (await s.chains.view(refresh=True)).teams[w.sec]
        return audit_keypair((await s.keys.team_key(team, gen)).seed)


async def _founded(h: Http) -> Newcomer:
    """A founder made by hand on a fresh server (no CLI)."""
    assert h.server.invite is not None
    t = int(h.server.clock())
    founder = newcomer("founder", t)
    org_link = org_create(founder, InviteCode.parse(h.server.invite).secret, t)
    status, res = await h.call("POST", "/api/v1/found", js=found_body(founder, org_link))
    assert status == 201, res
    return founder
