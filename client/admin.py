"""Organization, team and device management (issue 3): thin wrappers that build links.

Every operation builds a link, checks it locally against the verified state with the
shared replay code (so a bad request fails before the server sees it), and posts it.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from client import coalitionkeys, hostkey
from client.api import Api
from client.audit.keys import designate_first
from client.client import Client, device_body
from client.clock import SYSTEM, Clock
from client.home import Config, Home, Secrets
from client.names import Names
from client.records import record_verification
from client.session import log_in
from client.view import member_fingerprint
from security.authority import POLICY
from security.policy import TEAM_KINDS
from vault import recovery
from vault.acts import Act
from vault.chains import Invite, MemberState, OrgState, TeamState, check_name, role_act, team_id_for
from vault.chains.coalition import expel_statements
from vault.chains.coalitionspace import approval_needed
from vault.encoding import Fields, Value, decode, encode
from vault.errors import (
    AuthError,
    DeviceRevoked,
    InviteError,
    NotFound,
    PolicyDenied,
    ServerMismatch,
    VaultError,
)
from vault.invite import DEVICE_PREFIX, RECOVERY_PREFIX, InviteCode, MemberCode
from vault.keys import (
    DeviceKeys,
    device_id_for,
    link_slot,
    open_link_payload,
    safety_number,
    seal_link_payload,
)
from vault.links import invite_public, make_link, sign_device_proof
from vault.pin import Pin
from vault.recovery import RecoveryCode
from vault.teamkeys import TeamKey, box_hash
from vault.wire.schemas import Info, Ok, SlotOffer, SlotOpened, SlotPayload, TeamLinkRequest, TeamSeq

INVITE_DAYS = 7
LINK_WAIT_SECONDS = 600.0
POLL_SECONDS = 0.5



# -- invites and teams ---------------------------------------------------------------------------


async def invite(s: Client, role: str, note: str, days: int = INVITE_DAYS) -> str:
    secret = os.urandom(32)
    await s.chains.append_org("org.invite", {"invite": invite_public(secret), "role": role, "note": note,
                                             "expires": s.session.now() + days * 86400})
    cfg = s.session.cfg
    return InviteCode(cfg.url, cfg.pin.value, bytes.fromhex(cfg.org_root), secret, cfg.pin_kind).encode()


INVITE_ID_CHARS = 12  # the id `invite ls` prints: this many hex digits of the invite's public key
MIN_INVITE_PREFIX = 6
MAX_SEQ_DIGITS = 7  # an invite named by up to this many digits is named by its org.invite link's seq


def invite_state(inv: Invite, now: int) -> str:
    """"open", "used", "revoked" or "expired" (an invite of a member removed since expired at the removal)."""
    if inv.used_by is not None:
        return "used"
    if inv.revoked_by is not None:
        return "revoked"
    return "expired" if now >= inv.expires else "open"


async def invites(s: Client, every: bool = False) -> list[dict[str, Any]]:
    """The organization's invites from its chain, oldest first: open ones (``every``: all of them)."""
    view = await s.chains.view()
    now = s.session.now()
    rows = []
    for inv in sorted(view.org.invites.values(), key=lambda i: i.seq):
        state = invite_state(inv, now)
        if state != "open" and not every:
            continue
        rows.append({
            "id": inv.public.hex()[:INVITE_ID_CHARS], "invite": inv.public.hex(), "seq": inv.seq,
            "created": inv.created, "by": inv.by, "by_name": view.name_of(inv.by), "role": inv.role,
            "note": inv.note, "expires": inv.expires, "state": state,
            "used_by": inv.used_by, "used_by_name": view.name_of(inv.used_by) if inv.used_by else None,
            "revoked_by": inv.revoked_by,
            "revoked_by_name": view.name_of(inv.revoked_by) if inv.revoked_by else None,
            "revoked_at": inv.revoked_at,
        })
    return rows


def find_invite(org: OrgState, ref: str) -> Invite:
    """The invite ``ref`` names: its org.invite link's seq (up to 7 digits) or a prefix of at least 6 hex
    digits of its public key, as ``invite ls`` prints them."""
    text = ref.strip().lower().removeprefix("#")
    if text.isdigit() and len(text) <= MAX_SEQ_DIGITS:
        found = [i for i in org.invites.values() if i.seq == int(text)]
    elif len(text) >= MIN_INVITE_PREFIX and all(c in "0123456789abcdef" for c in text):
        found = [i for i in org.invites.values() if i.public.hex().startswith(text)]
    else:
        raise VaultError(f"name an invite by the id `mvault invite ls` prints (at least {MIN_INVITE_PREFIX} hex "
                         "digits) or by its seq")
    if not found:
        raise NotFound(f"no invite {ref!r} (see `mvault invite ls --all`)")
    if len(found) > 1:
        raise VaultError(f"{ref!r} names {len(found)} invites: give more digits of the id")
    return found[0]


async def revoke_invite(s: Client, ref: str) -> dict[str, Any]:
    """Withdraw an open invite (signed ``org.invite.revoke``): a join with its code is refused afterwards."""
    view = await s.chains.view()
    inv = find_invite(view.org, ref)
    ident = inv.public.hex()[:INVITE_ID_CHARS]
    state = invite_state(inv, s.session.now())
    if state == "used":
        raise VaultError(f"invite {ident} was used by {view.name_of(inv.used_by or '')}: to undo that, "
                         "remove the member")
    if state != "open":
        raise VaultError(f"invite {ident} is {state} already")
    action = f"org.invite.{inv.role}" if inv.by == s.session.me else f"org.invite.revoke.{inv.role}"
    if not POLICY.entitled(Act(s.session.me, s.session.device.device_id, s.session.now(), action),
                           view.org, view.members, None):
        raise PolicyDenied(f"you may not revoke invite {ident} by {view.name_of(inv.by)}: only its author "
                           "(while they may invite) or an NCC member may")
    await s.chains.append_org("org.invite.revoke", {"invite": inv.public})
    return {"id": ident, "invite": inv.public.hex(), "seq": inv.seq, "by": inv.by, "by_name": view.name_of(inv.by),
            "role": inv.role, "note": inv.note, "state": "revoked"}


async def create_team(s: Client, name: str, kind: str, history: bool = True,
                      host_key: bytes | None = None) -> TeamState:
    """``host_key``: a coalition space's host coalition key (client/coalition.py ``create``)."""
    view = await s.chains.view()
    nonce = os.urandom(16)
    team_id = team_id_for(view.org.org_id, nonce)
    key = TeamKey.generate(team_id, 1)
    mine = view.members[s.session.me]
    box = key.seal_for(s.session.me, mine.puk_gen, mine.puk_box_public)
    link = make_link(
        chain=None, seq=1, prev=None, time=s.session.now(), signer=s.session.me, device=s.session.device,
        type_="team.create",
        body={"org": view.org.org_id, "org_seq": view.org.seq, "nonce": nonce, "name": name, "kind": kind,
              "history": history, "members": [{"member": s.session.me, "role": "admin", "until": None}],
              "key": {"gen": 1, "canary": key.canary,
                      "boxes": [{"member": s.session.me, "puk_gen": mine.puk_gen, "hash": box_hash(box)}]},
              **({} if host_key is None else {"host_key": host_key})},
    )
    TeamState.create(link, view.org, view.members, POLICY, TEAM_KINDS)
    await s.session.api.post("/api/v1/teams", TeamLinkRequest(link.wire, {s.session.me: box}), TeamSeq)
    view = await s.chains.view(refresh=True)
    if kind == "security" and await designate_first(s, view.teams[team_id]):
        s.session.warnings.append(f"designated team {name} as the audit log's security team (you are the only NCC "
                                  "member; a change of designation will need a second one once there is one)")
        view = await s.chains.view()
    return view.teams[team_id]


async def add_member(s: Client, team_name: str, member_name: str, role: str, until: int | None,
                     approval: dict[str, Value] | None = None) -> bool:
    """Add a member; returns False when the key share waits for a key holder. In a coalition space with a host
    key, the host's ``coalition.admit``: ``approval`` (a guest code's), else signed here with the key this device
    holds."""
    view = await s.chains.view()
    team = view.team_by_name(team_name)
    member = view.member_by_name(member_name)
    body: dict[str, Any] = {"member": member.member_id, "role": role, "until": until, "key": None}
    if team.host_key is not None:  # a coalition space: the host's approval (client/hostkey.py)
        team = await hostkey.carry_rekeys(s, team)  # the host's key rekeyed in its chain: the space follows first
        body["approval"] = approval or await hostkey.approval(s, team, member.member_id, role, until)
    if not team.holds_key(s.session.me, s.session.now()):
        await s.chains.append_team(team, "team.add", body)
        return False
    key = await s.keys.team_key(team, team.generation)
    box = key.seal_for(member.member_id, member.puk_gen, member.puk_box_public, key.name_key)
    body["key"] = {"gen": team.generation,
                   "boxes": [{"member": member.member_id, "puk_gen": member.puk_gen, "hash": box_hash(box)}]}
    await s.chains.append_team(team, "team.add", body, {member.member_id: box})
    return True


# -- organization -------------------------------------------------------------------------------


async def admit(s: Client, name: str) -> MemberState:
    view = await s.chains.view()
    m = view.member_by_name(name)
    await s.chains.append_org("org.admit", {"member": m.member_id})
    return m


async def set_org_role(s: Client, name: str, role: str, grant: bool, until: int | None) -> tuple[MemberState, bool]:
    """(the member, True when it took effect; False: proposed, a second NCC member signs the same)."""
    view = await s.chains.view()
    m = view.member_by_name(name)
    await s.chains.append_org("org.role", {"member": m.member_id, "role": role, "grant": grant, "until": until})
    done = role_act(m.member_id, role, grant, until) not in (await s.chains.view()).org.role_proposals
    if done and grant and role == "ncc":
        await coalitionkeys.share_missing(s)  # the new NCC member gets the coalition keys this device holds
    return m, done


async def members(s: Client) -> list[dict[str, Any]]:
    view = await s.chains.view()
    t = s.session.now()
    rows = []
    for mid, om in sorted(view.org.members.items(), key=lambda kv: view.name_of(kv[0])):
        ms = view.members[mid]
        rows.append({
            "member": mid, "name": ms.name, "status": om.status,
            "roles": sorted(view.org.roles_of(mid, t)),
            "role_terms": {r: u for r, u in om.role_terms.items() if u is not None},
            "devices": len(ms.active_devices()), "puk_gen": ms.puk_gen,
            "verified": "self" if mid == s.session.me else s.chains.verified(ms),
            "teams": sorted(tm.name for tm in view.teams.values() if mid in tm.members and view.org.admitted(mid)),
        })
    return rows


async def verify(s: Client, name: str, confirm: bool) -> dict[str, Any]:
    view = await s.chains.view()
    them = view.member_by_name(name)
    if them.member_id == s.session.me:
        raise VaultError("that is you; verify someone else")
    me = view.members[s.session.me]
    number = safety_number((s.session.me, member_fingerprint(me)), (them.member_id, member_fingerprint(them)))
    if confirm:
        pins = s.session.home.pins()
        pins.verified[them.member_id] = member_fingerprint(them).hex()
        s.session.home.save_pins(pins)
        # Signed, in the organization chain: every client (the Security Team's report among them) sees that,
        # and when, keys were checked in person (rule key-verification); the server cannot make one up.
        await record_verification(s, them)
    return {"member": them.member_id, "name": them.name, "safety_number": number, "verified": s.chains.verified(them)}


async def remove_member(s: Client, name: str, reason: str) -> tuple[MemberState, bool]:
    """NCC: a departure (the member loses every role, login and team); False: only proposed (two people
    remove an NCC or Security Team member when there are two NCC members besides them)."""
    view = await s.chains.view()
    m = view.member_by_name(name)
    body: dict[str, Any] = {"member": m.member_id, "reason": reason}
    expels = expel_statements(view.org.coalitions, await coalitionkeys.seeds(s), view.org.root, m.member_id,
                              s.session.now())
    if expels:  # the member's removal from every coalition space this organization is in (client/expulsions.py)
        body["coalition"] = expels
    await s.chains.append_org("org.remove", body)
    done = ("org.remove", m.member_id) not in (await s.chains.view()).org.role_proposals
    if done:  # the host's side: its removal carried to the spaces it hosts with its own key (client/hostkey.py)
        s.session.warnings.extend(
            f"{m.name} is still in coalition space {space} (for its guests and ours): the next command of a member "
            "of it who holds its key removes them" for space in await hostkey.carry_removal(
                s, m.member_id))
    return m, done


# -- teams -----------------------------------------------------------------------------------------


async def remove_from_team(s: Client, team_name: str, member_name: str, link_type: str = "team.remove") -> bool:
    """Remove a member; True when the key was rotated in the same link. ``link_type``: ``coalition.remove`` for the
    host's side of a removal from a coalition space (client/coalition.py)."""
    view = await s.chains.view()
    team = view.team_by_name(team_name)
    target = view.member_by_name(member_name)
    if target.member_id not in team.members:
        raise NotFound(f"{target.name} is not in team {team.name}")
    if target.member_id not in team.guests and not view.org.admitted(target.member_id):
        raise VaultError(f"{target.name} was removed from the organization and is out of every team already")
    if target.member_id == s.session.me:
        raise VaultError("to leave a team yourself use `mvault leave TEAM`")
    body: dict[str, Any] = {"member": target.member_id, "key": None}
    boxes: dict[str, bytes] = {}
    rotated = team.holds_key(s.session.me, s.session.now())
    if rotated:
        old = await s.keys.team_key(team, team.generation)
        body["key"], boxes = s.keys.new_generation(team, view, old, leaving=target.member_id)
    await s.chains.append_team(team, link_type, body, boxes)
    return rotated


async def set_team_role(s: Client, team_name: str, member_name: str, role: str, until: int | None) -> None:
    view = await s.chains.view()
    team = view.team_by_name(team_name)
    target = view.member_by_name(member_name)
    body: dict[str, Any] = {"member": target.member_id, "role": role, "until": until}
    team = await hostkey.carry_rekeys(s, team)  # a host rekey not carried yet: the space follows first
    tm = team.members.get(target.member_id)
    if team.kind == "coalition" and tm is not None and approval_needed(team, target.member_id, role, until, tm.role):
        if target.member_id in team.guests:  # past what the ally approved: the ally's NCC approves again
            raise VaultError("that role or end goes past what the guest's organization approved for this space: "
                             "its NCC approves again (remove them and add them with a new approval)")
        body["approval"] = await hostkey.approval(s, team, target.member_id, role, until)  # the host's act too
    await s.chains.append_team(team, "team.role", body)


async def leave(s: Client, team_name: str) -> None:
    view = await s.chains.view()
    team = view.team_by_name(team_name)
    if s.session.me not in team.members:
        raise NotFound(f"you are not in team {team.name}")
    await s.chains.append_team(team, "team.leave", {})


async def team_info(s: Client, team_name: str) -> dict[str, Any]:
    view = await s.chains.view()
    t = view.team_by_name(team_name)
    names = Names(view)
    pending = [names.text(r) for r in t.rotation_reasons(s.session.now(), view.members, view.org)]
    pending += [f"{view.name_of(m)} waits for a key holder to share the key" for m in sorted(t.pending_share)]
    if not t.key_holders(view.org, view.org.seq, s.session.now(), POLICY):
        pending.append("no member holds the key: one of the team's admins must re-key it (mvault team rotate)")
    return {"team": t.team_id, "name": t.name, "kind": t.kind, "generation": t.generation, "history": t.history,
            "pending": pending, "rekeyed": {str(g): view.name_of(m) for g, m in sorted(t.rekeyed.items())},
            "members": [{"member": m.member_id, "name": view.name_of(m.member_id), "role": m.role, "until": m.until,
                         "active": m.active(s.session.now()), "has_key": (t.generation, m.member_id) in t.boxes}
                        for m in sorted(t.members.values(), key=lambda m: view.name_of(m.member_id))
                        if view.org.admitted(m.member_id)]}


# -- devices ---------------------------------------------------------------------------------------


def _device_name(ms: MemberState, wanted: str | None, stem: str) -> str:
    if wanted:
        return check_name(wanted, "device name")
    used = {d.name for d in ms.devices.values()}
    n = 1
    while f"{stem}-{n}" in used:
        n += 1
    return f"{stem}-{n}"


async def _add_device(s: Client, sign_public: bytes, box_public: bytes, name: str, kind: str,
                      proof: bytes) -> None:
    view = await s.chains.view()
    mine = view.members[s.session.me]
    puk = await s.keys.puk(mine.puk_gen)
    box = puk.seal_for_device(s.session.me, box_public)
    device_id = device_id_for(sign_public)
    await s.chains.append_member("device.add", {
        "device": device_body(sign_public, box_public, name, kind), "puk_gen": mine.puk_gen,
        "puk_boxes": [{"device": device_id, "hash": box_hash(box)}], "proof": proof,
    }, {device_id: box})


async def device_add(s: Client, name: str | None, show_code: Callable[[str], None],
                     wait: float = LINK_WAIT_SECONDS) -> str:
    """Open a one-time mailbox, show its code, wait for the new device, then add it."""
    secret = os.urandom(32)
    slot = link_slot(secret)
    await s.session.api.post(f"/api/v1/device-links/{slot}", None, SlotOpened)
    cfg = s.session.cfg
    show_code(MemberCode(DEVICE_PREFIX, cfg.url, cfg.pin.value, bytes.fromhex(cfg.org_root), s.session.me, secret,
                         cfg.pin_kind).encode())
    deadline = time.monotonic() + wait
    while True:
        payload = (await s.session.api.get(f"/api/v1/device-links/{slot}", SlotPayload)).payload
        if payload:
            break
        if time.monotonic() > deadline:
            raise VaultError("no device used the code in time; run `mvault device add` again")
        await asyncio.sleep(POLL_SECONDS)
    f = Fields(decode(open_link_payload(secret, payload)), "device offer",
               {"name", "sign_pk", "box_pk", "proof"})
    view = await s.chains.view()
    name = _device_name(view.members[s.session.me], name or f.str_("name", 64) or None, "device")
    await _add_device(s, f.bytes_("sign_pk", 32), f.bytes_("box_pk", 32), name, "device", f.bytes_("proof", 64))
    return name


async def _active(api: Api, member: str, device: DeviceKeys, clock: Clock) -> bool:
    """Can this device log in as ``member``? The challenge answers alike for any ids, so only a login
    tells; it shows its public key, so that the server does not count a not-yet-added device's refused
    login as a failed guess against this address."""
    try:
        await log_in(api, member, device, clock.now(), show_key=True)
    except DeviceRevoked:
        raise  # the key holder is told which device was revoked and when: not a wait for an add
    except AuthError:
        return False
    return True


async def _wait_until_active(api: Api, member: str, device: DeviceKeys, wait: float, clock: Clock) -> None:
    deadline = time.monotonic() + wait
    while not await _active(api, member, device, clock):
        if time.monotonic() > deadline:
            raise VaultError("the existing device did not add this one in time")
        await asyncio.sleep(POLL_SECONDS)


async def device_link(home: Home, code: str, name: str | None, passphrase: str,
                      wait: float = LINK_WAIT_SECONDS, clock: Clock = SYSTEM) -> Config:
    """On a new machine: deliver fresh keys through the code's mailbox, wait to be added."""
    if home.exists:
        raise VaultError(f"{home.path} already holds an identity; use another MVAULT_HOME")
    mc = MemberCode.parse(code, DEVICE_PREFIX)
    device = DeviceKeys.generate()
    home.create_keystore(Secrets(device, {}), passphrase)
    cfg = Config(url=mc.url, cert_fp=mc.cert_fingerprint.hex(), org_root=mc.org_root.hex(), member_id=mc.member_id,
                 device_id=device.device_id, name="", pin_kind=mc.pin_kind)
    try:
        async with Api(mc.url, mc.pin) as api:
            offer = encode({"name": name or "", "sign_pk": device.sign_public, "box_pk": device.box_public,
                            "proof": sign_device_proof(device, mc.member_id)})
            await api.post(f"/api/v1/device-links/{link_slot(mc.secret)}/offer",
                           SlotOffer(seal_link_payload(mc.secret, offer)), Ok)
            await _wait_until_active(api, mc.member_id, device, wait, clock)
            home.save_config(cfg)
            s = await Client.open(home, Secrets(device, {}), api, clock)
            view = await s.chains.view()
            cfg.name = view.members[mc.member_id].name
            home.save_config(cfg)
            await s.keys.puk(view.members[mc.member_id].puk_gen)
    except BaseException:
        home.forget()
        raise
    return cfg


async def device_list(s: Client) -> list[dict[str, Any]]:
    view = await s.chains.view()
    return [{"device": d.device_id, "name": d.name, "kind": d.kind, "added": d.added, "revoked": d.revoked,
             "this": d.device_id == s.session.device.device_id}
            for d in sorted(view.members[s.session.me].devices.values(), key=lambda d: d.added)]


@dataclass(frozen=True)
class PaperKey:
    """What ``recovery-key`` prints: the code (secret) and the server line beside it (not secret)."""

    code: str
    device: str
    server: str
    cert: str  # hex SHA-256 of the server's certificate, or the pin as KIND:HEX / webpki (vault.pin) for another kind


@dataclass(frozen=True)
class RecoveryTarget:
    """What ``recover`` needs, from a code (format 2: with the server line given apart; an old ``mvr1-``
    code: all inside it). ``org`` is the whole organization root (old) or its first 11 bytes."""

    url: str
    cert: bytes
    org: bytes
    member_id: str
    secret: bytes
    pin_kind: str = "cert"

    @property
    def pin(self) -> Pin:
        return Pin(self.pin_kind, self.cert)


def _recovery_pin(cert: str) -> Pin:
    """``--cert``: a certificate fingerprint (64 hex digits) or a pin of another kind (``spki:HEX``, ``webpki``)."""
    if cert.strip() in ("webpki",) or cert.strip().startswith(("spki:", "cert:")):
        try:
            return Pin.parse(cert)
        except VaultError as e:
            raise InviteError(f"--cert: {e.message}") from e
    return Pin("cert", recovery.parse_cert_fingerprint(cert))


async def recovery_key(s: Client, name: str | None) -> PaperKey:
    """Add a paper device whose seed is the printed code."""
    secret = os.urandom(recovery.SECRET_BYTES)
    paper = DeviceKeys.from_paper(secret)
    view = await s.chains.view()
    label = _device_name(view.members[s.session.me], name, "paper")
    await _add_device(s, paper.sign_public, paper.box_public, label, "paper", sign_device_proof(paper, s.session.me))
    code = RecoveryCode(secret, s.session.me, bytes.fromhex(s.session.cfg.org_root)[:recovery.ORG_PREFIX_BYTES])
    cfg = s.session.cfg
    return PaperKey(code.encode(), label, cfg.url, cfg.cert_fp if cfg.pin_kind == "cert" else str(cfg.pin))


def recovery_target(code: str, server: str | None, cert: str | None) -> RecoveryTarget:
    """Read a recovery key as typed; ``server``/``cert`` (the line printed beside it) are required for a
    format-2 code and, given with an old ``mvr1-`` code, replace the server it names (a moved server)."""
    url = recovery.check_server_url(server) if server is not None else None
    fp = _recovery_pin(cert) if cert is not None else None
    if not recovery.looks_like_recovery_code(code):
        mc = MemberCode.parse(code, RECOVERY_PREFIX)
        pin = fp or mc.pin
        return RecoveryTarget(url or mc.url, pin.value, mc.org_root, mc.member_id, mc.secret, pin.kind)
    rc = RecoveryCode.parse(code)
    if url is None or fp is None:
        raise VaultError("a recovery key does not name its server: give --server URL and --cert FINGERPRINT "
                         "(printed beside the key)")
    return RecoveryTarget(url, fp.value, rc.org_prefix, rc.member_id, rc.secret, fp.kind)


async def recover(home: Home, target: RecoveryTarget, passphrase: str, name: str | None,
                  clock: Clock = SYSTEM) -> Config:
    """On a fresh machine: use the paper key to add a new device and restore access."""
    if home.exists:
        raise VaultError(f"{home.path} already holds an identity; use another MVAULT_HOME")
    paper = DeviceKeys.from_paper(target.secret)
    device = DeviceKeys.generate()
    home.create_keystore(Secrets(device, {}), passphrase)
    try:
        async with Api(target.url, target.pin) as api:
            # Before the paper device signs anything: the organization must be the one the key names.
            root = (await api.get("/api/v1/info", Info)).org_root or ""
            if not root.startswith(target.org.hex()):
                raise ServerMismatch("the server's organization does not match the recovery key (wrong or "
                                     "impostor server)")
            try:
                active = await _active(api, target.member_id, paper, clock)
            except DeviceRevoked as e:
                raise DeviceRevoked(f"this recovery key was revoked: {e.message}; recover with another recovery "
                                    "key, or make one on a device of yours (`mvault recovery-key`)") from e
            if not active:
                raise AuthError("this recovery key is not (or no longer) an active device of that member")
            home.save_config(Config(url=target.url, cert_fp=target.cert.hex(), org_root=root,
                                    member_id=target.member_id, device_id=paper.device_id, name="",
                                    pin_kind=target.pin_kind))
            s = await Client.open(home, Secrets(paper, {}), api, clock)
            view = await s.chains.view()
            mine = view.members[target.member_id]
            label = _device_name(mine, name, "device")
            await _add_device(s, device.sign_public, device.box_public, label, "device",
                              sign_device_proof(device, target.member_id))
            puks = dict(s.session.secrets.puks)
    except BaseException:
        home.forget()
        raise
    cfg = Config(url=target.url, cert_fp=target.cert.hex(), org_root=root, member_id=target.member_id,
                 device_id=device.device_id, name=mine.name, pin_kind=target.pin_kind)
    home.save_secrets(Secrets(device, puks))
    home.save_config(cfg)
    return cfg
