"""The client of one command: the login session and the verified parts built on it.

``Client`` composes them (``Session``: login; ``Chains``: the verified view and new links;
``Keyring``: member and team keys; ``Documents``: put, get, ls, history) and offers their common
operations as shortcuts. Pending key work, invites and teams, the audit log and threads are
modules above it (``maintenance``, ``admin``, ``audit``, ``threads``) that take a ``Client``.
``join`` creates a member (and, with a founder invite, the organization).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from client.api import Api
from client.checkpoints import LogView, sync_log
from client.clock import SYSTEM, Clock
from client.docs import Documents, DocVersion, Progress
from client.home import Config, Home, Secrets
from client.keyring import Keyring
from client.session import Session
from client.view import Chains, View
from vault.chains import MemberState, TeamState, check_name, member_id_for, org_id_for
from vault.envelope import Record
from vault.errors import ServerMismatch, TransportError, VaultError
from vault.invite import InviteCode
from vault.keys import DeviceKeys, PukKeys, device_id_for
from vault.links import Link, invite_public, make_link, sign_invite_holder
from vault.teamkeys import TeamKey, box_hash
from vault.wire.schemas import Founded, FoundRequest, Info, Joined, JoinHead, JoinHeadRequest, JoinRequest


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
        # Every session proves the audit log only grew since we last looked (stops on a fork).
        self.chains.log = await sync_log(self.session, after_login=True)

    # -- the session's parts ----------------------------------------------------------------------

    @property
    def home(self) -> Home:
        return self.session.home

    @property
    def cfg(self) -> Config:
        return self.session.cfg

    @property
    def secrets(self) -> Secrets:
        return self.session.secrets

    @property
    def api(self) -> Api:
        return self.session.api

    @property
    def clock(self) -> Clock:
        return self.session.clock

    @property
    def device(self) -> DeviceKeys:
        return self.session.device

    @property
    def me(self) -> str:
        return self.session.me

    @property
    def warnings(self) -> list[str]:
        return self.session.warnings

    @property
    def log(self) -> LogView | None:
        return self.chains.log

    def now(self) -> int:
        return self.session.now()

    # -- shortcuts to the parts ---------------------------------------------------------------------

    async def view(self, refresh: bool = False) -> View:
        return await self.chains.view(refresh)

    async def links(self, path: str) -> list[Link]:
        return await self.chains.links(path)

    def verified(self, ms: MemberState) -> str:
        return self.chains.verified(ms)

    async def append_org(self, type_: str, body: dict[str, Any]) -> None:
        await self.chains.append_org(type_, body)

    async def append_member(self, type_: str, body: dict[str, Any], puk_boxes: dict[str, bytes],
                            signer: DeviceKeys | None = None) -> None:
        await self.chains.append_member(type_, body, puk_boxes, signer)

    async def append_team(self, team: TeamState, type_: str, body: dict[str, Any],
                          boxes: dict[str, bytes] | None = None) -> None:
        await self.chains.append_team(team, type_, body, boxes)

    async def puk(self, gen: int) -> PukKeys:
        return await self.keys.puk(gen)

    async def team_key(self, team: TeamState, gen: int) -> TeamKey:
        return await self.keys.team_key(team, gen)

    async def put(self, team_name: str, path: Path, name: str | None = None,
                  progress: Progress | None = None) -> tuple[int, str]:
        return await self.docs.put(team_name, path, name, progress)

    async def put_many(self, team_name: str, items: list[tuple[Path, str]],
                       progress: Progress | None = None) -> list[tuple[str, int, str]]:
        return await self.docs.put_many(team_name, items, progress)

    async def get(self, team_name: str, name: str, out: Path, version: int | None = None,
                  progress: Progress | None = None) -> DocVersion:
        return await self.docs.get(team_name, name, out, version, progress)

    async def ls(self, team_name: str) -> list[DocVersion]:
        return await self.docs.ls(team_name)

    async def history(self, team_name: str, name: str) -> list[DocVersion]:
        return await self.docs.history(team_name, name)

    async def find_doc(self, team: TeamState, name: str) -> tuple[str, list[Record]]:
        return await self.docs.find_doc(team, name)


def device_body(sign_public: bytes, box_public: bytes, name: str, kind: str = "device") -> dict[str, Any]:
    return {"id": device_id_for(sign_public), "sign_pk": sign_public, "box_pk": box_public, "name": name,
            "kind": kind}


async def join(home: Home, code: str, name: str, passphrase: str, org_name: str = "member-vault",
               clock: Clock = SYSTEM) -> Config:
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
                          "member_head": member.root},
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
