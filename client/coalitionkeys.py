"""Every NCC member holds the organization's coalition keys (issue 20; docs/lifecycle.md section 2, "Every NCC member
holds the coalition key"): the device that holds a key seals it to each NCC member's PUK in an
``org.coalition.share`` of the organization's chain, and any NCC member's device opens its box there when it first
needs the key (``coalition approve``, an expulsion's ``coalition.expel`` statements), then keeps it in its keystore.

``share_missing`` runs where a key holder acts for the NCC: after ``coalition pairing-code`` (the key is recorded),
``coalition approve``, and the grant of NCC to a member (the adding client seals to the new member). It seals nothing
to a member whose member key (PUK) a device the Security Team cut off still holds (``Incidents.compromised``, as team
keys are withheld): their box waits until they revoked that device from a clean one (review round 15).
"""

from __future__ import annotations

from client.client import Client
from client.sanitize import escape
from vault.chains.coalition import CoalitionKey
from vault.coalitionkeys import open_coalition_box, seal_coalition_seed
from vault.encoding import Value


async def seed(s: Client, name: str) -> bytes | None:
    """The seed of the coalition key the chain records for ``name``, from this device's keystore or from this
    member's box in the chain (checked against the recorded key, then kept); None when this member holds neither."""
    view = await s.chains.view()
    recorded = view.org.coalitions.get(name)
    if recorded is None:
        return None
    held = s.session.secrets.coalitions.get(name)
    if held is not None and CoalitionKey(held).public == recorded.key:
        return held
    made = s.session.secrets.coalitions.get(next_slot(name))  # a rekey this device made, recorded since
    if made is not None and CoalitionKey(made).public == recorded.key:
        s.session.secrets.coalitions[name] = made  # the old seed is forgotten: the chain retired it
        del s.session.secrets.coalitions[next_slot(name)]
        s.session.home.save_secrets(s.session.secrets)
        return made
    share = view.org.coalition_shares.get(name, {}).get(s.session.me)
    if share is None or share.key != recorded.key:
        return None
    key = open_coalition_box(share.box, await s.keys.puk(share.puk_gen), name, recorded.key, s.session.me)
    s.session.secrets.coalitions[name] = key.seed
    s.session.home.save_secrets(s.session.secrets)
    return key.seed


def next_slot(name: str) -> str:
    """Where this device keeps the seed of a new key it proposed for ``name`` (client/coalitionrekey.py) until the
    chain records it (``@`` is in no name): the current seed stays under ``name`` meanwhile."""
    return f"{name}@next"


async def seeds(s: Client) -> dict[str, bytes]:
    """Every coalition key this member holds (name -> seed)."""
    found = {}
    for name in sorted((await s.chains.view()).org.coalitions):
        got = await seed(s, name)
        if got is not None:
            found[name] = got
    return found


async def share_missing(s: Client) -> list[str]:
    """Seal each coalition key this device holds to every member holding NCC now who has no box of it for their
    current PUK (an ``org.coalition.share`` per key). Returns the names of the keys shared."""
    view = await s.chains.view()
    now = s.session.now()
    ncc = sorted(m for m in view.org.members if "ncc" in view.org.roles_of(m, now))
    shared = []
    for name, got in (await seeds(s)).items():
        key, filed = CoalitionKey(got), view.org.coalition_shares.get(name, {})
        boxes: list[Value] = []
        for mid in ncc:
            ms = view.members[mid]
            if mid in filed and (filed[mid].key, filed[mid].puk_gen) == (key.public, ms.puk_gen):
                continue
            if view.org.incidents.compromised(ms, now) is not None:  # as a team key's rotation withholds it
                s.session.warnings.append(  # (review round 15: the box went to a PUK the cut device holds)
                    f"not sealing coalition key {escape(name)} to {escape(view.name_of(mid))}: a device of theirs the "
                    "Security Team cut off holds their member key; sealed at the next NCC act after they revoke it")
                continue
            boxes.append({"member": mid, "puk_gen": ms.puk_gen,
                          "box": seal_coalition_seed(key, name, mid, ms.puk_gen, ms.puk_box_public)})
        if boxes:
            await s.chains.append_org("org.coalition.share", {"name": name, "key": key.public, "boxes": boxes})
            shared.append(name)
    return shared
