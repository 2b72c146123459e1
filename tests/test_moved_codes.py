"""Codes with a transport pin (issue 17): invite, device-link and recovery codes of version 2 carry the pin
kind; a ``cert`` pin is still written as version 1 (older clients read it) and version 1 codes keep working;
damaged or unknown pins are refused with a clear error. The recovery server line takes a pin of any kind."""

from __future__ import annotations

import base64

import pytest

from client.admin import recovery_target
from vault.encoding import Value, encode
from vault.errors import InviteError, VaultError
from vault.invite import DEVICE_PREFIX, RECOVERY_PREFIX, InviteCode, MemberCode
from vault.pin import Pin, check_https_url

ORG, SECRET, FP = b"\x02" * 32, b"\x03" * 32, b"\x01" * 32


def _raw_invite(value: dict[str, Value]) -> str:
    return "mv1-" + base64.urlsafe_b64encode(encode(value)).decode().rstrip("=")


def test_invites_round_trip_with_each_pin_kind_and_cert_stays_version_1() -> None:
    for pin in (Pin("cert", FP), Pin("spki", b"\x09" * 32), Pin("webpki")):
        code = InviteCode("https://vault.example.org", pin.value, ORG, SECRET, pin.kind).encode()
        back = InviteCode.parse(code)
        assert back.pin == pin and back.url == "https://vault.example.org" and back.secret == SECRET
        for prefix in (DEVICE_PREFIX, RECOVERY_PREFIX):
            mc = MemberCode(prefix, "https://vault.example.org", pin.value, ORG, "m1", SECRET, pin.kind)
            assert MemberCode.parse(mc.encode(), prefix).pin == pin
    # what a version-1 writer made (the only form before this change) is read as a cert pin
    old = _raw_invite({"v": 1, "url": "https://a.example.org", "cert": FP, "org": ORG, "secret": SECRET})
    assert InviteCode.parse(old).pin == Pin("cert", FP)
    assert InviteCode("https://a.example.org", FP, ORG, SECRET).encode() == old


@pytest.mark.parametrize(("value", "error"), [
    ({"v": 2, "url": "https://a.example.org", "pin_kind": "sha1", "pin": FP, "org": ORG, "secret": SECRET},
     "transport pin this version does not know"),
    ({"v": 2, "url": "https://a.example.org", "pin_kind": "webpki", "pin": FP, "org": ORG, "secret": SECRET},
     "transport pin this version does not know"),
    ({"v": 2, "url": "https://a.example.org", "pin_kind": "spki", "pin": b"\x01", "org": ORG, "secret": SECRET},
     "transport pin this version does not know"),
    ({"v": 2, "url": "https://a.example.org", "cert": FP, "org": ORG, "secret": SECRET}, "damaged"),
    ({"v": 3, "url": "https://a.example.org", "cert": FP, "org": ORG, "secret": SECRET}, "unsupported invite version"),
])
def test_bad_pins_in_codes_are_refused(value: dict[str, Value], error: str) -> None:
    with pytest.raises(InviteError, match=error):
        InviteCode.parse(_raw_invite(value))


def test_pins_and_urls_as_typed() -> None:
    assert Pin.parse("webpki") == Pin("webpki") and str(Pin("spki", FP)) == "spki:" + FP.hex()
    for bad in ("spki", "spki:zz", "cert:0102", "sha256:" + FP.hex(), "webpki:00"):
        with pytest.raises(VaultError):
            Pin.parse(bad)
    assert check_https_url("https://vault.example.org:8443/") == "https://vault.example.org:8443"
    for bad in ("http://vault.example.org", "https://", "https://u:p@vault.example.org", "https://v.example.org/x",
                "https://v.example.org:99999"):
        with pytest.raises(VaultError):
            check_https_url(bad)


def test_the_recovery_server_line_takes_a_pin_of_any_kind() -> None:
    mc = MemberCode(RECOVERY_PREFIX, "https://a.example.org", FP, ORG, "m1", SECRET)
    assert recovery_target(mc.encode(), None, None).pin == Pin("cert", FP)
    moved = recovery_target(mc.encode(), "https://b.example.org", "spki:" + "11" * 32)
    assert (moved.url, moved.pin) == ("https://b.example.org", Pin("spki", b"\x11" * 32))
    assert recovery_target(mc.encode(), None, "webpki").pin == Pin("webpki")
    assert recovery_target(mc.encode(), None, FP.hex()).pin == Pin("cert", FP)  # a bare fingerprint, as before
    with pytest.raises(InviteError, match="--cert"):
        recovery_target(mc.encode(), None, "spki:zz")
