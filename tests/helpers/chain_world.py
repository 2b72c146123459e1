"""Chains built by hand without a server: people (device and PUK), an organization grown link by link, teams,
and ``MWorld`` with every member, organization and team link type; replayed with the shipped policy."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from security.authority import POLICY
from security.policy import TEAM_KINDS
from vault.chains import (
    MemberState,
    OrgState,
    TeamState,
    member_id_for,
    replay_member,
    replay_org,
    replay_team,
    team_id_for,
)
from vault.chains.incidents import last_body, last_signed
from vault.crypto import labels
from vault.crypto import primitives as p
from vault.encoding import decode, encode
from vault.errors import VaultError
from vault.keys import DeviceKeys, PukKeys, short_id
from vault.links import CHAIN_TAGS, Link, invite_public, make_link, parse_link, sign_device_proof
from vault.teamkeys import TeamKey, box_hash, seal_history

T0 = 1_700_000_000


def expect(exc: type[VaultError], fn: Callable[[], object], match: str | None = None) -> VaultError:
    with pytest.raises(VaultError, match=match) as info:
        fn()
    assert type(info.value) is exc, f"expected {exc.__name__}, got {type(info.value).__name__}: {info.value}"
    return info.value


# -- people and chains --------------------------------------------------------------------------


@dataclass
class Person:
    name: str
    device: DeviceKeys
    puk: PukKeys
    chain: list[Link]
    old_puks: dict[int, PukKeys] = field(default_factory=dict)  # the generations a device revocation replaced

    @property
    def id(self) -> str:
        return member_id_for(self.device.sign_public)

    @property
    def root(self) -> bytes:
        return self.chain[0].hash


def member_create_body(name: str, device: DeviceKeys, puk: PukKeys) -> dict[str, Any]:
    mid = member_id_for(device.sign_public)
    box = puk.seal_for_device(mid, device.box_public)
    return {
        "name": name,
        "device": {"id": device.device_id, "sign_pk": device.sign_public, "box_pk": device.box_public,
                   "name": "laptop", "kind": "device"},
        "puk": {"gen": 1, "sign_pk": puk.sign_public, "box_pk": puk.box_public},
        "puk_boxes": [{"device": device.device_id, "hash": box_hash(box)}],
    }


def new_person(name: str) -> Person:
    device, puk = DeviceKeys.generate(), PukKeys.generate(1)
    link = make_link(chain=None, seq=1, prev=None, time=T0, signer=member_id_for(device.sign_public),
                     device=device, type_="member.create", body=member_create_body(name, device, puk))
    return Person(name, device, puk, [link])


def relink(link: Link, *, by: DeviceKeys, invite_secret: bytes | None = None, keep_xsig: bool = False,
           **changes: Any) -> Link:
    """Re-encode a link with ``changes`` and sign it with ``by`` (a forger or an insider)."""
    value = decode(link.raw)
    assert isinstance(value, dict)
    value.update(changes)
    raw = encode(value)
    type_ = value["type"]
    assert isinstance(type_, str)
    sig = by.sign(CHAIN_TAGS[type_.split(".", 1)[0]], raw)
    xsig = link.xsig if keep_xsig else None
    if invite_secret is not None:
        xsig = p.sign(p.sign_keypair(p.kdf(invite_secret, labels.KDF_INVITE_SIGN))[1], labels.SIG_INVITE, raw)
    return parse_link(encode({"link": raw, "sig": sig, "xsig": xsig}))


def with_sig(link: Link, sig: bytes | None = None, xsig: bytes | None = None) -> Link:
    return parse_link(encode({"link": link.raw, "sig": sig if sig is not None else link.sig,
                              "xsig": xsig if xsig is not None else link.xsig}))


@dataclass
class Team:
    team_id: str
    key: TeamKey
    links: list[Link]
    boxes: dict[str, bytes]


class World:
    """A founder, an organization chain, and helpers to grow it."""

    def __init__(self) -> None:
        self.time = T0 + 10
        self.people: dict[str, Person] = {}
        self.teams: list[Team] = []  # every team create_team made (what a cut's ``last`` looks through)
        self.founder = self.person("founder")
        self.founder_secret = p.random_bytes(32)
        create = make_link(
            chain=None, seq=1, prev=None, time=self.time, signer=self.founder.id, device=self.founder.device,
            type_="org.create",
            body={"name": "the-org", "founder_invite": invite_public(self.founder_secret),
                  "member_head": self.founder.root},
            invite_secret=self.founder_secret,
        )
        self.org_links = [create]
        self.org_id = short_id(labels.H_ORG_ID, create.hash)

    def tick(self) -> int:
        self.time += 10
        return self.time

    @property
    def org_seq(self) -> int:
        """The organization chain head new team links are made against."""
        return len(self.org_links)

    def person(self, name: str) -> Person:
        person = new_person(name)
        self.people[person.id] = person
        return person

    def members(self) -> dict[str, MemberState]:
        return {pid: replay_member(person.chain) for pid, person in self.people.items()}

    def org(self) -> OrgState:
        return replay_org(self.org_links, self.members(), POLICY)

    def org_link(self, signer: Person, type_: str, body: dict[str, Any], *, invite_secret: bytes | None = None,
                 time: int | None = None, append: bool = True) -> Link:
        head = self.org_links[-1]
        link = make_link(chain=self.org_id, seq=head.seq + 1, prev=head.hash,
                         time=self.tick() if time is None else time, signer=signer.id, device=signer.device,
                         type_=type_, body=body, invite_secret=invite_secret)
        if append:
            self.org_links.append(link)
        return link

    def invite(self, by: Person, role: str = "member", lifetime: int = 3600) -> bytes:
        secret = p.random_bytes(32)
        self.org_link(by, "org.invite", {"role": role, "invite": invite_public(secret),
                                         "expires": self.time + 10 + lifetime, "note": "bootcamp"})
        return secret

    def join_body(self, person: Person, secret: bytes) -> dict[str, Any]:
        return {"invite": invite_public(secret), "member_head": person.root}

    def join(self, person: Person, secret: bytes) -> Link:
        return self.org_link(person, "org.join", self.join_body(person, secret), invite_secret=secret)

    def admit(self, name: str, role: str = "member", by: Person | None = None) -> Person:
        person = self.person(name)
        self.join(person, self.invite(by or self.founder, role))
        return person

    # -- teams --

    def team_create_body(self, members: list[tuple[Person, str]], *, kind: str = "circle",
                         boxed: list[Person] | None = None, until: dict[str, int] | None = None,
                         org_seq: int | None = None) -> tuple[dict[str, Any], Team]:
        nonce = p.random_bytes(16)
        team_id = team_id_for(self.org_id, nonce)
        key = TeamKey.generate(team_id, 1)
        boxed = [m for m, _ in members] if boxed is None else boxed
        boxes = {m.id: key.seal_for(m.id, 1, m.puk.box_public) for m in boxed}
        body = {
            "org": self.org_id, "org_seq": self.org_seq if org_seq is None else org_seq,
            "kind": kind, "name": f"{kind}-team", "history": True, "nonce": nonce,
            "members": [{"member": m.id, "role": role, "until": (until or {}).get(m.id)} for m, role in members],
            "key": {"gen": 1, "canary": key.canary,
                    "boxes": [{"member": mid, "puk_gen": 1, "hash": box_hash(b)} for mid, b in boxes.items()]},
        }
        return body, Team(team_id, key, [], boxes)

    def create_team(self, creator: Person, members: list[tuple[Person, str]], **kw: Any) -> Team:
        body, team = self.team_create_body(members, **kw)
        team.links.append(make_link(chain=None, seq=1, prev=None, time=self.tick(), signer=creator.id,
                                    device=creator.device, type_="team.create", body=body))
        self.teams.append(team)
        return team

    def team_add_link(self, team: Team, signer: Person, person: Person, role: str = "writer", *,
                      box_for: Person | None = None, boxes: list[dict[str, Any]] | None = None,
                      gen: int = 1, puk_gen: int = 1, until: int | None = None, time: int | None = None,
                      append: bool = True, org_seq: int | None = None, keyless: bool = False) -> Link:
        """A team.add; ``keyless``: the signer holds no key, the member waits for a team.share."""
        box = team.key.seal_for(person.id, 1, person.puk.box_public)
        if boxes is None:
            boxes = [{"member": (box_for or person).id, "puk_gen": puk_gen, "hash": box_hash(box)}]
        head = team.links[-1]
        link = make_link(chain=team.team_id, seq=head.seq + 1, prev=head.hash,
                         time=self.tick() if time is None else time, signer=signer.id, device=signer.device,
                         type_="team.add",
                         body={"member": person.id, "role": role, "until": until,
                               "org_seq": self.org_seq if org_seq is None else org_seq,
                               "key": None if keyless else {"gen": gen, "boxes": boxes}})
        if append:
            team.links.append(link)
            if not keyless:
                team.boxes[person.id] = box
        return link

    def replay_team(self, links: list[Link]) -> TeamState:
        return replay_team(links, self.org(), self.members(), POLICY, TEAM_KINDS)


DAY = 86400


class MWorld(World):
    """``World`` plus devices, PUK rotation, org roles and every team link type."""

    def __init__(self) -> None:
        self.devices: dict[str, dict[str, DeviceKeys]] = {}  # person -> device id -> keys (active ones)
        super().__init__()

    def person(self, name: str) -> Person:
        person = super().person(name)
        self.devices[person.id] = {person.device.device_id: person.device}
        return person

    def org_link(self, signer: Person, type_: str, body: dict[str, Any], *, invite_secret: bytes | None = None,
                 time: int | None = None, append: bool = True, by: DeviceKeys | None = None) -> Link:
        head = self.org_links[-1]
        link = make_link(chain=self.org_id, seq=head.seq + 1, prev=head.hash,
                         time=self.tick() if time is None else time, signer=signer.id, device=by or signer.device,
                         type_=type_, body=body, invite_secret=invite_secret)
        if append:
            self.org_links.append(link)
        return link

    def cut_body(self, person: Person, device: DeviceKeys) -> dict[str, Any]:
        """The body of an ``org.device.cut`` of ``device`` as the cutter's client makes it: ``last``, the last link
        the device signed in the member chain and in every team chain that replays (client/lost.py)."""
        teams = []
        for team in self.teams:
            try:
                teams.append(self.replay_team(team.links))
            except VaultError:
                continue  # a chain a test broke on purpose: no client sees it
        ms = self.members()[person.id]
        return {"member": person.id, "device": device.device_id,
                "last": last_body(last_signed(device.device_id, ms, teams))}

    # -- member chains --

    def member_link(self, person: Person, type_: str, body: dict[str, Any], *, by: DeviceKeys | None = None,
                    time: int | None = None, append: bool = True) -> Link:
        head = person.chain[-1]
        link = make_link(chain=person.id, seq=head.seq + 1, prev=head.hash, time=self.tick() if time is None else time,
                         signer=person.id, device=by or person.device, type_=type_, body=body)
        if append:
            person.chain.append(link)
        return link

    def device_add_body(self, person: Person, new: DeviceKeys, *, name: str = "phone", kind: str = "device",
                        proof: bytes | None = None) -> dict[str, Any]:
        box = person.puk.seal_for_device(person.id, new.box_public)
        return {"device": {"id": new.device_id, "sign_pk": new.sign_public, "box_pk": new.box_public, "name": name,
                           "kind": kind},
                "puk_gen": person.puk.generation, "puk_boxes": [{"device": new.device_id, "hash": box_hash(box)}],
                "proof": sign_device_proof(new, person.id) if proof is None else proof}

    def add_device(self, person: Person, name: str = "phone", *, kind: str = "device", by: DeviceKeys | None = None,
                   time: int | None = None) -> DeviceKeys:
        new = DeviceKeys.generate()
        self.member_link(person, "device.add", self.device_add_body(person, new, name=name, kind=kind), by=by,
                         time=time)
        self.devices[person.id][new.device_id] = new
        return new

    def revoke_body(self, person: Person, target: DeviceKeys, new_puk: PukKeys, *,
                    boxed: list[DeviceKeys] | None = None) -> dict[str, Any]:
        if boxed is None:
            boxed = [d for did, d in self.devices[person.id].items() if did != target.device_id]
        return {"device": target.device_id,
                "puk": {"gen": new_puk.generation, "sign_pk": new_puk.sign_public, "box_pk": new_puk.box_public},
                "puk_boxes": [{"device": d.device_id,
                               "hash": box_hash(new_puk.seal_for_device(person.id, d.box_public))} for d in boxed],
                "prev": new_puk.seal_previous(person.puk)}

    def revoke_device(self, person: Person, target: DeviceKeys, *, by: DeviceKeys | None = None,
                      time: int | None = None) -> PukKeys:
        new_puk = PukKeys.generate(person.puk.generation + 1)
        self.member_link(person, "device.revoke", self.revoke_body(person, target, new_puk), by=by, time=time)
        del self.devices[person.id][target.device_id]
        person.old_puks[person.puk.generation] = person.puk
        person.puk = new_puk
        return new_puk

    # -- organization --

    def role(self, signer: Person, member: Person, role: str, grant: bool = True, until: int | None = None,
             **kw: Any) -> Link:
        return self.org_link(signer, "org.role", {"member": member.id, "role": role, "grant": grant, "until": until},
                             **kw)

    def pending(self, name: str, inviter: Person) -> Person:
        """A member who joined with a plain member's invite: waiting for NCC admission."""
        person = self.person(name)
        self.join(person, self.invite(inviter))
        return person

    # -- teams --

    def team_link(self, team: Team, signer: Person, type_: str, body: dict[str, Any], *, org_seq: int | None = None,
                  by: DeviceKeys | None = None, time: int | None = None, append: bool = True) -> Link:
        head = team.links[-1]
        link = make_link(chain=team.team_id, seq=head.seq + 1, prev=head.hash,
                         time=self.tick() if time is None else time, signer=signer.id, device=by or signer.device,
                         type_=type_, body={**body, "org_seq": self.org_seq if org_seq is None else org_seq})
        if append:
            team.links.append(link)
        return link

    def box_commit(self, key: TeamKey, person: Person) -> tuple[dict[str, Any], bytes]:
        box = key.seal_for(person.id, person.puk.generation, person.puk.box_public)
        return {"member": person.id, "puk_gen": person.puk.generation, "hash": box_hash(box)}, box

    def add(self, team: Team, signer: Person, person: Person, role: str = "writer", *, keyless: bool = False,
            until: int | None = None, **kw: Any) -> Link:
        key = None
        if not keyless:
            commit, box = self.box_commit(team.key, person)
            key = {"gen": team.key.gen, "boxes": [commit]}
            team.boxes[person.id] = box
        return self.team_link(team, signer, "team.add", {"member": person.id, "role": role, "until": until,
                                                         "key": key}, **kw)

    def share(self, team: Team, signer: Person, person: Person, **kw: Any) -> Link:
        commit, box = self.box_commit(team.key, person)
        team.boxes[person.id] = box
        return self.team_link(team, signer, "team.share",
                              {"member": person.id, "key": {"gen": team.key.gen, "boxes": [commit]}}, **kw)

    def new_generation(self, team: Team, members: list[Person], *, history: bool = True,
                       gen: int | None = None) -> tuple[dict[str, Any], TeamKey]:
        """A key generation boxed to ``members``; ``history``: carries the previous seed."""
        key = TeamKey.generate(team.team_id, team.key.gen + 1 if gen is None else gen)
        commits = [self.box_commit(key, m)[0] for m in members]
        body: dict[str, Any] = {"gen": key.gen, "canary": key.canary, "boxes": commits}
        if history:
            body["prev"] = seal_history(key, team.key)
        return body, key

    def rotate(self, team: Team, signer: Person, members: list[Person], **kw: Any) -> Link:
        body, key = self.new_generation(team, members)
        link = self.team_link(team, signer, "team.rotate", {"key": body}, **kw)
        team.key = key
        return link

    def remove(self, team: Team, signer: Person, member: Person, rest: list[Person] | None, **kw: Any) -> Link:
        """team.remove; ``rest``: the members the new generation is boxed to (None: no rotation)."""
        key = None
        new = None
        if rest is not None:
            key, new = self.new_generation(team, rest)
        link = self.team_link(team, signer, "team.remove", {"member": member.id, "key": key}, **kw)
        if new is not None:
            team.key = new
        return link

    def team_role(self, team: Team, signer: Person, member: Person, role: str, until: int | None = None,
                  **kw: Any) -> Link:
        return self.team_link(team, signer, "team.role", {"member": member.id, "role": role, "until": until}, **kw)



def rejected(world: MWorld, links: list[Link], exc: type[Exception], match: str | None = None) -> None:
    """The team chain ``links`` does not replay in ``world``: ``exc`` (whose message contains ``match``)."""
    expect(exc, lambda: world.replay_team(links), match)  # type: ignore[arg-type]
