"""What every chain shares: identifiers derived from keys and hashes, names, and cloning states."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

from vault.crypto import labels
from vault.crypto import primitives as p
from vault.encoding import encode
from vault.errors import ChainError
from vault.keys import short_id

MAX_NAME = 64
T = TypeVar("T")


def clone(state: T) -> T:
    """A deep copy to apply a candidate link to without touching the original."""
    return copy.deepcopy(state)


def member_id_for(first_device_sign_public: bytes) -> str:
    return short_id(labels.H_MEMBER_ID, first_device_sign_public)


def org_id_for(root: bytes) -> str:
    """The organization id: derived from the hash of its org.create link (its root)."""
    return short_id(labels.H_ORG_ID, root)


def team_id_for(org_id: str, nonce: bytes) -> str:
    return short_id(labels.H_TEAM_ID, org_id.encode() + b"\x00" + nonce)


def protocols_digest(text: str) -> bytes:
    """The digest that names a security-protocols text in ``org.protocols.*`` links: SHA-256 of its UTF-8."""
    return p.sha256(text.encode("utf-8"))


def roster_digest(members: Mapping[str, tuple[str, int | None]]) -> bytes:
    """What a ``team.review`` confirms: the tagged hash (``mvault/v1/team-roster``) of the canonical encoding of
    the list of [member id, team role, until or null], sorted by member id (docs/format.md "team.review")."""
    return p.tagged_hash(labels.H_ROSTER, encode([[m, role, until] for m, (role, until) in sorted(members.items())]))


def check_name(name: str, what: str) -> str:
    if not name or len(name) > MAX_NAME or not all(c.isalnum() or c in "-_." for c in name):
        raise ChainError(f"{what} {name!r} is not valid: use 1-{MAX_NAME} letters, digits, - _ .")
    return name


@dataclass(frozen=True)
class Outside:
    """A coalition space judged outside the host organization (a guest's client; vault/chains/outside.py): the
    space, the seq of the last link of its chain a space admin's join code vouches for, and the pins in force there:
    (seq, key) of each ``coalition.ally`` link of that prefix that put a pin in force on the host's side (review 16:
    another ``coalition.ally`` there was one NCC member's proposal, which changes nothing)."""

    space: str
    seq: int
    pins: frozenset[tuple[int, bytes]]

    def vouches(self, team: str, seq: int) -> bool:
        """Is link ``seq`` of team ``team``'s chain in the prefix the join code vouches for?"""
        return team == self.space and seq <= self.seq
