"""``mvault status``: what this home, its unlock session and its server look like, without changing anything.

It never asks for the passphrase unless told to (``unlock=True``): the keystore is opened only through the
unlock agent (``MVAULT_SESSION``) or ``MVAULT_PASSPHRASE_FILE``. Locked, it reports what the disk says
without a key (the keystore is there, whether an unlock agent runs): the server's address, the member's ids
and the pinned checkpoint are sealed under the keystore (SECURITY.md "On the member's device"). Offline, it
reports the sealed local state. Online, it asks the server's health (through the pinned certificate), logs
in and verifies as every command does (the login and the audit log's consistency check), and lists pending
work without doing it: rotations, key shares and re-keys a later command does, and open invites.

A security problem (the certificate or the log does not match its pin, a chain rolled back) is raised as
its error, like any command's; a server that cannot be reached or a device that cannot log in is reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from client import agent
from client.admin import invite_state
from client.api import Api
from client.client import Client
from client.clock import Clock
from client.home import KEYSTORE, Home, Secrets
from client.view import View
from security.authority import POLICY
from vault.errors import AuthError, KeystoreError, TransportError
from vault.wire.schemas import Health


@dataclass
class Status:
    home: str
    session: dict[str, Any]
    server: dict[str, Any] = field(default_factory=lambda: {"url": None, "reachable": None, "version": None,
                                                            "certificate": "unknown", "error": None})
    member: dict[str, Any] | None = None
    device: dict[str, Any] | None = None
    checkpoint: dict[str, Any] | None = None
    pending: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_value(self) -> dict[str, Any]:
        return {"home": self.home, "session": self.session, "server": self.server, "member": self.member,
                "device": self.device, "checkpoint": self.checkpoint, "pending": self.pending,
                "warnings": self.warnings}


def _session_state(home: Home, unlock: bool) -> tuple[dict[str, Any], Secrets | None]:
    """The unlock session as this shell sees it, and the secrets when they open without a prompt."""
    running = agent.status(home.path)
    state: dict[str, Any] = {"state": "locked", "agent": running is not None,
                             "seconds_left": running.seconds_left if running else None,
                             "kdf": None}
    params = home.keystore_params()
    state["kdf"] = {"time_cost": params.time_cost, "memory_kib": params.memory_kib,
                    "parallelism": params.parallelism}
    opened = home.unlock_quietly()
    if opened is None and unlock:
        opened = home.unlock(), "passphrase"
    if opened is None:
        return state, None
    secrets, how = opened
    state["state"] = how
    return state, secrets


async def _online(st: Status, home: Home, secrets: Secrets, clock: Clock) -> None:
    cfg = home.config()
    async with Api(cfg.url, cfg.pin) as api:
        try:
            health = await api.get("/api/health", Health)
        except TransportError as e:
            st.server.update(reachable=False, error=e.message)
            st.warnings.append(f"the server does not answer: {e.message}")
            return
        st.server.update(reachable=True, version=health.version, certificate="matches the pin")
        try:
            s = await Client.open(home, secrets, api, clock)
            view = await s.chains.view()
        except AuthError as e:
            st.warnings.append(f"this device cannot log in: {e.message}")
            return
        except TransportError as e:  # it answered the health check, then stopped
            st.server.update(reachable=False, error=e.message)
            st.warnings.append(f"the server stopped answering: {e.message}")
            return
        st.warnings.extend(s.session.warnings)
        now = s.session.now()
        mine = view.members[s.session.me]
        this = mine.devices.get(s.session.device.device_id)
        st.member = {"id": mine.member_id, "name": mine.name, "status": view.org.members[mine.member_id].status,
                     "roles": sorted(view.org.roles_of(mine.member_id, now))}
        st.device = {"id": s.session.device.device_id, "name": this.name if this else None}
        st.pending = _pending(s, view, now)
        if st.member["status"] != "admitted":
            st.warnings.append(f"you are {st.member['status']} in the organization")


def _pending(s: Client, view: View, now: int) -> list[dict[str, Any]]:
    """Key work a later command of this member does (``client.maintenance``), and open invites: nothing done."""
    me = s.session.me
    rows: list[dict[str, Any]] = []
    for team in sorted(view.teams.values(), key=lambda t: t.name):
        if not team.holds_key(me, now):
            if team.role_of(me, now) == "admin" and not team.key_holders(view.org, view.org.seq, now, POLICY):
                rows.append({"kind": "rekey", "team": team.name, "detail": "no member holds the key: "
                             f"`mvault team rotate {team.name}`"})
            continue
        reasons = team.rotation_reasons(now, view.members, view.org)
        if reasons:
            rows.append({"kind": "rotate", "team": team.name, "detail": "; ".join(reasons)})
        for mid in sorted(team.pending_share, key=view.name_of):
            rows.append({"kind": "share", "team": team.name, "member": mid, "member_name": view.name_of(mid),
                         "detail": f"{view.name_of(mid)} waits for the key"})
    open_invites = [i for i in view.org.invites.values() if invite_state(i, now) == "open"]
    if open_invites:
        own = sum(1 for i in open_invites if i.by == me)
        rows.append({"kind": "invites", "open": len(open_invites), "yours": own,
                     "detail": f"{len(open_invites)} open invite(s), {own} of them yours (`mvault invite ls`)"})
    return rows


async def gather(home: Home, clock: Clock, unlock: bool = False, offline: bool = False) -> Status:
    """The status of ``home`` (raises when it holds no identity, and on a security problem)."""
    home.require()
    if not (home.path / KEYSTORE).exists():
        raise KeystoreError(f"{home.path} has no keystore ({KEYSTORE}): this home is damaged")
    session, secrets = _session_state(home, unlock)
    st = Status(str(home.path), session)
    if secrets is None:
        st.warnings.append("locked: the server, your names and the pinned checkpoint are sealed until you unlock "
                           "(`mvault unlock`, or `mvault status --unlock`)")
        return st
    cfg = home.config()
    st.server["url"] = cfg.url
    st.member = {"id": cfg.member_id, "name": cfg.name}
    st.device = {"id": cfg.device_id, "name": None}
    if not offline:
        await _online(st, home, secrets, clock)
    pins = home.pins()  # the login's log check may have moved it on
    if pins.log.get("size"):
        st.checkpoint = {"size": int(pins.log["size"]), "time": int(pins.log.get("time", 0))}
    return st
