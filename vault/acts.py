"""A signed act, as the one judge of authority (``security.authority``) sees it.

Every kind of signed act (chain link, document version, thread record, thread message, key
share, audit-key statement) is reduced to the same few facts before it is judged: who signed
it, with which device, when, what it does under the policy table, and which organization and
team states it names. The judge decides from these facts and the replayed chains alone.
"""

from __future__ import annotations

from dataclasses import dataclass

ALLOWANCE = 1200
"""Seconds an act may be dated after the state it names ended: twice the server's 600 s clock window.

An honest server stores an act only against the current heads and dated within its window, so
no act it accepted is dated more than this after the state it names ended, and replay stays
stable when later links arrive."""


@dataclass(frozen=True)
class Act:
    """What a signed act claims.

    ``org_seq``: the organization state the act names (team links do); None for acts that name
    none (documents, thread records and messages, org links): they are judged at the organization
    state current at ``time``. ``team_seq``: the team state the act names (documents, thread records
    and messages do; a team link names the link before it); None for acts outside a team.
    ``gen``: the team key generation the act uses, if any. ``position``: for a team chain link, the
    chain and seq it takes (a device cut off is refused beyond the last link it had signed there when
    the cut was made, whatever the link's date: ``vault.chains.incidents``).
    """

    author: str
    device: str
    time: int
    action: str
    org_seq: int | None = None
    team_seq: int | None = None
    gen: int | None = None
    position: tuple[str, int] | None = None


def doc_act(op: str) -> str:
    """The act a document version doing ``op`` (vault.envelope ``OPS``) is judged as: always a write
    ("doc.write"). A deletion, a move, a restore or a conflict copy needs the same entitlement as new
    content: a member who may write may delete, and a reader may not (the audit log still tells them apart)."""
    return "doc.write"
