"""The incident acts as steps of the authority state machine (tests/test_authority_model.py, issue 18):
``org.device.cut``, ``org.suspect`` (a pause without a cut: a suspected infiltrator) and ``org.clear`` signed by
anyone (a member without the Security Team role, NCC while the Security Team has a member, the paused member
clearing themselves, with any of their devices, cut ones too), naming any member's device (another member's, one
revoked or cut already), dated now or back to the previous organization link or before it. Each is appended and
replayed with the real code and must be accepted exactly when the reference model (tests/helpers/authority_model.py)
entitles it; accepted ones become history, and from then on every invariant of the machine (every act judged, every
key generation boxed, nobody opening a generation made after they lost their place) holds with the cuts and
pauses."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import rule

from tests.helpers.authority_machine import MachineBase, idx
from tests.helpers.chain_world import Person
from vault.keys import DeviceKeys
from vault.links import Link


class IncidentSteps(MachineBase):
    def any_device(self, q: Person, i: int) -> DeviceKeys:
        found: DeviceKeys = self.pick([*self.w.devices[q.id].values(), *self.revoked[q.id]], i)
        return found

    def incident(self, q: Person, d: DeviceKeys, t: int, type_: str, body: dict[str, Any], want: bool) -> bool:
        """Append the incident link and replay it with the real code: accepted exactly when ``want``."""
        got = self.org_link_judged(self.w.org_link(q, type_, body, time=t, append=False, by=d), want, type_)
        if got:
            self.w.time = max(self.w.time, t)
            self.m.org_link(t)
        return got

    def signed_last(self, member: str) -> int:
        """The latest time of any link ``member`` signed, in any chain: a cut dated before it would make acts the
        server accepted refused by every replay, so the server refuses such a cut (``check_not_before``)."""
        chains = [self.w.org_links, *(t.links for t in self.teams), *(p.chain for p in self.people())]
        return max((link.time for chain in chains for link in chain if link.signer == member), default=0)

    def last_links(self, target: Person, lost: DeviceKeys) -> dict[str, Link]:
        """What the cutter's client names in ``last``: the last link ``lost`` signed in ``target``'s member chain and
        in each team chain (read off the links this machine appended, not the real code's state)."""
        chains = [(target.id, target.chain), *((t.team_id, t.links) for t in self.teams)]
        found = {cid: [lk for lk in links if lk.device == lost.device_id] for cid, links in chains}
        return {cid: signed[-1] for cid, signed in found.items() if signed}

    def current(self, m: str) -> bool:
        e = self.m.entry(m)
        return e is not None and e.status != "removed"

    def signer(self, i: int, action: str, t: int, honest: bool) -> Person:
        """Anyone (``honest``: someone the model entitles to ``action`` with their main device, when there is one)."""
        fit = [q for q in self.people() if self.m.entitled(q.id, self.dev(q).device_id, t, action)] if honest else []
        found: Person = self.pick(fit or self.people(), i)
        return found

    @rule(signer=idx, whom=idx, dev=idx, back=st.sampled_from([0, 0, 1, 30, 5000]), main=st.booleans())
    def device_cut(self, signer: int, whom: int, dev: int, back: int, main: bool) -> None:
        t = self.now + 10 - back
        q, target = self.signer(signer, "org.device.cut", t, main), self.pick(self.people(), whom)
        d = self.dev(q) if main else self.any_device(q, dev)
        lost = (self.pick(list(self.w.devices[target.id].values()), dev) if main  # now and then another member's
                else self.any_device(self.pick(self.people(), whom + dev % 2), dev))
        if t <= self.signed_last(target.id) or t <= max((team.links[-1].time for team in self.teams), default=0):
            return  # the server refuses it with 409 before any replay (server/directory.py check_not_before)
        want = (t >= self.m.org_times[-1] and self.m.entitled(q.id, d.device_id, t, "org.device.cut")
                and self.current(target.id) and self.m.device_known(target.id, lost.device_id, t)
                and (target.id, lost.device_id) not in {(m, c) for m, c, _, _ in self.m.cuts})
        last = self.last_links(target, lost)
        body = {"member": target.id, "device": lost.device_id,
                "last": [{"chain": c, "seq": lk.seq, "hash": lk.hash} for c, lk in sorted(last.items())]}
        if self.incident(q, d, t, "org.device.cut", body, want):
            self.m.cuts.append((target.id, lost.device_id, t, {c: lk.seq for c, lk in last.items()}))
            pauses = self.m.pauses.setdefault(target.id, [])
            if not pauses or pauses[-1][1] is not None:
                pauses.append([t, None])
        self.sync("device_cut")

    @rule(signer=idx, whom=idx, dev=idx, back=st.sampled_from([0, 0, 30]), main=st.booleans())
    def pause_clear(self, signer: int, whom: int, dev: int, back: int, main: bool) -> None:
        t = self.now + 10 - back
        q = self.signer(signer, "org.clear", t, main)
        paused_now = [x for x in self.people() if any(c is None for _, c in self.m.pauses.get(x.id, []))]
        target = self.pick(paused_now if main else [], whom) or self.pick(self.people(), whom)
        d = self.dev(q) if main else self.any_device(q, dev)
        pauses = self.m.pauses.get(target.id, [])
        paused = bool(pauses) and pauses[-1][1] is None
        want = (t >= self.m.org_times[-1] and self.m.entitled(q.id, d.device_id, t, "org.clear")
                and self.current(target.id) and paused and q.id != target.id)
        if self.incident(q, d, t, "org.clear", {"member": target.id}, want):
            pauses[-1][1] = t
        self.sync("pause_clear")

    @rule(signer=idx, whom=idx, dev=idx, main=st.booleans())
    def suspect(self, signer: int, whom: int, dev: int, main: bool) -> None:
        """``org.suspect`` (issue 18, a suspected infiltrator): a pause without a cut, lifted by ``org.clear``."""
        t = self.now + 10
        q = self.signer(signer, "org.suspect", t, main)
        target = self.pick(self.people(), whom)
        d = self.dev(q) if main else self.any_device(q, dev)
        if t <= self.signed_last(target.id):
            return  # a suspicion ends rights as a cut's pause does: the server's 409 (check_not_before, review 37)
        pauses = self.m.pauses.get(target.id, [])
        open_pause = bool(pauses) and pauses[-1][1] is None
        want = (self.m.entitled(q.id, d.device_id, t, "org.suspect") and self.current(target.id)
                and not open_pause and q.id != target.id)
        if self.incident(q, d, t, "org.suspect", {"member": target.id}, want):
            self.m.pauses.setdefault(target.id, []).append([t, None])
        self.sync("suspect")
