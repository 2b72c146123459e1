"""Member operations: join, sync and verify chains, teams, and documents.

Everything the server returns is verified here with ``vault`` before use: chains are
replayed from their roots under the shared policy, pinned heads must be extended (never
rolled back), key boxes must match the chain's commitments, document records must be
signed by their author's device and form an unbroken version chain.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from client.api import Api, b64, unb64
from client.audit import LogView, check_witness, designate_first, protocols_of, publish_audit_key, sync_log
from client.home import Config, Home, Pins, Secrets
from security.authority import POLICY
from security.policy import TEAM_KINDS
from vault.acts import ALLOWANCE, Act
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
from vault.envelope import FRAME, BodyDecryptor, DocWriter, Opened, Record, open_record
from vault.errors import (
    ChainError,
    Conflict,
    CryptoError,
    IntegrityError,
    NotFound,
    PolicyDenied,
    RollbackDetected,
    ServerMismatch,
    TransportError,
    VaultError,
)
from vault.invite import InviteCode
from vault.keys import DeviceKeys, PukKeys, device_id_for, key_fingerprint
from vault.links import Link, invite_public, make_link, parse_link, sign_invite_holder
from vault.teamkeys import TeamKey, box_hash, open_history, open_team_box, seal_history

Progress = Callable[[int], None]
INVITE_DAYS = 7
PUT_CONCURRENCY = 16  # uploads in flight in one batch put
PIN_FLUSH = 64  # document pins saved at least this often during a batch put
# Worker threads for streaming crypto and file writes. Our own pool, not the loop's: on any exit
# (errors, Ctrl-C) we wait for submitted work on its concurrent futures before closing the file,
# which asyncio's wrappers do not allow once cancelled.
_POOL = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="mvault-io")
DOWNLOAD_BATCH = 1 << 20  # bytes received before a batch goes to the decrypting thread


def now() -> int:
    """The client's clock. MVAULT_TEST_CLOCK_OFFSET (seconds) moves it, for tests of expiry."""
    return int(time.time() + float(os.environ.get("MVAULT_TEST_CLOCK_OFFSET", "0") or 0))


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
        found = [t for t in self.teams.values() if t.name == name or t.team_id == name]
        if not found:
            raise NotFound(f"no team named {name!r} (or you are not in it)")
        if len(found) > 1:
            raise ChainError(f"several teams are named {name!r} (the server should never allow that); use the team id")
        return found[0]

    def name_of(self, member_id: str) -> str:
        m = self.members.get(member_id)
        return m.name if m else member_id[:8]


@dataclass
class DocVersion:
    record: Record
    opened: Opened | None  # None: a version under a key generation we never held (no-history teams)
    vid: str


def device_body(sign_public: bytes, box_public: bytes, name: str, kind: str = "device") -> dict[str, Any]:
    return {"id": device_id_for(sign_public), "sign_pk": sign_public, "box_pk": box_public, "name": name,
            "kind": kind}


async def join(home: Home, code: str, name: str, passphrase: str, org_name: str = "member-vault") -> Config:
    """Create keys, then found the organization (founder invite) or join it.

    The keystore is written first: a passphrase problem stops us before the server records
    anything, and a server refusal removes the keystore again.
    """
    if home.exists:
        raise VaultError(f"{home.path} already holds an identity; use another MVAULT_HOME")
    check_name(name, "member name")
    invite = InviteCode.parse(code)
    device = DeviceKeys.generate()
    puk = PukKeys.generate(1)
    member_id = member_id_for(device.sign_public)
    puk_box = puk.seal_for_device(member_id, device.box_public)
    home.create_keystore(Secrets(device, {1: puk}), passphrase)
    try:
        async with Api(invite.url, invite.cert_fingerprint) as api:
            info = await api.get("/api/v1/info")
            member_link = make_link(
                chain=None, seq=1, prev=None, time=now(), signer=member_id, device=device, type_="member.create",
                body={"name": name, "device": device_body(device.sign_public, device.box_public, "device-1"),
                      "puk": {"gen": 1, "sign_pk": puk.sign_public, "box_pk": puk.box_public},
                      "puk_boxes": [{"device": device.device_id, "hash": box_hash(puk_box)}]},
            )
            member = MemberState.create(member_link)
            if invite.org_root is None:
                if info.get("org_root"):
                    raise VaultError("this server's organization is already founded; ask a member for an invite")
                org_link = make_link(
                    chain=None, seq=1, prev=None, time=now(), signer=member_id, device=device, type_="org.create",
                    body={"name": org_name, "founder_invite": invite_public(invite.secret),
                          "member_head": member.root},
                    invite_secret=invite.secret,
                )
                res = await api.post("/api/v1/found", {"member_link": b64(member_link.wire),
                                                       "puk_box": b64(puk_box), "org_link": b64(org_link.wire)})
                org_root = str(res["org_root"])
            else:
                if info.get("org_root") != invite.org_root.hex():
                    raise ServerMismatch(
                        "the server's organization does not match the invite (wrong or impostor server)")
                t = now()
                head = await api.post("/api/v1/join/head", {
                    "invite": b64(invite_public(invite.secret)), "time": t,
                    "proof": b64(sign_invite_holder(invite.secret, invite.org_root, t))})
                join_link = make_link(
                    chain=org_id_for(invite.org_root), seq=int(head["org_seq"]) + 1, prev=unb64(head.get("org_head")),
                    time=now(), signer=member_id, device=device, type_="org.join",
                    body={"invite": invite_public(invite.secret), "member_head": member.root},
                    invite_secret=invite.secret,
                )
                await api.post("/api/v1/join", {"member_link": b64(member_link.wire), "puk_box": b64(puk_box),
                                                "join_link": b64(join_link.wire)})
                org_root = invite.org_root.hex()
    except TransportError as e:
        # The server may have recorded us: keep the keys so nothing is lost.
        home.save_config(Config(url=invite.url, cert_fp=invite.cert_fingerprint.hex(), org_root="", member_id=member_id,
                                device_id=device.device_id, name=name))
        raise TransportError(f"{e}; the server did not confirm the join. Your new keys are kept in {home.path}: "
                             "check with the organization before joining again") from e
    except BaseException:
        home.forget()
        raise
    cfg = Config(url=invite.url, cert_fp=invite.cert_fingerprint.hex(), org_root=org_root, member_id=member_id,
                 device_id=device.device_id, name=name)
    home.save_config(cfg)
    return cfg


def member_fingerprint(ms: MemberState) -> bytes:
    return key_fingerprint(ms.member_id, [(d.device_id, d.sign_public) for d in ms.active_devices()],
                           ms.puk_sign_public)


def check_unique_names(names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise VaultError(f"the document name {name!r} is given twice")
        seen.add(name)


class BatchFailed(VaultError):
    """Some files of a batch put failed; the others were stored."""

    code = "batch_failed"

    def __init__(self, stored: list[tuple[str, int, str]], failed: list[tuple[str, BaseException]]) -> None:
        self.stored, self.failed = stored, failed
        why = "; ".join(f"{name}: {_reason(e)}" for name, e in failed)
        super().__init__(f"{len(failed)} of {len(stored) + len(failed)} files were not stored "
                         f"({len(stored)} were): {why}")


def _reason(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e) or type(e).__name__


class Session:
    """A logged-in, verified connection for one command."""

    def __init__(self, home: Home, secrets: Secrets, api: Api) -> None:
        self.home = home
        self.cfg = home.config()
        self.secrets = secrets
        self.api = api
        self._view: View | None = None
        self._box_cache: dict[str, dict[int, bytes]] = {}
        self._key_cache: dict[tuple[str, int], TeamKey] = {}
        self.warnings: list[str] = []
        self.log: LogView | None = None
        # During a batch put: the pins read once, and the document pins not yet merged into the file.
        self._batch_pins: Pins | None = None
        self._batch_docs: dict[str, list[Any]] = {}
        self._batch_flushed = 0.0

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
        # Every session proves the audit log only grew since we last looked (stops on a fork).
        self.log = await sync_log(self, after_login=True)

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
        gone: set[str] = set()
        for tid, info in directory.get("teams", {}).items():
            links = await self._links(f"/api/v1/chains/team/{tid}")
            team = replay_team(links, org, members, POLICY, TEAM_KINDS)
            if team.team_id != tid:
                raise ChainError("server served a team chain under another team's id")
            self._check_pin(pins, tid, links)
            if info.get("removed_at") is not None:
                # We were removed (the chain must end with the link that removed us), or our role ended
                # (the chain is what was signed before the end).
                tm = team.members.get(self.me)
                removed = team.removed_at.get(self.me) == len(links) and tm is None
                lapsed = tm is not None and tm.until is not None and tm.until <= now() and team.time < tm.until
                if not (removed or lapsed):
                    raise ChainError("the server hid a team from us without a valid removal")
                gone.add(tid)
                continue
            teams[tid] = team
        # A pinned team chain that disappeared from our view is a rollback unless we were removed.
        for chain_id in pins.chains:
            if chain_id not in members and chain_id != "org" and chain_id not in teams and chain_id not in gone:
                raise RollbackDetected(f"the server no longer shows chain {chain_id[:12]} that we saw before")
        self._note_key_changes(pins, members)
        self.home.save_pins(pins)
        self._view = View(org, members, teams)
        if self.log is not None:
            hours = protocols_of(self._view).rule("log-integrity").int_("witness_hours")
            if self.log.witness is not None:
                witnessed = check_witness(self, self._view, self.log.witness)
                if now() - witnessed > hours * 3600:
                    self.warnings.append(f"the Security Team last witnessed the audit log "
                                         f"{(now() - witnessed) // 3600} hours ago (the protocols ask for every "
                                         f"{hours} hours)")

        return self._view

    def _note_key_changes(self, pins: Pins, members: dict[str, MemberState]) -> None:
        for mid, ms in members.items():
            fp = member_fingerprint(ms).hex()
            seen = pins.keys.get(mid)
            if seen is not None and seen != fp and mid != self.me:
                if pins.verified.get(mid) is not None:
                    self.warnings.append(f"{ms.name}'s keys changed (devices or member key); they were verified "
                                         f"and are now UNVERIFIED: check with `mvault verify {ms.name}`")
                else:
                    self.warnings.append(f"{ms.name}'s keys changed (devices or member key)")
            pins.keys[mid] = fp

    def verified(self, ms: MemberState) -> str:
        pins = self.home.pins()
        v = pins.verified.get(ms.member_id)
        if v is None:
            return "no"
        return "yes" if v == member_fingerprint(ms).hex() else "changed"

    async def _post_link(self, path: str, link: Link, extra: dict[str, Any]) -> None:
        await self.api.post(path, {"link": b64(link.wire), **extra})
        self._view = None
        self._box_cache.clear()  # a link may have added boxes (rotation, share)

    async def append_org(self, type_: str, body: dict[str, Any]) -> None:
        view = await self.view()
        link = make_link(chain=view.org.org_id, seq=view.org.seq + 1, prev=view.org.head,
                         time=max(now(), view.org.time), signer=self.me, device=self.device, type_=type_, body=body)
        clone(view.org).apply(link, view.members, POLICY)  # fail here, before the server, on a bad request
        await self._post_link("/api/v1/org/links", link, {})

    async def append_member(self, type_: str, body: dict[str, Any], puk_boxes: dict[str, bytes],
                            signer: DeviceKeys | None = None) -> None:
        view = await self.view()
        mine = view.members[self.me]
        device = signer or self.device
        link = make_link(chain=self.me, seq=mine.seq + 1, prev=mine.head, time=max(now(), mine.time),
                         signer=self.me, device=device, type_=type_, body=body)
        clone(mine).apply(link)
        await self._post_link(f"/api/v1/members/{self.me}/links", link,
                              {"puk_boxes": {d: b64(b) for d, b in puk_boxes.items()}})

    async def append_team(self, team: TeamState, type_: str, body: dict[str, Any],
                          boxes: dict[str, bytes] | None = None) -> None:
        view = await self.view()
        link = make_link(chain=team.team_id, seq=team.seq + 1, prev=team.head, time=max(now(), team.time),
                         signer=self.me, device=self.device, type_=type_, body={**body, "org_seq": view.org.seq})
        clone(team).apply(link, view.org, view.members, POLICY)
        await self._post_link(f"/api/v1/teams/{team.team_id}/links", link,
                              {"boxes": {m: b64(b) for m, b in (boxes or {}).items()}})

    # -- keys ------------------------------------------------------------------------------------

    async def puk(self, gen: int) -> PukKeys:
        """One of our PUK generations: from the keystore, a box for this device, or history."""
        if gen in self.secrets.puks:
            return self.secrets.puks[gen]
        view = await self.view()
        mine = view.members[self.me]
        if gen not in mine.puks:
            raise NotFound(f"no member key generation {gen}")
        if gen < mine.puk_gen:
            newer = await self.puk(gen + 1)
            prev = mine.puks[gen + 1].prev
            if prev is None:
                raise NotFound(f"member key generation {gen} has no history")
            puk = newer.open_previous(prev)
            if puk.sign_public != mine.puks[gen].sign_public:
                raise IntegrityError("member key history does not match the member chain")
        else:
            res = await self.api.get("/api/v1/puk-boxes")
            box = next((unb64(i["box"]) for i in res.get("boxes", []) if int(i["puk_gen"]) == gen), None)
            if box is None:
                raise NotFound(f"no key box for your member key generation {gen}")
            if mine.puks[gen].box_hashes.get(self.device.device_id) != box_hash(box):
                raise IntegrityError("the server sent a PUK box that the member chain does not commit to")
            puk = PukKeys.open_device_box(self.device, self.me, gen, box)
            if puk.sign_public != mine.puks[gen].sign_public:
                raise IntegrityError("the PUK box holds a key the member chain does not name")
        self.secrets.puks[gen] = puk
        self.home.save_secrets(self.secrets)
        return puk

    async def _boxes(self, team: TeamState) -> dict[int, bytes]:
        if team.team_id not in self._box_cache:
            res = await self.api.get(f"/api/v1/teams/{team.team_id}/boxes")
            self._box_cache[team.team_id] = {int(i["gen"]): unb64(i["box"]) for i in res.get("boxes", [])}
        return self._box_cache[team.team_id]

    async def team_key(self, team: TeamState, gen: int) -> TeamKey:
        """Generation ``gen`` of a team key: from our box, or down the history chain."""
        cache_key = (team.team_id, gen)
        if cache_key in self._key_cache:
            return self._key_cache[cache_key]
        commitment = team.boxes.get((gen, self.me))
        if commitment is not None:
            box = (await self._boxes(team)).get(gen)
            if box is None:
                raise NotFound(f"the server has no key box for you in team {team.name} generation {gen}")
            puk = await self.puk(commitment.puk_gen)
            key = open_team_box(box, puk, team.team_id, self.me, commitment, team.canaries[gen])
        else:
            newer = [g for (g, m) in team.boxes if m == self.me and g > gen]
            if not newer or gen < 1 or any(g not in team.prev for g in range(gen + 1, min(newer) + 1)):
                raise PolicyDenied(f"you hold no key for team {team.name} generation {gen}")
            key = await self.team_key(team, gen + 1)
            key = open_history(key, team.prev[gen + 1], team.canaries[gen])
        self._key_cache[cache_key] = key
        return key

    def _new_generation(self, team: TeamState, view: View, old: TeamKey | None,
                        leaving: str | None = None) -> tuple[dict[str, Any], dict[str, bytes]]:
        """A fresh key generation boxed to the team's current members (minus ``leaving``).

        Without ``old`` (a re-key of a team none of whose members holds the key) it has a new name
        key and no history, and we (an admin waiting for a share) get a box too, as the chain says."""
        key = TeamKey.generate(team.team_id, team.generation + 1)
        if old is not None:
            key = TeamKey(key.team_id, key.gen, key.seed, old.name_key)
        boxes: dict[str, bytes] = {}
        commits = []
        recipients = POLICY.key_recipients(team, view.org, view.org.seq, now())
        if old is None and team.generation:
            recipients |= {self.me}
        for mid in sorted(recipients - ({leaving} if leaving else set())):
            ms = view.members[mid]
            boxes[mid] = key.seal_for(mid, ms.puk_gen, ms.puk_box_public)
            commits.append({"member": mid, "puk_gen": ms.puk_gen, "hash": box_hash(boxes[mid])})
        body: dict[str, Any] = {"gen": key.gen, "canary": key.canary, "boxes": commits}
        if team.history and old is not None:
            body["prev"] = seal_history(key, old)
        return body, boxes

    async def rotate(self, team: TeamState) -> bool:
        """A new key generation; True when it was a re-key (no member held the key: a fresh key
        without history, which only an admin of the team may make)."""
        view = await self.view()
        rekey = not team.holds_key(self.me, now())
        old = None if rekey else await self.team_key(team, team.generation)
        body, boxes = self._new_generation(team, view, old)
        await self.append_team(team, "team.rotate", {"key": body}, boxes)  # the chain decides who may re-key
        return rekey

    async def maintain(self) -> list[str]:
        """Pending work any key holder's client does on its next run: rotations, key shares."""
        done: list[str] = []
        view = await self.view()
        await self._attest_keystore()
        for team in list(view.teams.values()):
            t = now()
            if not team.holds_key(self.me, t):
                if team.role_of(self.me, t) == "admin" and not team.key_holders(view.org, view.org.seq, t, POLICY):
                    self.warnings.append(f"no member holds the key of team {team.name}: re-key it with "
                                         f"`mvault team rotate {team.name}` (a fresh key: what was written "
                                         "before stays readable only to those who held the old keys)")
                continue
            try:
                if team.rotation_reasons(t, view.members, view.org):
                    await self.rotate(team)
                    done.append(f"rotated the key of team {team.name}")
                    view = await self.view()
                    team = view.teams[team.team_id]
                for mid, adder in sorted(team.pending_share.items()):
                    # Share only if whoever added them may still add members now (the chain judged
                    # the add at the states it named; a key leaves only if the judge agrees today).
                    t = now()
                    adder_ms = view.members.get(adder)
                    devices = [d.device_id for d in adder_ms.active_devices()] if adder_ms else []
                    may_add = bool(devices) and POLICY.entitled(Act(adder, devices[0], t, "team.add"), view.org,
                                                                view.members, team)
                    if not (may_add and mid in POLICY.team_members(team, view.org, view.org.seq, t)):
                        self.warnings.append(f"not sharing team {team.name}'s key with {view.name_of(mid)}: "
                                             f"{view.name_of(adder)} may no longer add members")
                        continue
                    await self._share(team, view.members[mid])
                    done.append(f"shared the key of team {team.name} with {view.name_of(mid)}")
                    view = await self.view()
                    team = view.teams[team.team_id]
            except (Conflict, PolicyDenied) as e:  # someone else did it first, or we may not: not fatal
                self.warnings.append(f"could not finish pending work in team {team.name}: {e}")
        try:
            published = await publish_audit_key(self, await self.view())
        except (Conflict, PolicyDenied, ChainError) as e:
            self.warnings.append(f"could not publish the audit key: {e}")
            published = None
        if published:
            done.append(published)
        return done

    async def _attest_keystore(self) -> None:
        """Once a day, tell the Security Team this device's keystore KDF parameters (rule keystore-kdf)."""
        pins = self.home.pins()
        day = now() // 86400
        if pins.log.get("attested") == day:
            return
        params = self.home.keystore_params()
        await self.api.post("/api/v1/audit/attest", {"kind": "keystore", "time_cost": params.time_cost,
                                                     "memory_kib": params.memory_kib,
                                                     "parallelism": params.parallelism})
        pins = self.home.pins()
        pins.log["attested"] = day
        self.home.save_pins(pins)

    async def _share(self, team: TeamState, member: MemberState) -> None:
        key = await self.team_key(team, team.generation)
        box = key.seal_for(member.member_id, member.puk_gen, member.puk_box_public, key.name_key)
        await self.append_team(team, "team.share", {
            "member": member.member_id,
            "key": {"gen": team.generation,
                    "boxes": [{"member": member.member_id, "puk_gen": member.puk_gen, "hash": box_hash(box)}]},
        }, {member.member_id: box})

    # -- invites and teams ----------------------------------------------------------------------

    async def invite(self, role: str, note: str, days: int = INVITE_DAYS) -> str:
        secret = os.urandom(32)
        await self.append_org("org.invite", {"invite": invite_public(secret), "role": role, "note": note,
                                             "expires": now() + days * 86400})
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
            body={"org": view.org.org_id, "org_seq": view.org.seq, "nonce": nonce, "name": name, "kind": kind,
                  "history": history, "members": [{"member": self.me, "role": "admin", "until": None}],
                  "key": {"gen": 1, "canary": key.canary,
                          "boxes": [{"member": self.me, "puk_gen": mine.puk_gen, "hash": box_hash(box)}]}},
        )
        TeamState.create(link, view.org, view.members, POLICY, TEAM_KINDS)
        await self.api.post("/api/v1/teams", {"link": b64(link.wire), "boxes": {self.me: b64(box)}})
        view = await self.view(refresh=True)
        if kind == "security" and await designate_first(self, view.teams[team_id]):
            self.warnings.append(f"designated team {name} as the audit log's security team (you are the only NCC "
                                 "member; a change of designation will need a second one once there is one)")
            view = await self.view()
        return view.teams[team_id]

    async def add_member(self, team_name: str, member_name: str, role: str, until: int | None) -> bool:
        """Add a member; returns False when the key share waits for a key holder."""
        view = await self.view()
        team = view.team_by_name(team_name)
        member = view.member_by_name(member_name)
        body: dict[str, Any] = {"member": member.member_id, "role": role, "until": until, "key": None}
        if not team.holds_key(self.me, now()):
            await self.append_team(team, "team.add", body)
            return False
        key = await self.team_key(team, team.generation)
        box = key.seal_for(member.member_id, member.puk_gen, member.puk_box_public, key.name_key)
        body["key"] = {"gen": team.generation,
                       "boxes": [{"member": member.member_id, "puk_gen": member.puk_gen, "hash": box_hash(box)}]}
        await self.append_team(team, "team.add", body, {member.member_id: box})
        return True

    # -- documents ----------------------------------------------------------------------------

    async def _keys_for(self, team: TeamState) -> list[TeamKey]:
        """Every generation we can open, newest first (history reaches back where allowed)."""
        keys = []
        for gen in range(team.generation, 0, -1):
            try:
                keys.append(await self.team_key(team, gen))
            except PolicyDenied:
                continue
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
            if i and (c.team_seq < records[i - 1].core.team_seq or c.gen < records[i - 1].core.gen):
                raise IntegrityError("a document version goes back to an older team state or key")
            if i and c.time < records[i - 1].core.time - ALLOWANCE:
                raise IntegrityError("a document version is dated before the version it follows")
            self._verify_author(view, team, rec)
            parent = rec.version_id
        return self._check_doc_pin(team, doc, records)

    def _verify_author(self, view: View, team: TeamState, rec: Record) -> None:
        author = view.members.get(rec.core.author)
        if author is None:
            raise IntegrityError("document version signed by an unknown member")
        try:
            device = author.device_at(rec.core.device, rec.core.time)
        except ChainError as e:
            raise IntegrityError("document version signed by a device that was not active then") from e
        rec.verify(device.sign_public)
        c = rec.core
        try:
            POLICY.judge(Act(c.author, c.device, c.time, "doc.write", team_seq=c.team_seq, gen=c.gen), view.org,
                         view.members, team)
        except (PolicyDenied, ChainError) as e:
            raise IntegrityError(f"document version refused: {e}") from e

    def _check_doc_pin(self, team: TeamState, doc: str, records: list[Record]) -> list[Record]:
        pins = self._batch_pins if self._batch_pins is not None else self.home.pins()
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
            if self._batch_pins is None:
                self.home.save_pins(pins)
            else:
                self._batch_docs[key] = pins.docs[key]
                if len(self._batch_docs) >= PIN_FLUSH or time.monotonic() - self._batch_flushed >= 1.0:
                    self._flush_batch_pins()
        return records

    @contextlib.contextmanager
    def _pin_batch(self) -> Iterator[None]:
        """Document pins of many puts kept in memory and merged into the file now and then and at
        the end (``_flush_batch_pins``), instead of the file being rewritten after every put."""
        if self._batch_pins is not None:
            raise VaultError("one batch put at a time per session")
        self._batch_pins, self._batch_docs, self._batch_flushed = self.home.pins(), {}, time.monotonic()
        try:
            yield
        finally:
            self._flush_batch_pins()
            self._batch_pins = None

    def _flush_batch_pins(self) -> None:
        """Merge the batch's new document pins into the file (re-read: the furthest version of
        each document wins, so pins others saved meanwhile stay). Also done every second or
        PIN_FLUSH versions during a batch, so a killed batch leaves its acknowledged versions pinned."""
        batch, self._batch_docs, self._batch_flushed = self._batch_docs, {}, time.monotonic()
        if not batch:
            return
        pins = self.home.pins()
        for key, value in batch.items():
            old = pins.docs.get(key)
            if old is None or int(old[0]) < int(value[0]):
                pins.docs[key] = value
        self.home.save_pins(pins)

    async def find_doc(self, team: TeamState, name: str) -> tuple[str, list[Record]]:
        """The document id for a name (the team's name key, the same in every generation)."""
        keys = await self._keys_for(team)
        doc = keys[0].doc_id(name)
        return doc, await self._versions(team, doc)

    def _open(self, rec: Record, keys: list[TeamKey]) -> Opened:
        for key in keys:
            if key.gen == rec.core.gen:
                return open_record(rec, key)
        raise PolicyDenied(f"you hold no key for generation {rec.core.gen} of this team")

    async def put(self, team_name: str, path: Path, name: str | None = None,
                  progress: Progress | None = None) -> tuple[int, str]:
        [(_, seq, vid)] = await self.put_many(team_name, [(path, name or path.name)], progress)
        return seq, vid

    async def put_many(self, team_name: str, items: list[tuple[Path, str]], progress: Progress | None = None,
                       concurrency: int = PUT_CONCURRENCY) -> list[tuple[str, int, str]]:
        """Encrypt and upload files as new documents or versions: (name, version, vid) for each.

        One view of the team and one listing for the whole batch; up to ``concurrency`` uploads in
        flight. Every file is still its own signed version, checked against the pins like a single
        put. If some fail, the others are still stored, and a ``BatchFailed`` names both sides.
        """
        check_unique_names([name for _, name in items])
        view = await self.view()
        team = view.team_by_name(team_name)
        if not POLICY.entitled(Act(self.me, self.device.device_id, now(), "doc.write"), view.org, view.members, team):
            raise PolicyDenied(f"you may not write documents in team {team.name}")
        if team.rotation_reasons(now(), view.members, view.org):
            raise Conflict(f"team {team.name} needs a key rotation first and you could not do it")
        keys = await self._keys_for(team)
        current = await self.team_key(team, team.generation)
        with self._pin_batch():
            return await self._put_all(team, keys, current, items, progress, concurrency)

    async def _put_all(self, team: TeamState, keys: list[TeamKey], current: TeamKey, items: list[tuple[Path, str]],
                       progress: Progress | None, concurrency: int) -> list[tuple[str, int, str]]:
        assert self._batch_pins is not None
        known: set[str] = set(self._batch_pins.docs)
        if len(items) > 1:  # which names exist already: one listing instead of a request per file
            res = await self.api.get(f"/api/v1/teams/{team.team_id}/docs")
            for item in res.get("docs", []):
                try:
                    known.add(f"{team.team_id}/{Record.parse(unb64(item['record'])).core.doc}")
                except (VaultError, KeyError, TypeError) as e:
                    raise IntegrityError(f"the server listed a malformed document record: {e}") from e
        gate = asyncio.Semaphore(concurrency)
        alarm: list[VaultError] = []  # a server caught lying: no more uploads to it in this batch

        async def one(path: Path, name: str) -> tuple[str, int, str]:
            async with gate:
                if alarm:
                    raise VaultError("not attempted after the error above")
                doc = keys[0].doc_id(name)
                try:
                    records = await self._versions(team, doc) if len(items) == 1 or f"{team.team_id}/{doc}" in known \
                        else []
                    return await self._put_version(team, current, doc, records, path, name, progress)
                except (RollbackDetected, CryptoError, ServerMismatch) as e:
                    alarm.append(e)
                    raise

        results = await asyncio.gather(*(one(path, name) for path, name in items), return_exceptions=True)
        failed = [(name, r) for (_, name), r in zip(items, results, strict=True) if isinstance(r, BaseException)]
        stored = [r for r in results if not isinstance(r, BaseException)]
        if alarm and len(items) > 1:  # the security error itself, with its own code, not a batch failure
            raise type(alarm[0])(f"{alarm[0]} ({len(stored)} of {len(items)} files were stored before it)")
        if failed:
            if len(items) == 1:
                raise failed[0][1]
            raise BatchFailed(stored, failed)
        return stored

    async def _put_version(self, team: TeamState, current: TeamKey, doc: str, records: list[Record], path: Path,
                           name: str, progress: Progress | None) -> tuple[str, int, str]:
        parent = records[-1].version_id if records else None
        # Opened before the request: a file we cannot read is its own error, not a broken upload.
        with path.open("rb") as f:
            st = os.fstat(f.fileno())
            writer = DocWriter(key=current, team_seq=team.seq, device=self.device, author=self.me, doc=doc,
                               seq=len(records) + 1, parent=parent, time=now(), name=name, size=st.st_size,
                               mime="application/octet-stream", mtime=int(st.st_mtime))
            res = await self.api.upload(f"/api/v1/teams/{team.team_id}/docs/{doc}",
                                        _encrypting_stream(writer, f, progress))
        assert writer.record is not None
        if res.get("vid") != writer.record.version_id:
            raise IntegrityError("the server acknowledged a different version than we sent")
        self._check_doc_pin(team, doc, [*records, writer.record])
        return name, len(records) + 1, str(res["vid"])

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
            try:
                opened: Opened | None = self._open(rec, keys)
            except PolicyDenied:
                opened = None
            out.append(DocVersion(rec, opened, rec.version_id))
        listed = {f"{team.team_id}/{d.record.core.doc}" for d in out}
        if any(k.startswith(f"{team.team_id}/") and k not in listed for k in pins.docs):
            raise RollbackDetected(
                "the server rolled back a document we saw before (it is no longer listed); tell your Security Team"
            )
        out.sort(key=lambda d: d.opened.name if d.opened else "\uffff" + d.vid)
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
        if out.is_dir():
            raise VaultError(f"{out} is a directory; give a file name with -o")
        fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".mvault-part", dir=out.parent)
        tmp = Path(tmp_name)
        dec = BodyDecryptor(opened)
        ok = False

        def write_pieces(pieces: list[bytes]) -> None:
            for piece in pieces:
                _write_all(fd, piece)

        def decrypt(chunks: list[bytes]) -> list[bytes]:
            return [piece for chunk in chunks for piece in dec.feed(chunk)]

        # A three-stage pipeline in constant memory: the event loop receives batch k+2 while one
        # worker thread decrypts batch k+1 and another writes batch k (libsodium, hashing and
        # write() release the GIL). Each stage keeps its order: one call in flight per stage.
        decrypting: concurrent.futures.Future[list[bytes]] | None = None
        writing: concurrent.futures.Future[None] | None = None

        async def hand_on(data: list[bytes] | None) -> None:
            nonlocal decrypting, writing
            if decrypting is not None:
                pieces = await asyncio.wrap_future(decrypting)
                decrypting = None
                if writing is not None:
                    await asyncio.wrap_future(writing)
                writing = _POOL.submit(write_pieces, pieces)
            if data is not None:
                decrypting = _POOL.submit(decrypt, data)

        batch: list[bytes] = []
        batched = 0
        try:
            async for chunk in self.api.download(f"/api/v1/teams/{team.team_id}/versions/{rec.version_id}/body"):
                batch.append(chunk)
                batched += len(chunk)
                if progress:
                    progress(len(chunk))
                if batched >= DOWNLOAD_BATCH:
                    data, batch, batched = batch, [], 0
                    await hand_on(data)
            if batch:
                await hand_on(batch)
            await hand_on(None)  # the last decrypted batch goes to the writer
            if writing is not None:
                await asyncio.wrap_future(writing)
                writing = None
            dec.finish()
            os.fsync(fd)
            ok = True
        finally:
            try:  # interrupted (error, Ctrl-C): the workers finish with fd before it closes
                running: list[concurrent.futures.Future[Any]] = [f for f in (decrypting, writing) if f is not None]
                concurrent.futures.wait(running)
            finally:
                os.close(fd)
                try:
                    if ok:
                        os.replace(tmp, out)
                finally:
                    tmp.unlink(missing_ok=True)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


async def _encrypting_stream(writer: DocWriter, f: BinaryIO, progress: Progress | None) -> AsyncIterator[bytes]:
    """The upload body. A worker thread reads and encrypts the next MiB while the event loop sends
    this one (at most two in memory); small files are done inline (a thread trip costs more)."""
    yield writer.upload_prefix()

    def next_piece() -> tuple[int, bytes]:
        chunk = f.read(FRAME)
        return len(chunk), writer.encrypt(chunk) if chunk else b""

    if writer.size < FRAME:
        n, data = next_piece()  # reads more than its size: a file that grew is refused
        if data:
            yield data
        if progress and n:
            progress(n)
    else:
        pending = _POOL.submit(next_piece)
        try:
            while True:
                n, data = await asyncio.wrap_future(pending)
                if not n:
                    break
                pending = _POOL.submit(next_piece)
                yield data
                if progress:
                    progress(n)
        finally:
            # Never leave a worker reading a closed file or encrypting behind finish().
            concurrent.futures.wait([pending])
    yield writer.finish()
