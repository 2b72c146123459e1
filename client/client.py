"""The client of one command: the login session and the verified parts built on it.

``Client`` composes them (``Session``: login; ``Chains``: the verified view and new links;
``Keyring``: member and team keys; ``Documents``: put, get, ls, history); callers use the parts
(``client.session.me``, ``client.chains.view()``, ``client.keys.team_key(...)``,
``client.docs.put_many(...)``). Pending key work, invites and teams, the audit log and threads are
modules above it (``maintenance``, ``admin``, ``audit``, ``threads``) that take a ``Client``.
``join`` creates a member (and, with a founder invite, the organization).
"""

from __future__ import annotations

from typing import Any

from client import restore
from client.api import Api
from client.checkpoints import sync_log
from client.clock import SYSTEM, Clock
from client.docs import Documents
from client.home import Config, Home, Secrets
from client.keyring import Keyring
from client.session import Session
from client.view import Chains
from vault.chains import MemberState, check_name, member_id_for, org_id_for
from vault.errors import LogInconsistent, ServerMismatch, TransportError, VaultError
from vault.invite import InviteCode
from vault.keys import DeviceKeys, PukKeys, device_id_for
from vault.links import invite_public, make_link, sign_invite_holder
from vault.teamkeys import box_hash
from vault.wire.schemas import Founded, FoundRequest, Info, Joined, JoinHead, JoinHeadRequest, JoinRequest

#: the founder's NCC term when the founder names none: one year (the ``role-terms`` rule allows at most 730 days)
FOUNDER_TERM = 365 * 86400


class Client:
    """A logged-in, verified connection for one command."""

    def __init__(self, home: Home, secrets: Secrets, api: Api, clock: Clock | None = None) -> None:
        self.session = Session(home, secrets, api, clock if clock is not None else SYSTEM)
        self.chains = Chains(self.session)
        self.keys = Keyring(self.session, self.chains)
        self.docs = Documents(self.session, self.chains, self.keys)

    @classmethod
    async def open(cls, home: Home, secrets: Secrets, api: Api, clock: Clock | None = None) -> Client:
        c = cls(home, secrets, api, clock)
        await c.login()
        return c

    async def login(self) -> None:
        await self.session.login()
        # Every session proves the audit log only grew since we last looked (stops on a fork), unless the
        # Security Team accepted the server's state after a restore from an older backup (client/restore.py).
        self.session.log_before = dict(self.session.home.pins().log)
        try:
            self.chains.log = await sync_log(self.session, after_login=True)
        except LogInconsistent as e:
            self.chains.log = await restore.follow(self.session, self.chains, e)


def device_body(sign_public: bytes, box_public: bytes, name: str, kind: str = "device") -> dict[str, Any]:
    return {"id": device_id_for(sign_public), "sign_pk": sign_public, "box_pk": box_public, "name": name,
            "kind": kind}


async def join(home: Home, code: str, name: str, passphrase: str, org_name: str = "member-vault",
               clock: Clock = SYSTEM, ncc_until: int | None = None) -> Config:
    """Create keys, then found the organization (founder invite) or join it.

    A founder's NCC role ends at ``ncc_until`` (default: ``FOUNDER_TERM`` after founding), as the
    ``role-terms`` rule wants of every NCC term; the org chain's caretaker rule keeps a founder whose
    term ended NCC until someone else holds the role. ``ncc_until`` is refused on a member's invite.

    The keystore is written first: a passphrase problem stops us before the server records
    anything, and a server refusal removes the keystore again.
    """
    if home.exists:
        raise VaultError(f"{home.path} already holds an identity; use another MVAULT_HOME")
    check_name(name, "member name")
    invite = InviteCode.parse(code)
    if ncc_until is not None and invite.org_root is not None:
        raise VaultError("an NCC term at joining (--until) is for the founder only; "
                         "the NCC grants roles with `mvault role grant`")
    if ncc_until is not None and ncc_until <= clock.now():
        raise VaultError("the end of the founder's NCC term must be in the future")
    device = DeviceKeys.generate()
    puk = PukKeys.generate(1)
    member_id = member_id_for(device.sign_public)
    puk_box = puk.seal_for_device(member_id, device.box_public)
    home.create_keystore(Secrets(device, {1: puk}), passphrase)
    try:
        async with Api(invite.url, invite.pin) as api:
            info = await api.get("/api/v1/info", Info)
            member_link = make_link(
                chain=None, seq=1, prev=None, time=clock.now(), signer=member_id, device=device, type_="member.create",
                body={"name": name, "device": device_body(device.sign_public, device.box_public, "device-1"),
                      "puk": {"gen": 1, "sign_pk": puk.sign_public, "box_pk": puk.box_public},
                      "puk_boxes": [{"device": device.device_id, "hash": box_hash(puk_box)}]},
            )
            member = MemberState.create(member_link)
            if invite.org_root is None:
                if info.org_root:
                    raise VaultError("this server's organization is already founded; ask a member for an invite")
                org_link = make_link(
                    chain=None, seq=1, prev=None, time=clock.now(), signer=member_id, device=device, type_="org.create",
                    body={"name": org_name, "founder_invite": invite_public(invite.secret),
                          "member_head": member.root,
                          "ncc_until": clock.now() + FOUNDER_TERM if ncc_until is None else ncc_until},
                    invite_secret=invite.secret,
                )
                res = await api.post("/api/v1/found", FoundRequest(member_link.wire, puk_box, org_link.wire), Founded)
                org_root = res.org_root
            else:
                if info.org_root != invite.org_root.hex():
                    raise ServerMismatch(
                        "the server's organization does not match the invite (wrong or impostor server)")
                t = clock.now()
                head = await api.post("/api/v1/join/head", JoinHeadRequest(
                    invite_public(invite.secret), t, sign_invite_holder(invite.secret, invite.org_root, t)), JoinHead)
                join_link = make_link(
                    chain=org_id_for(invite.org_root), seq=head.org_seq + 1,
                    prev=head.org_head, time=clock.now(), signer=member_id, device=device,
                    type_="org.join",
                    body={"invite": invite_public(invite.secret), "member_head": member.root},
                    invite_secret=invite.secret,
                )
                await api.post("/api/v1/join", JoinRequest(member_link.wire, puk_box, join_link.wire), Joined)
                org_root = invite.org_root.hex()
    except TransportError as e:
        # The server may have recorded us: keep the keys so nothing is lost.
        home.save_config(Config(url=invite.url, cert_fp=invite.cert_fingerprint.hex(), org_root="", member_id=member_id,
                                device_id=device.device_id, name=name, pin_kind=invite.pin_kind))
        raise TransportError(f"{e}; the server did not confirm the join. Your new keys are kept in {home.path}: "
                             "check with the organization before joining again") from e
    except BaseException:
        home.forget()
        raise
    cfg = Config(url=invite.url, cert_fp=invite.cert_fingerprint.hex(), org_root=org_root, member_id=member_id,
                 device_id=device.device_id, name=name, pin_kind=invite.pin_kind)
    home.save_config(cfg)
    return cfg
