"""The shared organization of the API tests (actors, in-process sessions) and links, members and uploads
built by hand as a client would."""

from __future__ import annotations

import base64
import os
import struct
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from client.api import Api
from client.client import Client
from client.home import Home, Secrets
from client.view import View
from server.context import DIRECTORY
from tests.conftest import Member, ServerThread
from tests.helpers.clock import FOLLOWS_ENVIRONMENT
from tests.helpers.http import Http, b64
from vault.bodyformat import BODY_NEW
from vault.chains import member_id_for, org_id_for, team_id_for
from vault.envelope import MAGIC, DocWriter
from vault.keys import DeviceKeys, PukKeys
from vault.links import Link, invite_public, make_link
from vault.teamkeys import TeamKey, box_hash


@dataclass
class Actor:
    member: Member
    home: Home
    secrets: Secrets
    member_id: str

    @property
    def device(self) -> DeviceKeys:
        return self.secrets.device


@dataclass
class World:
    server: ServerThread
    alice: Actor
    bob: Actor
    carol: Actor
    drafting: str = ""
    side: str = ""
    carol_until: int = 0  # the end of carol's reader role in "side" (server clock)


@asynccontextmanager
async def session(w: World, actor: Actor) -> AsyncIterator[Client]:
    """An in-process client session (logs in through the API)."""
    async with Api(w.server.url, bytes.fromhex(w.server.fingerprint)) as api:
        yield await Client.open(actor.home, actor.secrets, api, FOLLOWS_ENVIRONMENT)


def now(w: World) -> int:
    return int(w.server.clock())


# -- new members and organizations (built by hand, as the client does) ----------------------------


@dataclass
class Newcomer:
    device: DeviceKeys
    member_id: str
    link: Link
    puk_box: bytes
    puk: PukKeys


def newcomer(name: str, when: int, *, puk_box_public: bytes | None = None) -> Newcomer:
    """A new member's own chain (``member.create``); ``puk_box_public`` replaces the PUK's box key it names."""
    device, puk = DeviceKeys.generate(), PukKeys.generate(1)
    mid = member_id_for(device.sign_public)
    puk_box = puk.seal_for_device(mid, device.box_public)
    link = make_link(
        chain=None, seq=1, prev=None, time=when, signer=mid, device=device, type_="member.create",
        body={"name": name,
              "device": {"id": device.device_id, "sign_pk": device.sign_public,
                         "box_pk": device.box_public, "name": "device-1", "kind": "device"},
              "puk": {"gen": 1, "sign_pk": puk.sign_public, "box_pk": puk_box_public or puk.box_public},
              "puk_boxes": [{"device": device.device_id, "hash": box_hash(puk_box)}]},
    )
    return Newcomer(device, mid, link, puk_box, puk)


def org_create(n: Newcomer, secret: bytes, when: int) -> Link:
    return make_link(chain=None, seq=1, prev=None, time=when, signer=n.member_id, device=n.device,
                     type_="org.create",
                     body={"name": "test-org", "founder_invite": invite_public(secret),
                           "member_head": n.link.hash},
                     invite_secret=secret)


def org_join(n: Newcomer, secret: bytes, info: dict[str, Any], when: int, seq_delta: int = 1) -> Link:
    root = bytes.fromhex(info["org_root"]) if info.get("org_root") else b"\x00" * 32
    head = base64.b64decode(info["org_head"]) if info.get("org_head") else root
    return make_link(chain=org_id_for(root), seq=int(info["org_seq"]) + seq_delta, prev=head,
                     time=when, signer=n.member_id, device=n.device, type_="org.join",
                     body={"invite": invite_public(secret), "member_head": n.link.hash},
                     invite_secret=secret)


def found_body(n: Newcomer, org_link: Link) -> dict[str, str]:
    return {"member_link": b64(n.link.wire), "puk_box": b64(n.puk_box), "org_link": b64(org_link.wire)}


def join_body(n: Newcomer, join_link: Link) -> dict[str, str]:
    return {"member_link": b64(n.link.wire), "puk_box": b64(n.puk_box), "join_link": b64(join_link.wire)}


async def info_of(h: Http) -> dict[str, Any]:
    """/api/v1/info plus the organization chain's head, which the server tells only a member or the holder
    of an open invite (/api/v1/join/head): read here from the server's own state, for the tests' forged links."""
    status, info = await h.call("GET", "/api/v1/info")
    assert status == 200 and "org_seq" not in info and "org_head" not in info
    org = h.server.app[DIRECTORY].org
    return {**info, "org_seq": org.seq if org else 0, "org_head": b64(org.head) if org else None}


async def new_invite(s: Client, w: World, *, expires_in: int = 86400) -> bytes:
    """alice records an org.invite link; returns the invite secret."""
    view = await s.chains.view(refresh=True)
    secret = os.urandom(32)
    when = max(now(w), view.org.time)
    link = make_link(chain=view.org.org_id, seq=view.org.seq + 1, prev=view.org.head, time=when,
                     signer=s.session.me, device=s.session.device, type_="org.invite",
                     body={"invite": invite_public(secret), "role": "member", "note": "test",
                           "expires": when + expires_in})
    await s.session.api.post("/api/v1/org/links", {"link": b64(link.wire)})
    return secret


# -- documents ---------------------------------------------------------------------------------------


@dataclass
class Upload:
    data: bytes
    vid: str
    head_len: int  # magic + length + prelude

    @property
    def body(self) -> bytes:
        return self.data[self.head_len:-64]


async def team_key(s: Client, team_id: str) -> TeamKey:
    view = await s.chains.view(refresh=True)
    team = view.teams[team_id]
    return await s.keys.team_key(team, team.generation)


def team_seq_of(w: World, team_id: str) -> int:
    """The team chain head as the server holds it now (what an up-to-date writer names)."""
    return w.server.app[DIRECTORY].team(team_id).seq


def make_upload(w: World, s: Client, key: TeamKey, doc: str, *, seq: int = 1, parent: str | None = None,
                size: int = 300, device: DeviceKeys | None = None, author: str | None = None,
                when: int | None = None, team_seq: int | None = None, body_format: int = BODY_NEW) -> Upload:
    writer = DocWriter(key=key, team_seq=team_seq_of(w, key.team_id) if team_seq is None else team_seq,
                       device=device or s.session.device, author=author or s.session.me, doc=doc, seq=seq,
                       parent=parent, time=now(w) if when is None else when, name=f"{doc[:8]}.bin",
                       size=size, body=body_format)
    data = writer.upload_prefix() + writer.encrypt(os.urandom(size)) + writer.finish()
    assert writer.record is not None
    (n,) = struct.unpack(">I", data[len(MAGIC):len(MAGIC) + 4])
    return Upload(data, writer.record.version_id, len(MAGIC) + 4 + n)


def new_doc() -> str:
    return os.urandom(16).hex()


async def stored_upload(w: World, s: Client, h: Http, key: TeamKey, size: int = 300) -> Upload:
    """The first version of a new document of ``key``'s team, made and stored by ``s`` (201 checked)."""
    doc = new_doc()
    up = make_upload(w, s, key, doc, size=size)
    status, res = await h.call("POST", docs_path(key.team_id, doc), token=s.session.api.token, data=up.data)
    assert status == 201, res
    return up


def docs_path(team: str, doc: str) -> str:
    return f"/api/v1/teams/{team}/docs/{doc}"


def device_body(new: DeviceKeys, name: str = "phone", kind: str = "device") -> dict[str, Any]:
    return {"id": new.device_id, "sign_pk": new.sign_public, "box_pk": new.box_public, "name": name, "kind": kind}


def member_json(link: Link | bytes, boxes: dict[str, bytes]) -> dict[str, Any]:
    wire = link if isinstance(link, bytes) else link.wire
    return {"link": b64(wire), "puk_boxes": {d: b64(b) for d, b in boxes.items()}}


def team_create_link(s: Client, view: View, name: str, *, kind: str = "program",
                     when: int | None = None, org_seq: int | None = None) -> tuple[Link, dict[str, bytes]]:
    nonce = os.urandom(16)
    key = TeamKey.generate(team_id_for(view.org.org_id, nonce), 1)
    mine = view.members[s.session.me]
    box = key.seal_for(s.session.me, mine.puk_gen, mine.puk_box_public)
    link = make_link(
        chain=None, seq=1, prev=None, time=int(time.time()) if when is None else when, signer=s.session.me,
        device=s.session.device, type_="team.create",
        body={"org": view.org.org_id, "org_seq": view.org.seq if org_seq is None else org_seq, "nonce": nonce,
              "name": name, "kind": kind, "history": True,
              "members": [{"member": s.session.me, "role": "admin", "until": None}],
              "key": {"gen": 1, "canary": key.canary,
                      "boxes": [{"member": s.session.me, "puk_gen": mine.puk_gen, "hash": box_hash(box)}]}},
    )
    return link, {s.session.me: box}


def team_json(link: Link | bytes, boxes: dict[str, bytes]) -> dict[str, Any]:
    wire = link if isinstance(link, bytes) else link.wire
    return {"link": b64(wire), "boxes": {m: b64(b) for m, b in boxes.items()}}
