"""The guest's own client: an allied organization's member working in the host's coalition space from ``mvault``
(docs/lifecycle.md section 2, "The guest's client").

A space admin of the host gives the guest (out of band, as an invite) a **join code**
(``mvault coalition join-code NAME``): ``mvault-space:1:<base64url of the canonical encoding of {"url", "pin_kind",
"pin", "org", "space", "name", "seq", "head", "allies", "pins"}>``: the host's server address and transport pin, the
host's organization root, the space's team id and name, the seq and hash of the space chain's head as the admin's
client verified it with the host's organization chain, the roots of the allies pinned in force there, and which
``coalition.ally`` links put a pin in force on the host's side, with their keys (review 16: a guest cannot tell a
lone NCC member's proposal from a pin; a code made before session 16 has no ``pins``, ``legacy_pins``). ``mvault
coalition join CODE`` on the guest's own device records it beside the guest's own identity (``SpaceHome``: sealed
``space.<id>.config``, ``.pins``, ``.space`` in the same home, under the same keystore) and checks the space at once.
Then ``mvault --space NAME ls|put|get|thread ...`` runs the ordinary commands against the host's server as a
guest (``GuestClient``).

What the guest's client checks, without the host's organization chain (the host's roster): the directory's root is
the pinned one; every member chain it is served replays and extends its pin; the space's chain replays with the one
judge and an *outside* organization state (vault/chains/outside.py): up to the join code's link its hash must be the
code's (the admin's judgement vouches for it) and an ally is pinned only where the code names a pin in force, with its
key; after it every link is judged by team role alone; the chain extends
its pin (rollback). Documents and messages are then judged as for any member, against the space's members' device
keys as the space chain states them, and document listings against their pins.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from client.api import Api
from client.client import Client
from client.clock import Clock
from client.docs import Documents
from client.home import Config, Home, Pins, Secrets
from client.keyring import Keyring
from client.view import Chains, View, check_chain_pin, key_change_warnings
from security.authority import POLICY
from security.policy import TEAM_KINDS
from vault.chains import TeamState, replay_team
from vault.chains.coalition import parse_ally
from vault.chains.outside import outside_org
from vault.encoding import Fields, Value, decode, encode
from vault.errors import (
    EXIT_SECURITY,
    ChainError,
    EncodingError,
    IntegrityError,
    NotFound,
    PolicyDenied,
    ServerMismatch,
    VaultError,
)
from vault.links import Link
from vault.wire.schemas import DirectoryView

PREFIX = "mvault-space:1:"
_FIELDS = {"url", "pin_kind", "pin", "org", "space", "name", "seq", "head", "allies", "pins"}
MAX_PINS = 256  # coalition.ally links in force a join code names (each ally's first pin and any re-pin after a freeze)


@dataclass(frozen=True)
class JoinCode:
    """Where a coalition space lives and the prefix of its chain a space admin of the host vouches for."""

    url: str
    pin_kind: str
    pin: bytes
    org_root: bytes
    space: str
    name: str
    seq: int
    head: bytes
    allies: tuple[bytes, ...]
    pins: tuple[tuple[int, bytes], ...] | None  # (seq, key) of each pin in force up to seq; None: a code before them

    @property
    def code(self) -> str:
        fields: dict[str, Value] = {"url": self.url, "pin_kind": self.pin_kind, "pin": self.pin, "org": self.org_root,
                                    "space": self.space, "name": self.name, "seq": self.seq, "head": self.head,
                                    "allies": list(self.allies)}
        if self.pins is not None:
            fields["pins"] = [{"seq": seq, "key": key} for seq, key in self.pins]
        return PREFIX + base64.urlsafe_b64encode(encode(fields)).decode().rstrip("=")

    @classmethod
    def parse(cls, code: str) -> JoinCode:
        if not code.startswith(PREFIX):
            raise VaultError(f"not a join code of a coalition space (it starts with {PREFIX!r})")
        text = code[len(PREFIX):].strip()
        try:
            f = Fields(decode(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))), "join code", _FIELDS)
            allies = f.list_("allies", 64)
            if not all(isinstance(a, bytes) and len(a) == 32 for a in allies):
                raise EncodingError("join code: allies must be organization roots (32 bytes)")
            seq = f.int_("seq", 1)
            pins = None
            if f.has("pins"):
                named = [Fields(x, "join code pin", {"seq", "key"}) for x in f.list_("pins", MAX_PINS)]
                pins = tuple((x.int_("seq", 1, seq), x.bytes_("key", 32)) for x in named)
                if len({s for s, _ in pins}) != len(pins):
                    raise EncodingError("join code: a link named twice in pins")
            return cls(f.str_("url", 2048), f.str_("pin_kind", 16), f.bytes_("pin", max_size=64),
                       f.bytes_("org", 32), f.str_("space", 64), f.str_("name", 200), seq,
                       f.bytes_("head", 32), tuple(a for a in allies if isinstance(a, bytes)), pins)
        except (ValueError, EncodingError) as e:
            raise VaultError(f"malformed join code: {e}") from None


def legacy_pins(code: JoinCode, links: list[Link]) -> dict[int, bytes]:
    """The pins in force that a join code made before session 16 (roots only, no ``pins``) stands for, where the
    space's chain leaves no doubt: each ally it names pinned, in its prefix, by ``coalition.ally`` links all naming one
    key (a proposal and its second signature; the last is the pin). Two keys for one ally (a lone NCC member's
    proposal, or a re-pin after a freeze): which one the host's NCC put in force is not known here, so refused."""
    found: dict[bytes, list[tuple[int, bytes]]] = {}
    for link in links[:code.seq]:
        if link.type == "coalition.ally":
            root, key, _ = parse_ally(link)
            if root in code.allies:
                found.setdefault(root, []).append((link.seq, key))
    if any(len({key for _, key in pins}) > 1 for pins in found.values()):
        raise VaultError(f"the join code of coalition space {code.name} was made before join codes named the allies' "
                         "keys, and the space's chain names two keys for one ally: ask a space admin of the host for a "
                         "new join code (`mvault coalition join-code`), then `mvault coalition join` it")
    return dict(pins[-1] for pins in found.values())


def check_pins(code: JoinCode, pins: Mapping[int, bytes], links: list[Link]) -> None:
    """Every pin the code names is a ``coalition.ally`` of the vouched prefix with that key (the prefix hashes to
    the code's head: a code that names another key than the chain's is not the admin's client's)."""
    for seq, key in sorted(pins.items()):
        link = links[seq - 1] if seq <= code.seq else None
        if link is None or link.type != "coalition.ally" or parse_ally(link)[1] != key:
            raise IntegrityError(f"the join code of coalition space {code.name} names a pin in force at link {seq} "
                                 "that the space's chain does not hold with that key: refused (ask a space admin of "
                                 "the host for a new join code)")


def join_code(cfg: Config, space: TeamState) -> JoinCode:
    """The host's side: the code for ``space`` as this member's client verified it (with the organization chain)."""
    return JoinCode(cfg.url, cfg.pin_kind, bytes.fromhex(cfg.cert_fp), bytes.fromhex(cfg.org_root), space.team_id,
                    space.name, space.seq, space.head, tuple(sorted(space.allies)),
                    tuple(sorted(space.ally_pins.items())))


async def space_join_code(c: Client, name: str) -> JoinCode:
    """``mvault coalition join-code NAME``: a space admin of the host vouches for the space's chain as verified."""
    view = await c.chains.view()
    team = view.team_by_name(name)
    if team.kind != "coalition":
        raise VaultError(f"team {team.name} is not a coalition space")
    if view.org.outside is not None or team.role_of(c.session.me, c.session.now()) != "admin":
        raise PolicyDenied(f"only an admin of {team.name} of the host organization gives its join codes")
    return join_code(c.session.cfg, team)


class SpaceHome(Home):
    """A coalition space joined as a guest, in the guest's own home: the same keystore (its own device keys and
    PUK), its own sealed config (the host's server, pin and root), pins, and the join code's anchor."""

    def __init__(self, path: Path, space: str) -> None:
        super().__init__(path)
        self.space = space
        self.state_prefix = f"space.{space}."

    def anchor(self) -> JoinCode:
        raw = self._read_state("space")
        if not isinstance(raw, dict) or not isinstance(raw.get("code"), str):
            raise VaultError(f"{self.path}: the record of coalition space {self.space} is damaged")
        return JoinCode.parse(raw["code"])

    def save_anchor(self, code: JoinCode) -> None:
        self._write_state("space", {"code": code.code})


def sibling(home: Home, space: str) -> SpaceHome:
    """The state of joined space ``space`` in ``home``, opened with the keystore key ``home`` holds (unlocked once)."""
    home._local_key()  # unlocks ``home`` if it is not yet
    h = SpaceHome(home.path, space)
    h.passphrases = home.passphrases
    h._key, h._local, h._sealed = home._key, home._local, home._sealed
    return h


def joined(home: Home) -> dict[str, str]:
    """The coalition spaces this home joined as a guest: team id -> name (read from their sealed records)."""
    found: dict[str, str] = {}
    for path in sorted(home.path.glob("space.*.space.bin")):
        space = path.name.split(".")[1]
        found[space] = sibling(home, space).anchor().name
    return found


def _named(spaces: dict[str, str], name: str) -> set[str]:
    """The ids of the joined ``spaces`` that ``name`` names (by name or by id)."""
    return {space for space, its in spaces.items() if name in (its, space)}


def space_home(home: Home, name: str) -> SpaceHome:
    """The joined space named ``name`` (or with that team id); refused if two are (review round 13: two hosts may
    name their spaces alike, and one of them got what was meant for the other)."""
    found = _named(joined(home), name)
    if not found:
        raise NotFound(f"no coalition space {name!r} joined on this device (`mvault coalition join CODE`)")
    if len(found) > 1:
        raise VaultError(f"two coalition spaces joined on this device are named {name!r} ({', '.join(sorted(found))})"
                         ": give the one you mean by its id")
    return sibling(home, found.pop())


class GuestChains(Chains):
    """The verified view of a guest: its space's chain and its members' chains, never the host's organization."""

    async def _fetch(self, pins: Pins, behind: dict[str, tuple[int, int]] | None,
                     hashes: dict[str, list[bytes]] | None = None) -> View:
        s = self.session
        home = s.home
        assert isinstance(home, SpaceHome)
        anchor = home.anchor()
        directory = await s.api.get("/api/v1/directory", DirectoryView)
        if directory.org.root != s.cfg.org_root:
            raise ServerMismatch("the host's server answers for another organization than the join code's root")

        def pin(chain_id: str, links: list[Link]) -> None:
            check_chain_pin(pins, chain_id, links)

        members = await self.member_chains(directory.members, pin)
        links = await self.links(f"/api/v1/chains/team/{anchor.space}")
        if len(links) < anchor.seq or links[anchor.seq - 1].hash != anchor.head:
            raise ServerMismatch(f"the host's server serves coalition space {anchor.name} without the links the join "
                                 "code vouches for (forged, or another space): stop and tell your Security Team")
        in_force = dict(anchor.pins) if anchor.pins is not None else legacy_pins(anchor, links)
        check_pins(anchor, in_force, links)
        org = outside_org(anchor.org_root, anchor.space, anchor.seq, in_force.items())
        try:
            team = replay_team(links, org, members, POLICY, TEAM_KINDS)
        except ChainError as e:  # a link no member's client makes (an act needing a newer join code is PolicyDenied)
            if e.exit_code == EXIT_SECURITY:
                raise
            raise IntegrityError(f"the host's server serves coalition space {anchor.name} with a link that does not "
                                 f"hold: {e}") from e
        if team.team_id != anchor.space or team.kind != "coalition":
            raise ChainError("the host's server served another chain than the coalition space's")
        if set(team.allies) != set(anchor.allies):  # its allies are pinned in the prefix, where the code names them
            raise IntegrityError(f"the join code of coalition space {anchor.name} names other allies than the pins "
                                 "in force its chain holds: refused (ask a space admin of the host for a new one)")
        pin(team.team_id, links)
        s.warnings.extend(key_change_warnings(pins, members, s.me))
        return View(org, members, {team.team_id: team})


class GuestClient(Client):
    """A logged-in, verified connection of a guest to the host's server, for one command."""

    def __init__(self, home: Home, secrets: Secrets, api: Api, clock: Clock | None = None) -> None:
        super().__init__(home, secrets, api, clock)
        self.chains = GuestChains(self.session)
        self.keys = Keyring(self.session, self.chains)
        self.docs = Documents(self.session, self.chains, self.keys)

    async def login(self) -> None:
        await self.session.login()  # a guest has no audit log on the host's server (it is the host's)


async def join(home: Home, secrets: Secrets, code: str, clock: Clock) -> tuple[JoinCode, View]:
    """The guest's side: record the space of join ``code`` in this home, then log in and check it."""
    jc = JoinCode.parse(code)
    mine = home.config()
    clash = _named(joined(home), jc.name) - {jc.space}
    if clash:  # `--space NAME` must name one space, never another host's by surprise (review round 13)
        raise VaultError(f"this device already joined another coalition space named {jc.name!r} ({', '.join(clash)}"
                         f"); the space of this code ({jc.space}) is not joined")
    space = sibling(home, jc.space)
    known = (home.path / f"space.{jc.space}.space.bin").exists()
    if known and space.anchor().seq > jc.seq:
        raise VaultError(f"this device joined {jc.name} with a newer join code (link {space.anchor().seq}); this "
                         f"one vouches for link {jc.seq} only")
    cfg = Config(jc.url, jc.pin.hex(), jc.org_root.hex(), mine.member_id, mine.device_id, mine.name, jc.pin_kind)
    before = (space.config(), space.anchor()) if known else None
    if known:
        space.pins()  # (there, and this device's)
    else:
        space.replace_pins(Pins())  # a new space's first pins
    space.save_config(cfg)
    space.save_anchor(jc)
    try:
        async with Api(cfg.url, cfg.pin) as api:
            c = await GuestClient.open(space, secrets, api, clock)
            return jc, await c.chains.view()
    except BaseException:  # nothing of a code that did not check out is kept
        if before is None:
            for name in ("config", "pins", "space"):
                (home.path / f"space.{jc.space}.{name}.bin").unlink(missing_ok=True)
            (home.path / f"space.{jc.space}.pins.lock").unlink(missing_ok=True)
        else:
            space.save_config(before[0])
            space.save_anchor(before[1])
        raise


async def join_space(home: Home, code: str, clock: Clock) -> tuple[dict[str, Any], Secrets, View]:
    """``mvault coalition join CODE``: record and check the space; what to print, and the space's verified view."""
    secrets = home.unlock()
    _, view = await join(home, secrets, code, clock)
    return space_row(view, home.config().member_id), secrets, view


def space_row(view: View, me: str) -> dict[str, Any]:
    """What ``coalition join`` prints: the space, its members by organization (the host, or the ally that approved
    them), this guest's role."""
    team = next(iter(view.teams.values()))
    allies = {a.org_root: a.name for a in team.allies.values()}
    return {"space": team.team_id, "name": team.name, "role": team.role_of(me, team.time),
            "host_key": team.host_key is not None,
            "members": sorted((view.chosen_name(m),
                               allies.get(team.guests[m].ally, "?") if m in team.guests else "host")
                              for m in team.members)}
