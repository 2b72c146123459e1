"""Member operations: join, sync and verify chains, teams, and documents.

Everything the server returns is verified here with ``vault`` before use: chains are
replayed from their roots under the shared policy, pinned heads must be extended (never
rolled back), key boxes must match the chain's commitments, document records must be
signed by their author's device and form an unbroken version chain.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from client.api import Api, b64, unb64
from client.home import Config, Home, Pins, Secrets
from security.policy import POLICY, TEAM_KINDS
from vault.auth import sign_login
from vault.chains import (
    MemberState,
    OrgState,
    TeamState,
    check_name,
    clone,
    member_id_for,
    org_id_for,
    replay_member,
    replay_org,
    replay_team,
    team_id_for,
)
from vault.envelope import BodyDecryptor, DocWriter, Opened, Record, open_record
from vault.errors import (
    ChainError,
    IntegrityError,
    NotFound,
    PolicyDenied,
    RollbackDetected,
    ServerMismatch,
    TransportError,
    VaultError,
)
from vault.invite import InviteCode
from vault.keys import DeviceKeys, PukKeys
from vault.links import Link, invite_public, make_link, parse_link
from vault.teamkeys import TeamKey, box_hash, open_team_box

Progress = Callable[[int], None]
INVITE_DAYS = 7


def now() -> int:
    return int(time.time())


@dataclass
class View:
    """The verified state of everything this member can see."""

    org: OrgState
    members: dict[str, MemberState]
    teams: dict[str, TeamState]

    def member_by_name(self, name: str) -> MemberState:
        found = [m for m in self.members.values() if m.name == name or m.member_id == name]
        if not found:
            raise NotFound(f"no member named {name!r}")
        if len(found) > 1:
            raise VaultError(f"several members are named {name!r}; use the member id")
        return found[0]

    def team_by_name(self, name: str) -> TeamState:
        for t in self.teams.values():
            if t.name == name or t.team_id == name:
                return t
        raise NotFound(f"no team named {name!r} (or you are not in it)")

    def name_of(self, member_id: str) -> str:
        m = self.members.get(member_id)
        return m.name if m else member_id[:8]


@dataclass
class DocVersion:
    record: Record
    opened: Opened
    vid: str


async def join(home: Home, code: str, name: str, passphrase: str, org_name: str = "member-vault") -> Config:
    """Create keys, then found the organization (founder invite) or join it."""
    if home.exists:
        raise VaultError(f"{home.path} already holds an identity; use another MVAULT_HOME")
    check_name(name, "member name")
    invite = InviteCode.parse(code)
    device = DeviceKeys.generate()
    puk = PukKeys.generate(1)
    member_id = member_id_for(device.sign_public)
    async with Api(invite.url, invite.cert_fingerprint) as api:
        info = await api.get("/api/v1/info")
        member_link = make_link(
            chain=None, seq=1, prev=None, time=now(), signer=member_id, device=device, type_="member.create",
            body={
                "name": name,
                "device": {"id": device.device_id, "sign_pk": device.sign_public, "box_pk": device.box_public,
                           "name": "device-1"},
                "puk": {"gen": 1, "sign_pk": puk.sign_public, "box_pk": puk.box_public},
                "puk_boxes": [],
            },
        )
        puk_box = puk.seal_for_device(member_id, device.box_public)
        member_link = make_link(
            chain=None, seq=1, prev=None, time=member_link.time, signer=member_id, device=device,
            type_="member.create",
            body={**_body(member_link), "puk_boxes": [{"device": device.device_id, "hash": box_hash(puk_box)}]},
        )
        member = MemberState.create(member_link)
        if member.member_id != member_id:
            raise IntegrityError("member id derivation mismatch")
        if invite.org_root is None:
            if info.get("org_root"):
                raise VaultError("this server's organization is already founded; ask a member for an invite")
            org_link = make_link(
                chain=None, seq=1, prev=None, time=now(), signer=member_id, device=device, type_="org.create",
                body={"name": org_name, "founder_invite": invite_public(invite.secret), "member_head": member.root},
                invite_secret=invite.secret,
            )
            res = await api.post("/api/v1/found", {"member_link": b64(member_link.wire), "puk_box": b64(puk_box),
                                                   "org_link": b64(org_link.wire)})
            org_root = str(res["org_root"])
        else:
            if info.get("org_root") != invite.org_root.hex():
                raise ServerMismatch("the server's organization does not match the invite (wrong or impostor server)")
            org_id = org_id_for(invite.org_root)
            head = unb64(info.get("org_head"))
            join_link = make_link(
                chain=org_id, seq=int(info["org_seq"]) + 1, prev=head, time=now(), signer=member_id, device=device,
                type_="org.join", body={"invite": invite_public(invite.secret), "member_head": member.root},
                invite_secret=invite.secret,
            )
            await api.post("/api/v1/join", {"member_link": b64(member_link.wire), "puk_box": b64(puk_box),
                                            "join_link": b64(join_link.wire)})
            org_root = invite.org_root.hex()
    cfg = Config(url=invite.url, cert_fp=invite.cert_fingerprint.hex(), org_root=org_root, member_id=member_id,
                 device_id=device.device_id, name=name)
    home.create_keystore(Secrets(device, {1: puk}), passphrase)
    home.save_config(cfg)
    return cfg


def _body(link: Link) -> dict[str, Any]:
    return dict(link.body.raw)


class Session:
    """A logged-in, verified connection for one command."""

    def __init__(self, home: Home, secrets: Secrets, api: Api) -> None:
        self.home = home
        self.cfg = home.config()
        self.secrets = secrets
        self.api = api
        self._view: View | None = None

    @classmethod
    async def open(cls, home: Home, secrets: Secrets, api: Api) -> Session:
        s = cls(home, secrets, api)
        await s.login()
        return s

    @property
    def device(self) -> DeviceKeys:
        return self.secrets.device

    @property
    def me(self) -> str:
        return self.cfg.member_id

    async def login(self) -> None:
        ch = await self.api.post("/api/v1/auth/challenge", {"member": self.me, "device": self.device.device_id})
        statement, sig = sign_login(self.device, origin=self.api.url, nonce=unb64(ch["nonce"]), member=self.me,
                                    time=now())
        res = await self.api.post("/api/v1/auth/login", {"statement": b64(statement), "sig": b64(sig)})
        self.api.token = str(res["token"])

    # -- chains ---------------------------------------------------------------------------------

    async def _links(self, path: str) -> list[Link]:
        res = await self.api.get(path)
        links = res.get("links") if isinstance(res, dict) else None
        if not isinstance(links, list):
            raise TransportError("server sent a malformed chain")
        try:
            return [parse_link(unb64(x)) for x in links]
        except VaultError as e:
            raise ChainError(f"server sent a malformed chain link: {e}") from e

    def _check_pin(self, pins: Pins, chain_id: str, links: list[Link]) -> None:
        pin = pins.chains.get(chain_id)
        if pin is not None:
            seq, head = int(pin[0]), str(pin[1])
            if len(links) < seq or links[seq - 1].hash.hex() != head:
                raise RollbackDetected(
                    f"the server rolled back or forked chain {chain_id[:12]} (we saw link {seq} before); "
                    "stop and tell your Security Team"
                )
        if links:
            pins.chains[chain_id] = [len(links), links[-1].hash.hex()]

    async def view(self, refresh: bool = False) -> View:
        """Fetch and replay every visible chain; check pins; return the verified state."""
        if self._view is not None and not refresh:
            return self._view
        directory = await self.api.get("/api/v1/directory")
        pins = self.home.pins()
        members: dict[str, MemberState] = {}
        for mid in directory.get("members", {}):
            links = await self._links(f"/api/v1/chains/member/{mid}")
            state = replay_member(links)
            if state.member_id != mid:
                raise ChainError("server served a member chain under another member's id")
            self._check_pin(pins, mid, links)
            members[mid] = state
        org_links = await self._links("/api/v1/chains/org")
        if not org_links or org_links[0].hash.hex() != self.cfg.org_root:
            raise ServerMismatch("the organization chain does not start at the pinned root")
        org = replay_org(org_links, members, POLICY)
        self._check_pin(pins, "org", org_links)
        if self.me not in org.members:
            raise ChainError("you are not a member of this organization's chain")
        teams: dict[str, TeamState] = {}
        for tid in directory.get("teams", {}):
            links = await self._links(f"/api/v1/chains/team/{tid}")
            team = replay_team(links, org, members, POLICY, TEAM_KINDS)
            if team.team_id != tid:
                raise ChainError("server served a team chain under another team's id")
            self._check_pin(pins, tid, links)
            teams[tid] = team
        # A pinned team chain that disappeared from our view is a rollback unless we left it.
        for chain_id in pins.chains:
            if chain_id not in members and chain_id != "org" and chain_id not in teams:
                raise RollbackDetected(f"the server no longer shows chain {chain_id[:12]} that we saw before")
        self.home.save_pins(pins)
        self._view = View(org, members, teams)
        return self._view

    async def _append_team(self, team: TeamState, type_: str, body: dict[str, Any], boxes: dict[str, bytes]) -> None:
        link = make_link(chain=team.team_id, seq=team.seq + 1, prev=team.head, time=max(now(), team.time),
                         signer=self.me, device=self.device, type_=type_, body=body)
        view = await self.view()
        team.apply(link, view.org, view.members, POLICY)  # fail here, before the server, on a bad request
        await self.api.post(f"/api/v1/teams/{team.team_id}/links",
                            {"link": b64(link.wire), "boxes": {m: b64(b) for m, b in boxes.items()}})
        await self.view(refresh=True)

    # -- keys ------------------------------------------------------------------------------------

    async def puk(self, gen: int) -> PukKeys:
        if gen in self.secrets.puks:
            return self.secrets.puks[gen]
        res = await self.api.get("/api/v1/puk-boxes")
        view = await self.view()
        mine = view.members[self.me]
        for item in res.get("boxes", []):
            if int(item["puk_gen"]) == gen:
                box = unb64(item["box"])
                if gen == mine.puk_gen and mine.puk_box_hashes.get(self.device.device_id) != box_hash(box):
                    raise IntegrityError("the server sent a PUK box that the member chain does not commit to")
                puk = PukKeys.open_device_box(self.device, self.me, gen, box)
                self.secrets.puks[gen] = puk
                self.home.save_secrets(self.secrets)
                return puk
        raise NotFound(f"no key box for your member key generation {gen}")

    async def team_key(self, team: TeamState, gen: int) -> TeamKey:
        commitment = team.boxes.get((gen, self.me))
        if commitment is None:
            raise PolicyDenied(f"you hold no key for team {team.name} generation {gen}")
        res = await self.api.get(f"/api/v1/teams/{team.team_id}/boxes")
        for item in res.get("boxes", []):
            if int(item.get("gen", -1)) == gen:
                puk = await self.puk(commitment.puk_gen)
                return open_team_box(unb64(item["box"]), puk, team.team_id, self.me, commitment, team.canaries[gen])
        raise NotFound(f"the server has no key box for you in team {team.name} generation {gen}")

    # -- invites and teams ----------------------------------------------------------------------

    async def invite(self, role: str, note: str, days: int = INVITE_DAYS) -> str:
        view = await self.view()
        secret = os.urandom(32)
        link = make_link(chain=view.org.org_id, seq=view.org.seq + 1, prev=view.org.head,
                         time=max(now(), view.org.time), signer=self.me, device=self.device, type_="org.invite",
                         body={"invite": invite_public(secret), "role": role, "note": note,
                               "expires": now() + days * 86400})
        clone(view.org).apply(link, view.members, POLICY)
        await self.api.post("/api/v1/org/links", {"link": b64(link.wire)})
        return InviteCode(self.cfg.url, bytes.fromhex(self.cfg.cert_fp), bytes.fromhex(self.cfg.org_root),
                          secret).encode()

    async def create_team(self, name: str, kind: str, history: bool = True) -> TeamState:
        view = await self.view()
        nonce = os.urandom(16)
        team_id = team_id_for(view.org.org_id, nonce)
        key = TeamKey.generate(team_id, 1)
        mine = view.members[self.me]
        box = key.seal_for(self.me, mine.puk_gen, mine.puk_box_public)
        link = make_link(
            chain=None, seq=1, prev=None, time=now(), signer=self.me, device=self.device, type_="team.create",
            body={"org": view.org.org_id, "nonce": nonce, "name": name, "kind": kind, "history": history,
                  "members": [{"member": self.me, "role": "admin", "until": None}],
                  "key": {"gen": 1, "canary": key.canary,
                          "boxes": [{"member": self.me, "puk_gen": mine.puk_gen, "hash": box_hash(box)}]}},
        )
        TeamState.create(link, view.org, view.members, POLICY, TEAM_KINDS)
        await self.api.post("/api/v1/teams", {"link": b64(link.wire), "boxes": {self.me: b64(box)}})
        view = await self.view(refresh=True)
        return view.teams[team_id]

    async def add_member(self, team_name: str, member_name: str, role: str, until: int | None) -> None:
        view = await self.view()
        team = view.team_by_name(team_name)
        member = view.member_by_name(member_name)
        key = await self.team_key(team, team.generation)
        box = key.seal_for(member.member_id, member.puk_gen, member.puk_box_public)
        body = {"member": member.member_id, "role": role, "until": until,
                "key": {"gen": team.generation,
                        "boxes": [{"member": member.member_id, "puk_gen": member.puk_gen, "hash": box_hash(box)}]}}
        await self._append_team(clone(team), "team.add", body, {member.member_id: box})

    # -- documents ----------------------------------------------------------------------------

    async def _keys_for(self, team: TeamState) -> list[TeamKey]:
        keys = []
        for gen in range(team.generation, 0, -1):
            if (gen, self.me) in team.boxes:
                keys.append(await self.team_key(team, gen))
        if not keys:
            raise PolicyDenied(f"you hold no key for team {team.name}")
        return keys

    async def _versions(self, team: TeamState, doc: str) -> list[Record]:
        try:
            res = await self.api.get(f"/api/v1/teams/{team.team_id}/docs/{doc}")
        except NotFound:
            return self._check_doc_pin(team, doc, [])
        records = []
        for item in res.get("versions", []):
            try:
                records.append(Record.parse(unb64(item["record"])))
            except VaultError as e:
                raise IntegrityError(f"the server sent a malformed document record: {e}") from e
        view = await self.view()
        parent: str | None = None
        for i, rec in enumerate(records):
            c = rec.core
            if (c.team, c.doc) != (team.team_id, doc):
                raise IntegrityError("the server sent a version of another document or team")
            if c.seq != i + 1 or c.parent != parent:
                raise IntegrityError("document versions are missing, reordered or do not chain")
            self._verify_author(view, team, rec)
            parent = rec.version_id
        return self._check_doc_pin(team, doc, records)

    def _verify_author(self, view: View, team: TeamState, rec: Record) -> None:
        author = view.members.get(rec.core.author)
        device = author.devices.get(rec.core.device) if author else None
        if author is None or device is None:
            raise IntegrityError("document version signed by an unknown member or device")
        if rec.core.author not in team.members:
            raise IntegrityError("document version written by someone who was never in the team")
        rec.verify(device.sign_public)

    def _check_doc_pin(self, team: TeamState, doc: str, records: list[Record]) -> list[Record]:
        pins = self.home.pins()
        key = f"{team.team_id}/{doc}"
        pin = pins.docs.get(key)
        if pin is not None:
            seq, vid = int(pin[0]), str(pin[1])
            if len(records) < seq or records[seq - 1].version_id != vid:
                raise RollbackDetected(
                    f"the server rolled back this document (we saw version {seq} before); tell your Security Team"
                )
        if records:
            pins.docs[key] = [len(records), records[-1].version_id]
            self.home.save_pins(pins)
        return records

    async def find_doc(self, team: TeamState, name: str) -> tuple[str, list[Record]]:
        """The document id for a name (any generation's name key) and its verified versions."""
        keys = await self._keys_for(team)
        for key in keys:
            doc = key.doc_id(name)
            records = await self._versions(team, doc)
            if records:
                return doc, records
        return keys[0].doc_id(name), []

    def _open(self, rec: Record, keys: list[TeamKey]) -> Opened:
        for key in keys:
            if key.gen == rec.core.gen:
                return open_record(rec, key)
        raise PolicyDenied(f"you hold no key for generation {rec.core.gen} of this team")

    async def put(self, team_name: str, path: Path, name: str | None = None,
                  progress: Progress | None = None) -> tuple[int, str]:
        view = await self.view()
        team = view.team_by_name(team_name)
        if not POLICY.team_allows(view.org.roles_of(self.me), team.role_of(self.me, now()), "doc.write"):
            raise PolicyDenied(f"you may not write documents in team {team.name}")
        name = name or path.name
        doc, records = await self.find_doc(team, name)
        keys = await self._keys_for(team)
        current = next(k for k in keys if k.gen == team.generation)
        parent = records[-1].version_id if records else None
        size = path.stat().st_size
        writer = DocWriter(key=current, device=self.device, author=self.me, doc=doc, seq=len(records) + 1,
                           parent=parent, time=now(), name=name, size=size,
                           mime="application/octet-stream", mtime=int(path.stat().st_mtime))
        res = await self.api.upload(f"/api/v1/teams/{team.team_id}/docs/{doc}",
                                    _encrypting_stream(writer, path, progress))
        assert writer.record is not None
        if res.get("vid") != writer.record.version_id:
            raise IntegrityError("the server acknowledged a different version than we sent")
        self._check_doc_pin(team, doc, [*records, writer.record])
        return len(records) + 1, str(res["vid"])

    async def ls(self, team_name: str) -> list[DocVersion]:
        view = await self.view()
        team = view.team_by_name(team_name)
        keys = await self._keys_for(team)
        res = await self.api.get(f"/api/v1/teams/{team.team_id}/docs")
        pins = self.home.pins()
        out = []
        for item in res.get("docs", []):
            rec = Record.parse(unb64(item["record"]))
            if rec.core.team != team.team_id:
                raise IntegrityError("the server listed a document of another team")
            self._verify_author(view, team, rec)
            # A listed head older than (or forked from) the version we pinned is a rollback.
            pin = pins.docs.get(f"{team.team_id}/{rec.core.doc}")
            if pin is not None and (rec.core.seq < int(pin[0]) or
                                    (rec.core.seq == int(pin[0]) and rec.version_id != str(pin[1]))):
                raise RollbackDetected(
                    f"the server rolled back a document (we saw version {pin[0]} before); tell your Security Team"
                )
            out.append(DocVersion(rec, self._open(rec, keys), rec.version_id))
        listed = {f"{team.team_id}/{d.record.core.doc}" for d in out}
        if any(k.startswith(f"{team.team_id}/") and k not in listed for k in pins.docs):
            raise RollbackDetected(
                "the server rolled back a document we saw before (it is no longer listed); tell your Security Team"
            )
        out.sort(key=lambda d: d.opened.name)
        return out

    async def history(self, team_name: str, name: str) -> list[DocVersion]:
        view = await self.view()
        team = view.team_by_name(team_name)
        _, records = await self.find_doc(team, name)
        if not records:
            raise NotFound(f"no document named {name!r} in team {team.name}")
        keys = await self._keys_for(team)
        return [DocVersion(r, self._open(r, keys), r.version_id) for r in records]

    async def get(self, team_name: str, name: str, out: Path, version: int | None = None,
                  progress: Progress | None = None) -> DocVersion:
        view = await self.view()
        team = view.team_by_name(team_name)
        _, records = await self.find_doc(team, name)
        if not records:
            raise NotFound(f"no document named {name!r} in team {team.name}")
        if version is not None and not 1 <= version <= len(records):
            raise NotFound(f"{name!r} has versions 1..{len(records)}, not {version}")
        rec = records[(version or len(records)) - 1]
        opened = self._open(rec, await self._keys_for(team))
        if opened.name != name:
            raise IntegrityError("the document's encrypted name does not match the requested name")
        await self._download(team, rec, opened, out, progress)
        return DocVersion(rec, opened, rec.version_id)

    async def _download(self, team: TeamState, rec: Record, opened: Opened, out: Path,
                        progress: Progress | None) -> None:
        out = out.resolve()
        tmp = out.with_name(f".{out.name}.mvault-{os.getpid()}.part")
        dec = BodyDecryptor(opened)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        ok = False
        loop = asyncio.get_running_loop()
        try:
            async for chunk in self.api.download(f"/api/v1/teams/{team.team_id}/versions/{rec.version_id}/body"):
                pieces = await loop.run_in_executor(None, dec.feed, chunk) if len(chunk) > 65536 else dec.feed(chunk)
                for piece in pieces:
                    _write_all(fd, piece)
                if progress:
                    progress(len(chunk))
            dec.finish()
            os.fsync(fd)
            ok = True
        finally:
            os.close(fd)
            if ok:
                os.replace(tmp, out)
            else:
                tmp.unlink(missing_ok=True)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


async def _encrypting_stream(writer: DocWriter, path: Path, progress: Progress | None) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    yield writer.upload_prefix()
    with path.open("rb") as f:
        while True:
            chunk = f.read(1 << 20)
            if not chunk:
                break
            yield await loop.run_in_executor(None, writer.encrypt, chunk)
            if progress:
                progress(len(chunk))
    yield writer.finish()
