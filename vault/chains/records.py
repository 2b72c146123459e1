"""Signed records in the organization chain: vouches, key verifications and approvals.

They change nobody's rights; they are what the security-protocol rules ask to be recorded
(``vouching``, ``key-verification``, ``two-person``), signed by a member's device and replayed by
every client like any other link, so a server cannot make one up, move one to another
organization, or date one where its signer was not entitled (SECURITY.md "Signed records"). The
organization chain checks them (``OrgState._record_act``):

    org.vouch    {member}               a member vouches for another (pending or admitted) member
    org.verify   {member, fingerprint}  a member compared safety numbers with another in person;
                                        ``fingerprint``: the other's key fingerprint it saw
    org.approve  {link}                 an NCC member approves an earlier organization link as the
                                        second person (neither its signer nor its subject)

Each is judged by the one judge as the act of the same name (``org.vouch``, ``org.verify``,
``org.approve`` in ``security.policy``), at the organization state before it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from vault.errors import ChainError
from vault.links import Link

RECORD_TYPES = ("org.vouch", "org.verify", "org.approve")


@dataclass(frozen=True)
class Record:
    """One signed record: who signed it (member, device), when, at which org seq, about whom or what.

    ``subject``: the member vouched for or verified, or the hex hash of the approved link; ``detail``: the
    verified key fingerprint (hex) of an ``org.verify``, the approved link's seq of an ``org.approve``."""

    type: str
    signer: str
    device: str
    time: int
    seq: int
    subject: str
    detail: str = ""


@dataclass(frozen=True)
class Signed:
    """What an approval needs to know of an earlier organization link."""

    seq: int
    signer: str
    subject: str | None


def approved_link(signed: Mapping[bytes, Signed], link: Link) -> tuple[bytes, Signed]:
    """The earlier link of the same chain that an approval (``org.approve``, ``team.approve``) names, and what
    is known of it; refused when there is none or when the approver is its signer or subject."""
    target = link.body.bytes_("link", 32)
    found = signed.get(target)
    if found is None:
        raise ChainError(f"{link.type} names no earlier link of this chain")
    if link.signer in (found.signer, found.subject):
        raise ChainError("the second approver is neither the link's signer nor its subject")
    return target, found


class HasRecords(Protocol):
    """An organization state (``OrgState.records``), as ``records_of`` reads it."""

    @property
    def records(self) -> Sequence[Record]: ...


def records_of(state: HasRecords, type_: str) -> list[Record]:
    """The records of type ``type_`` in ``state``, in chain order."""
    return [r for r in state.records if r.type == type_]
