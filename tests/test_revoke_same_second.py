"""A device revoked in the very second it signed something (session 19, found by the lead's full run: the seized
laptop's `coalition rekey` and hank's `device revoke laptop` in one second). A device is active before its
revocation's second, not in it (``Device.active_at``), so an organization link it signed in that second is refused by
every replay once the revocation is stored: the whole organization chain stopped replaying for every member. The
server takes a revocation only dated strictly after what the device signed (as a cut), answering 409 with
``not_before``; the client signs it again dated then (``client/admin.py`` ``device_revoke``)."""

from __future__ import annotations

import pytest

from tests.helpers.chain_world import MWorld
from tests.test_twoperson_device import _directory
from vault.errors import ChainError, Conflict
from vault.keys import PukKeys


def test_a_revocation_in_the_second_of_the_devices_last_act_is_refused_with_the_next_second() -> None:
    w = MWorld()
    dora, hank, gina = w.founder, w.admit("hank"), w.admit("gina")
    w.role(dora, hank, "ncc")
    tablet = w.add_device(hank, "tablet")
    t = w.tick()
    w.org_link(hank, "org.role", {"member": gina.id, "role": "ncc", "grant": True, "until": None}, by=tablet, time=t)
    d = _directory(w)
    first = w.member_link(hank, "device.revoke", w.revoke_body(hank, tablet, PukKeys.generate(2)), time=t,
                          append=False)
    hank.chain.append(first)
    with pytest.raises(ChainError, match="not an active device"):
        w.org()  # what every replay would do had the server taken it (before: it did)
    hank.chain.pop()
    with pytest.raises(Conflict) as refused:
        d.check_not_before(first)
    assert refused.value.not_before == t + 1
    w.revoke_device(hank, tablet, time=t + 1)  # signed again dated then: taken, and the chain replays
    d.check_not_before(hank.chain[-1])
    d.commit_member(d.check_member_link(hank.chain[-1]))
    assert "ncc" not in w.org().roles_of(gina.id)  # a proposal only, and void: the tablet is gone
