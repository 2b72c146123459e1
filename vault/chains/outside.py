"""A coalition space seen from outside the host organization: a guest's client (docs/lifecycle.md section 2,
"The guest's client").

A guest (an allied organization's member) must not get the host's organization chain: it is the host's roster
(rule ``no-master-lists``). Its client judges the space's team chain without it, with an *outside* organization
state: the host's pinned root (and the organization id derived from it) and nothing else, plus what the guest's join
code vouches for (``Outside``): the prefix of the space's chain up to its link ``seq`` (whose hash the code carries
and the guest's client checks) and the pins in force there (which ``coalition.ally`` links put one in force, and
with which key).

What the one judge (``security.authority``) does with such a state (``OrgState.outside``):

- a link inside the vouched prefix is taken as judged: the host's space admin whose client made the join code
  replayed it with the host's organization chain; the guest checks each link's signature (a device of its signer
  in the member chain the server serves) and the hash chain up to the vouched hash; a ``coalition.ally`` pins an
  ally only if the code names that link, with that key, as one that put a pin in force on the host's side (who is
  the host's NCC, and so whether a pin took its two signatures, is not known here: review 16, a lone NCC member's
  proposal must not choose the key guests trust); any other ``coalition.ally`` of the prefix changes nothing;
- past the prefix, every member of the space is judged by its team role alone (a guest capped as always; a host
  member with no organization role, so no NCC override), and an organization act (``team.create``, an NCC's
  ``coalition.ally`` or override) is refused: the guest's client stops and a newer join code is needed;
- the host's organization removals, roles and incidents are not known: a host member the host removed stays in the
  space for the guest until a space admin removes them in the space's chain (SECURITY.md, "Coalition guests").
"""

from __future__ import annotations

from collections.abc import Iterable

from vault.chains.common import Outside, org_id_for
from vault.chains.org import OrgState


def outside_org(root: bytes, space: str, seq: int, pins: Iterable[tuple[int, bytes]]) -> OrgState:
    """The organization state a guest's client judges the host's space with: the pinned root, no links; ``pins``:
    (seq, key) of each ``coalition.ally`` of the vouched prefix that put a pin in force (``TeamState.ally_pins``)."""
    return OrgState(org_id_for(root), root, "", b"", {}, {}, 0, root, 0,
                    outside=Outside(space, seq, frozenset(pins)))
