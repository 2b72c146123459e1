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
from client.view import View
from vault.chains.coalition import CoalitionKey
from vault.coalitionkeys import open_coalition_box, seal_coalition_seed
from vault.encoding import Value
from vault.errors import VaultError


async def seed(s: Client, name: str) -> bytes | None:
    """The seed of the coalition key the chain records for ``name``, from this device's keystore or from this
    member's box in the chain (checked against the recorded key, then kept); None when this member holds neither."""
    view = await s.chains.view()
    recorded = view.org.coalitions.get(name)
    if recorded is None:
        return None
    made = proposed(s, name).get(recorded.key)  # a rekey this device made, recorded since (adopted first: its slots
    if made is not None:  # emptied, even where the same seed came in meanwhile, or the hook would seal it for good)
        s.session.secrets.coalitions[name] = made  # the old seed is forgotten: the chain retired it
        for slot in _slots(s, name):  # and the seeds of our other proposals of the name: none can be recorded now
            del s.session.secrets.coalitions[slot]
        s.session.home.save_secrets(s.session.secrets)
        return made
    held = s.session.secrets.coalitions.get(name)
    if held is not None and CoalitionKey(held).public == recorded.key:
        return held
    share = view.org.coalition_shares.get(name, {}).get(s.session.me)
    if share is None or share.key != recorded.key:
        return None
    key = open_coalition_box(share.box, await s.keys.puk(share.puk_gen), name, recorded.key, s.session.me)
    s.session.secrets.coalitions[name] = key.seed
    s.session.home.save_secrets(s.session.secrets)
    return key.seed


async def seed_or_warn(s: Client, name: str) -> bytes | None:
    """``seed``, where a box filed for this member that does not open (a malicious proposer's or server's, session 21,
    review 28) is a warning (once per command, sanitized) and None instead of an error: for the hooks and
    ``share_missing``, which go on with the other keys. An NCC act that needs the key still fails (``seed``)."""
    try:
        return await seed(s, name)
    except VaultError as e:
        note = (f"your box of coalition key {escape(name)} in the chain does not open on this device "
                f"({escape(str(e))}): another NCC member who holds the key runs `mvault coalition rekey "
                f"{escape(name)}`; tell your Security Team")
        if note not in s.session.warnings:
            s.session.warnings.append(note)
        return None


def next_slot(name: str) -> str:
    """Where this device keeps the seed of a new key it proposed for ``name`` (client/coalitionrekey.py) until the
    chain records it (``@`` is in no name): the current seed stays under ``name`` meanwhile."""
    return f"{name}@next"


def proposed(s: Client, name: str) -> dict[bytes, bytes]:
    """The seeds of the new keys this device proposed for ``name`` and the chain has not recorded yet (public key ->
    seed): the latest under ``next_slot``, an earlier one the stale-key hook proposed anew after (session 20) under
    ``next_slot`` + ``@`` + its public key (another member could still sign it: its seed is not thrown away)."""
    slots = s.session.secrets.coalitions
    return {CoalitionKey(slots[slot]).public: slots[slot] for slot in _slots(s, name)}


def keep_proposed(s: Client, name: str, seed: bytes) -> None:
    """Keep the seed of a new key this device proposes for ``name`` (saved before it is posted: never a key on record
    we lost); a seed proposed before stays, under its own slot (``proposed``)."""
    slots, slot = s.session.secrets.coalitions, next_slot(name)
    if slot in slots:
        earlier = slots.pop(slot)
        slots[f"{slot}@{CoalitionKey(earlier).public.hex()}"] = earlier
    slots[slot] = seed
    s.session.home.save_secrets(s.session.secrets)


def _slots(s: Client, name: str) -> list[str]:
    slot = next_slot(name)
    return [k for k in s.session.secrets.coalitions if k == slot or k.startswith(slot + "@")]


async def seeds(s: Client) -> dict[str, bytes]:
    """Every coalition key this member holds (name -> seed)."""
    found = {}
    for name in sorted((await s.chains.view()).org.coalitions):
        got = await seed(s, name)
        if got is not None:
            found[name] = got
    return found


def sealable(view: View, now: int) -> list[str]:
    """The members a coalition key is sealed to at ``now``: each holding NCC whose member key no device the Security
    Team cut off holds (``share_missing``'s rule; review round 15)."""
    return sorted(m for m in view.org.members if "ncc" in view.org.roles_of(m, now)
                  and view.org.incidents.compromised(view.members[m], now) is None)


def box_for(view: View, key: CoalitionKey, name: str, member: str) -> Value:
    """One box of a ``boxes`` list (an ``org.coalition.share``'s or a rekey proposal's): ``key``'s seed sealed to
    ``member``'s current PUK."""
    ms = view.members[member]
    return {"member": member, "puk_gen": ms.puk_gen,
            "box": seal_coalition_seed(key, name, member, ms.puk_gen, ms.puk_box_public)}


def offer_boxes(view: View, key: CoalitionKey, name: str, now: int) -> list[Value]:
    """A rekey proposal's ``boxes`` (session 21, review 27; docs/format.md ``org.coalition``): the new key's seed
    sealed to each member ``sealable`` at ``now``, filed as their shares when a second NCC member records it."""
    return [box_for(view, key, name, m) for m in sealable(view, now)]


def covers(view: View, key: bytes, now: int) -> bool:
    """Whether the boxes offered with the proposed key ``key`` name every member ``sealable`` at ``now`` (the chain
    says who has one, not what it holds): a proposal that does not is signed by no client, and the hooks propose
    anew (the same verdict for every reader: a member granted NCC since the proposal is not left out)."""
    offered = view.org.coalition_offers.get(key, {})
    return all(m in offered for m in sealable(view, now))


async def opens_offer(s: Client, view: View, name: str, key: bytes) -> bool:
    """Whether this member's box offered with the proposed key ``key`` opens, with its recipient's checks, to that key:
    what a second NCC member checks before signing a proposal (session 21, review 27), so that every recording leaves
    its recorder holding the key it put in force."""
    box = view.org.coalition_offers.get(key, {}).get(s.session.me)
    if box is None:
        return False
    try:
        open_coalition_box(box.box, await s.keys.puk(box.puk_gen), name, key, s.session.me)
    except VaultError:  # IntegrityError (another key, another name or member), or a PUK generation we never had
        return False
    return True


def held_by_ncc(view: View, name: str, now: int) -> bool:
    """Whether the chain shows an NCC member now holding the key recorded for ``name`` in a box filed for them (any
    device of theirs opens it); else only the device that made it holds it, and if that device is lost, or its member
    left the NCC, no one can replace it (a rekey is signed with the current key)."""
    key = view.org.coalitions[name].key
    return any(share.key == key and "ncc" in view.org.roles_of(m, now)
               for m, share in view.org.coalition_shares.get(name, {}).items())


async def reseal_offered(s: Client, name: str, got: bytes) -> bool:
    """Right after this device's signature recorded another NCC member's proposal for ``name`` (``got``: the new
    key's seed, our own box opened): the key resealed to every other NCC member whose filed box came from the proposal
    (not one we sealed), in one ``org.coalition.share`` (session 21, review 28): a proposer's wrong box for a third
    member (it opens to nothing, or to another key) is replaced by ours. A malicious recorder could already file bad
    boxes by a share: nothing new. Members a cut device holds the key of are left out (``sealable``). Returns whether
    a share was posted."""
    view, key = await s.chains.view(), CoalitionKey(got)
    me, now, filed = s.session.me, s.session.now(), view.org.coalition_shares.get(name, {})
    boxes: list[Value] = []
    for mid in sealable(view, now):
        share = filed.get(mid)
        if mid == me or share is None or share.key != key.public or share.by == me:
            continue  # ours, none filed (``share_missing`` seals it), another key's, or one we sealed
        boxes.append(box_for(view, key, name, mid))
    if not boxes:
        return False
    await s.chains.append_org("org.coalition.share", {"name": name, "key": key.public, "boxes": boxes})
    return True


async def share_missing(s: Client) -> list[str]:
    """Seal each coalition key this device holds to every member holding NCC now who has no box of it for their
    current PUK (an ``org.coalition.share`` per key). Returns the names of the keys shared."""
    view = await s.chains.view()
    now = s.session.now()
    ncc = sorted(m for m in view.org.members if "ncc" in view.org.roles_of(m, now))
    shared = []
    for name in sorted(view.org.coalitions):
        got = await seed_or_warn(s, name)
        if got is None:
            continue
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
            boxes.append(box_for(view, key, name, mid))
        if boxes:
            await s.chains.append_org("org.coalition.share", {"name": name, "key": key.public, "boxes": boxes})
            shared.append(name)
    return shared
