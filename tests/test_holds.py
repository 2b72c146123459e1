"""``server/holds.py`` on plain values: who is held, from which date, until when, and the link never held (one ending a
held subject's rights). End to end: tests/test_revoker_hold.py."""

from __future__ import annotations

from server.holds import HOLD, Holds


def test_a_hold_refuses_acts_dated_from_its_date_until_it_ends() -> None:
    h = Holds()
    h.place([("member", "carol")], since=1000, now=100.0, link_type="org.role")
    assert h.refusal("carol", "d1", 999, 100.0) is None  # dated before it: taken
    refused = h.refusal("carol", "d1", 1000, 100.0)
    assert refused is not None and f"retry in {HOLD} s" in str(refused) and "acts dated 1000 or later" in str(refused)
    assert refused.not_before is None  # nothing to sign again
    assert h.refusal("dave", "d2", 1000, 100.0) is None  # someone else
    assert h.refusal("carol", "d1", 1000, 100.0 + HOLD) is None  # HOLD passed
    assert not h.held  # and forgotten


def test_a_device_hold_leaves_the_members_other_devices_free() -> None:
    h = Holds()
    h.place([("device", "laptop")], since=1000, now=0.0, link_type="device.revoke")
    refused = h.refusal("bob", "laptop", 1001, 1.0)
    assert refused is not None and "this device's rights (device.revoke)" in str(refused)
    assert h.refusal("bob", "phone", 1001, 1.0) is None


def test_a_link_ending_a_held_subjects_rights_is_not_held_and_storing_one_ends_the_hold() -> None:
    """A cut holds the member and the device; the member revoking that device herself is not held (it ends a held
    subject's rights); her other acts are. Storing a link ending the subjects' rights ends their holds."""
    h = Holds()
    h.place([("device", "laptop"), ("member", "bob")], since=1000, now=0.0, link_type="org.device.cut")
    assert h.refusal("bob", "phone", 1001, 1.0, ending=[("device", "laptop")]) is None
    assert h.refusal("bob", "phone", 1001, 1.0) is not None
    assert h.refusal("bob", "phone", 1001, 1.0, ending=[("device", "other")]) is not None
    h.end([("device", "laptop"), ("member", "bob")])
    assert h.refusal("bob", "phone", 1001, 1.0) is None


def test_a_hold_placed_again_is_extended_from_its_earlier_date() -> None:
    h = Holds()
    h.place([("member", "carol")], since=1000, now=0.0, link_type="org.role")
    h.place([("member", "carol")], since=1005, now=20.0, link_type="org.role")
    assert h.refusal("carol", "d", 1000, 20.0 + HOLD - 1) is not None  # the earlier date, the later end
    assert h.refusal("carol", "d", 1000, 20.0 + HOLD) is None
