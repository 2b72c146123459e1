"""The one rule of a coalition key to replace (issue 20, session 18; docs/lifecycle.md "Every NCC member holds the
coalition key"): a key is stale when someone the organization's chain says may hold its seed (``holders``: every
signer of an ``org.coalition`` naming it, proposal or recording, and every member filed a box of it) does not hold NCC
now, whichever way they lost it (``org.role`` revoke, ``org.remove``, or the role's end by its term, which no link
marks). The clients act on it (client/coalitionrekey.py ``when_stale``; ``coalition ls``/``show``)."""

from __future__ import annotations

from vault.chains.org import OrgState


def holders(org: OrgState, name: str) -> frozenset[str]:
    """Who the chain says may hold the seed of the coalition key recorded for ``name``: each signer of an
    ``org.coalition`` naming it (its maker's device keeps the seed; the chain cannot tell which signer made it) and
    each member filed a box of it (a box of an earlier key of the name gives nothing of this one)."""
    entry = org.coalitions[name]
    boxed = {m for m, share in org.coalition_shares.get(name, {}).items() if share.key == entry.key}
    return org.coalition_signers.get(entry.key, frozenset({entry.by})) | boxed


def stale_keys(org: OrgState, now: int) -> dict[str, tuple[str, ...]]:
    """Each coalition key to replace at time ``now`` (name -> the holders, sorted, who do not hold NCC then: an NCC
    role revoked or ended by its term, a member removed). A member holding NCC again holds it: not stale for them."""
    found = {}
    for name in sorted(org.coalitions):
        gone = tuple(sorted(m for m in holders(org, name) if "ncc" not in org.roles_of(m, now)))
        if gone:
            found[name] = gone
    return found
