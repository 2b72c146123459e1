"""``mvault device revoke``: the revocation of one of the member's devices, dated after everything the device
signed where it must land (our own server, and the host of each coalition space we joined), and the new member key
(PUK) it rolls."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from client.client import Client
from client.sanitize import escape
from client.view import CLOCKS_APART, END_AHEAD, END_ATTEMPTS, ending_retry
from vault.errors import Conflict, NotFound, PolicyDenied
from vault.keys import PukKeys
from vault.teamkeys import box_hash

# A 409 with ``not_before`` to a revocation: the device signed something dated that late (in the same second, or its
# clock ahead: a thief's), and a revocation must come after it; signed again dated then when that is at most
# ``END_AHEAD`` ahead of the server's clock (its 409 names it) and ``END_AHEAD`` + ``CLOCKS_APART`` ahead of ours
# (client/view.py ``ending_retry``: the same bounds for an org link ending someone's rights, up to ``END_ATTEMPTS``
# signatures): a server takes a revocation dated one second beyond its clock skew (at most ``ALLOWANCE / 2``), as a
# cut (review round 24: a thief's act dated within the skew kept the revocation out; review 33: and our clock a
# second behind the server's). Further ahead (a server whose clock went back, say, or one lying) the device signed
# "in the future": the error says so, naming both clocks.


@dataclass(frozen=True)
class Revoked:
    """What ``device_revoke`` did: the new PUK generation and its boxes (by device), which the host's server of a
    coalition space this member is a guest of needs with the link (client/expulsions.py), and the revocation's time;
    ``ahead``: why it is dated ahead of this device's clock (empty when it is not)."""

    gen: int
    boxes: dict[str, bytes]
    time: int
    ahead: str = ""


async def device_revoke(s: Client, name: str,
                        elsewhere: Callable[[str], Awaitable[tuple[int, str]]] | None = None) -> Revoked:
    """Revoke a device and roll the member key (``Revoked``). Dated after everything the device signed that our
    server holds (its 409 names the time, and the link is signed again dated then: ``END_AHEAD``) and, asked
    first, what ``elsewhere`` says it signed at the host of a coalition space we joined (the time, the space's name:
    ``expulsions.signed_at_hosts``), where it is carried and cannot be signed again."""
    view = await s.chains.view()
    mine = view.members[s.session.me]
    target = next((d for d in mine.active_devices() if d.name == name or d.device_id == name), None)
    if target is None:
        raise NotFound(f"no active device named {name!r}")
    if target.device_id == s.session.device.device_id:
        raise PolicyDenied("revoke this device from another one of your devices")
    old = await s.keys.puk(mine.puk_gen)
    new = PukKeys.generate(mine.puk_gen + 1)
    boxes = {d.device_id: new.seal_for_device(s.session.me, d.box_public)
             for d in mine.active_devices() if d.device_id != target.device_id}
    body = {"device": target.device_id, "puk": {"gen": new.generation, "sign_pk": new.sign_public,
                                                "box_pk": new.box_public},
            "puk_boxes": [{"device": d, "hash": box_hash(b)} for d, b in boxes.items()],
            "prev": new.seal_previous(old)}
    # a host's word, bounded (a lying host must not date it beyond what our server takes: its carry then says)
    there, space = await elsewhere(target.device_id) if elsewhere is not None else (0, "")
    host = there + 1 if there and there + 1 <= s.session.now() + END_AHEAD + CLOCKS_APART else 0
    after = host  # the server's word: the device signed something dated that late (a revocation comes after it)
    for attempt in range(END_ATTEMPTS):
        try:
            link = await s.chains.append_member("device.revoke", body, boxes, not_before=after)
            break
        except Conflict as e:
            if attempt == END_ATTEMPTS - 1 or not e.not_before:
                raise
            after = ending_retry(e, s.session.now(), "device.revoke")
    s.session.secrets.puks[new.generation] = new
    s.session.home.save_secrets(s.session.secrets)
    ahead = link.time - s.session.now()
    who = (f"the host's server of coalition space {escape(space)} holds an act of {escape(name)} dated {there}"
           if after == host else f"your server took it only dated {after} or later, as it holds an act of "
           f"{escape(name)} dated just before")
    note = (f"the revocation is dated {link.time}, {ahead} s ahead of this device's clock: {who} (its clock ahead, "
            f"or a thief's) and a revocation must come after it; your server refuses {escape(name)} from now on all "
            "the same" if after and ahead > 0 else "")
    return Revoked(new.generation, boxes, link.time, note)
