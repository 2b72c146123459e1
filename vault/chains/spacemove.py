"""The host's server move as a coalition space's guests learn it (issue 17, session 23): ``coalition.server``.

The host organization moves its server with ``org.server`` in its own chain (two NCC members when it has two). A
guest never sees that chain (it is the host's roster), so the host's NCC also signs the new place with the host's
**coalition key** for each space (``host_key``, the key that already signs the host's own members' entry), and any
member of the space carries the statement into the space's chain in a ``coalition.server`` link:

    statement = canonical {"v": 1, "type": "coalition.server", "space": team id, "ally": host root, "url": URL,
                           "pin_kind": kind, "pin": value, "time": t}
    link body = {"statement": {"statement": bytes, "sig": Ed25519 over SIG_COALITION || statement}}

Judged (after its carrier's team role, ``coalition.server`` in ``security.policy``): a space with ``host_key``; the
statement for this space, naming the host's root, signed with the space's current host key, used once; a
canonical ``https`` URL and a valid pin, not the place already in force in the space. On the host's side (its
clients and server, which hold its chain) the place must also be the one its organization chain puts in force at
the organization state the link names: a lone key holder cannot move the guests where the host's members do not
go. The place in force is ``TeamState.server``; a guest's client follows it (client/spacemoves.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from vault.chains.coalition import statement_hash
from vault.chains.org import OrgState, ServerPlace
from vault.crypto import labels
from vault.crypto import primitives as p
from vault.encoding import Fields, decode, encode
from vault.errors import ChainError, EncodingError, VaultError
from vault.links import Link
from vault.pin import Pin, named_place

_FIELDS = {"v", "type", "space", "ally", "url", "pin_kind", "pin", "time"}


@dataclass(frozen=True)
class SpacePlace:
    """Where the host's server is for a space's guests, as the last ``coalition.server`` link says."""

    url: str
    pin: Pin
    seq: int  # the space chain's link that carried it
    by: str  # its carrier (a member of the space); the signer is the host's coalition key
    time: int  # the statement's time


class TeamState(Protocol):
    """What this reads and changes of ``vault.chains.team.TeamState`` (not imported: team imports this)."""

    team_id: str
    host_key: bytes | None
    statements_used: set[bytes]
    server: SpacePlace | None


def move_statement(space: str, host_root: bytes, url: str, pin: Pin, time: int) -> bytes:
    return encode({"v": 1, "type": "coalition.server", "space": space, "ally": host_root, "url": url,
                   "pin_kind": pin.kind, "pin": pin.value, "time": time})


def place_at(org: OrgState, org_seq: int) -> ServerPlace | None:
    """The host's place in force at organization state ``org_seq`` (None: never moved by then)."""
    found = None
    for place in org.servers:
        if place.seq <= org_seq:
            found = place
    return found


def apply_move(state: TeamState, link: Link, org: OrgState, org_seq: int) -> None:
    """``coalition.server`` (its carrier judged): the host's signed move, put in force in the space."""
    if state.host_key is None:
        raise ChainError("coalition.server: a space without a host coalition key takes no server move")
    try:
        carried = Fields(link.body.dict_("statement").raw, "coalition.server", {"statement", "sig"})
        raw, sig = carried.bytes_("statement", max_size=1024), carried.bytes_("sig", p.SIG_BYTES)
        f = Fields(decode(raw), "coalition.server", _FIELDS)
        if f.int_("v") != 1 or f.str_("type", 32) != "coalition.server":
            raise ChainError("coalition.server: not a version 1 coalition.server statement")
        space, ally, url = f.str_("space", 64), f.bytes_("ally", 32), f.str_("url", 512)
        kind, value, time = f.str_("pin_kind", 16), f.bytes_("pin", max_size=32), f.int_("time", 0)
    except EncodingError as e:
        raise ChainError(f"malformed coalition.server: {e}") from e
    if space != state.team_id or ally != org.root:
        raise ChainError("coalition.server: the statement is for another space or another organization")
    try:
        p.verify(state.host_key, labels.SIG_COALITION, raw, sig)
    except VaultError as e:
        raise ChainError("coalition.server: the statement is not signed with the space's host coalition key") from e
    digest = statement_hash(raw)
    if digest in state.statements_used:
        raise ChainError("coalition.server: that statement was used already")
    pin = named_place("coalition.server", url, kind, value)
    if state.server is not None and (state.server.url, state.server.pin) == (url, pin):
        raise ChainError("coalition.server names the place already in force in the space")
    if state.server is not None and time < state.server.time:  # a statement kept from before a later move
        raise ChainError("coalition.server: the statement is older than the move in force in the space")
    if org.outside is None:  # the host's side: its own chain moved there (org.server in force, two-person)
        host = place_at(org, org_seq)
        if host is None or (host.url, host.pin) != (url, pin):
            raise ChainError("coalition.server: the host's organization chain does not put that place in force at "
                             "the organization state this link names")
    state.statements_used.add(digest)
    state.server = SpacePlace(url, pin, link.seq, link.signer, time)
