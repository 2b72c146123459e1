"""An independent verifier of timeline bundles, written from docs/format.md ("Checkpoint notes", "Timeline
bundle", "Audit log", "Canonical encoding", "Notation") alone: a second implementation that imports nothing of
ours (no vault/, security/, client/, server/), only hashlib, nacl, json, base64 and struct.

``verify(data)`` returns what the bundle proves, or raises ``Rejected`` saying why not.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from dataclasses import dataclass
from typing import Any

import nacl.bindings
import nacl.exceptions
import nacl.signing

DASH = "\u2014 "
DAY = 86400


class Rejected(Exception):
    """The bundle does not verify."""


@dataclass(frozen=True)
class Verdict:
    org: str
    member: str
    exporter_device: str
    size: int
    root: bytes
    witnesses: list[str]
    events: list[dict[str, Any]]


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def _b64(text: Any, length: int | None = None) -> bytes:
    if not isinstance(text, str):
        raise Rejected("base64 expected")
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError) as e:
        raise Rejected("bad base64") from e
    if base64.b64encode(raw).decode("ascii") != text or (length is not None and len(raw) != length):
        raise Rejected("non-canonical base64 or wrong length")
    return raw


def _keys(obj: Any, expected: set[str], what: str) -> dict[str, Any]:
    if not isinstance(obj, dict) or set(obj) != expected:
        raise Rejected(f"{what}: keys must be exactly {sorted(expected)}")
    return obj


def _ed25519(public: bytes, message: bytes, sig: bytes, what: str) -> None:
    try:
        nacl.signing.VerifyKey(public).verify(message, sig)
    except (nacl.exceptions.BadSignatureError, ValueError) as e:
        raise Rejected(f"{what}: signature does not verify") from e


# -- signed notes --------------------------------------------------------------------------------------------


def _vkey(text: Any, sig_type: int) -> tuple[str, bytes, bytes]:
    """(name, key id, public key) of a verifier key ``name+hexid+base64(type || key)``."""
    if not isinstance(text, str) or text.count("+") < 2:
        raise Rejected("malformed verifier key")
    name, hex_id, rest = text.split("+", 2)
    raw = _b64(rest, 33)
    if raw[0] != sig_type:
        raise Rejected(f"verifier key of type {raw[0]}, expected {sig_type}")
    key_id = hashlib.sha256(name.encode() + b"\n" + raw[:1] + raw[1:]).digest()[:4]
    if not name or " " in name or key_id.hex() != hex_id:
        raise Rejected("verifier key id does not match")
    return name, key_id, raw[1:]


def _note(text: str) -> tuple[str, list[tuple[str, bytes]]]:
    """(note text, [(key name, signature blob)])."""
    if not text.endswith("\n") or "\n\n" not in text or any(ord(c) < 0x20 and c != "\n" for c in text):
        raise Rejected("not a signed note")
    cut = text.rindex("\n\n")
    sigs = []
    for line in text[cut + 2 :].split("\n")[:-1]:
        if not line.startswith(DASH) or line.count(" ") != 2:
            raise Rejected("malformed signature line")
        name, blob = line[len(DASH) :].split(" ")
        sigs.append((name, _b64(blob)))
    if not sigs:
        raise Rejected("a note without signatures")
    return text[: cut + 1], sigs


def _checkpoint(note: str, log_vkey: str, witness_vkeys: list[str]) -> tuple[int, bytes, list[str]]:
    """(size, root, names of the witnesses whose cosignature verified) of a note the log signed."""
    text, sigs = _note(note)
    log_name, log_id, log_pub = _vkey(log_vkey, 0x01)
    lines = text.split("\n")
    if len(lines) != 4 or lines[0] != log_name or not lines[1].isdigit() or lines[1] != str(int(lines[1])):
        raise Rejected("malformed checkpoint note")
    size, root = int(lines[1]), _b64(lines[2], 32)
    log_sigs = [blob for name, blob in sigs if name == log_name and blob[:4] == log_id]
    if not log_sigs:
        raise Rejected("the checkpoint is not signed by the log key")
    for blob in log_sigs:
        _ed25519(log_pub, text.encode(), blob[4:], "the log's checkpoint")
    cosigned = []
    for vk in witness_vkeys:
        name, key_id, pub = _vkey(vk, 0x04)
        for sig_name, blob in sigs:
            if sig_name != name or blob[:4] != key_id:
                continue
            if len(blob) != 4 + 8 + 64:
                raise Rejected("malformed cosignature")
            (timestamp,) = struct.unpack(">Q", blob[4:12])
            _ed25519(pub, f"cosignature/v1\ntime {timestamp}\n".encode() + text.encode(), blob[12:],
                     f"witness {name}")
            cosigned.append(name)
    if not cosigned:
        raise Rejected("the checkpoint carries no cosignature by a listed witness")
    return size, root, cosigned


# -- the Merkle tree (RFC 9162 section 2.1.3.2) ----------------------------------------------------------------


def _root_from_proof(index: int, size: int, leaf_hash: bytes, proof: list[bytes]) -> bytes:
    if index >= size:
        raise Rejected("leaf index beyond the tree")
    fn, sn, r = index, size - 1, leaf_hash
    for p in proof:
        if sn == 0:
            raise Rejected("proof too long")
        if fn & 1 or fn == sn:
            r = hashlib.sha256(b"\x01" + p + r).digest()
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = hashlib.sha256(b"\x01" + r + p).digest()
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise Rejected("proof too short")
    return r


# -- the canonical encoding (a decoder, from its table) -----------------------------------------------------


def _decode(data: bytes) -> Any:
    value, end = _value(data, 0, 0)
    if end != len(data):
        raise Rejected("trailing bytes")
    return value


def _value(data: bytes, at: int, depth: int) -> tuple[Any, int]:
    if depth > 32 or at >= len(data):
        raise Rejected("truncated or too deep")
    kind = data[at : at + 1]
    at += 1
    if kind == b"N":
        return None, at
    if kind in (b"T", b"F"):
        return kind == b"T", at
    if kind == b"i":
        if at + 8 > len(data):
            raise Rejected("truncated")
        return struct.unpack(">q", data[at : at + 8])[0], at + 8
    if at + 4 > len(data):
        raise Rejected("truncated")
    (n,) = struct.unpack(">I", data[at : at + 4])
    at += 4
    if kind in (b"b", b"s"):
        if at + n > len(data):
            raise Rejected("truncated")
        raw = data[at : at + n]
        return (raw if kind == b"b" else raw.decode("utf-8")), at + n
    if kind == b"l":
        items = []
        for _ in range(n):
            item, at = _value(data, at, depth + 1)
            items.append(item)
        return items, at
    if kind == b"d":
        out: dict[str, Any] = {}
        last = None
        for _ in range(n):
            (key_len,) = struct.unpack(">I", data[at : at + 4])
            key = data[at + 4 : at + 4 + key_len]
            if len(key) != key_len or (last is not None and key <= last):
                raise Rejected("truncated or unsorted keys")
            last, at = key, at + 4 + key_len
            out[key.decode("utf-8")], at = _value(data, at, depth + 1)
        return out, at
    raise Rejected("unknown type byte")


def _event_ad(day: int, ag: int) -> bytes:
    """``"mvault/v1/audit/event" || 0x00 || {"ag": ag, "day": day}`` (keys in byte order)."""
    return (b"mvault/v1/audit/event\x00" + b"d" + struct.pack(">I", 2) + struct.pack(">I", 2) + b"ag"
            + b"i" + struct.pack(">q", ag) + struct.pack(">I", 3) + b"day" + b"i" + struct.pack(">q", day))


def _opened_event(leaf: bytes, key: bytes) -> dict[str, Any]:
    fields = _decode(leaf)
    if not isinstance(fields, dict) or set(fields) != {"ag", "c", "day", "e", "k", "v"} or fields["v"] != 1:
        raise Rejected("not an audit leaf")
    body = fields["c"]
    try:
        plain = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
            body[24:], _event_ad(fields["day"], fields["ag"]), body[:24], key)
    except nacl.exceptions.CryptoError as e:
        raise Rejected("the event's key does not open its leaf") from e
    opened = _decode(plain)
    if not isinstance(opened, dict) or set(opened) != {"e", "pad"} or opened["pad"].strip(b"\x00"):
        raise Rejected("malformed event body")
    event: dict[str, Any] = opened["e"]
    if event["time"] // DAY != fields["day"]:
        raise Rejected("the event's time is not its leaf's day")
    return event


# -- the bundle ------------------------------------------------------------------------------------------------


def verify(data: bytes, trusted_witnesses: list[str] | None = None) -> Verdict:
    """Check a bundle; ``trusted_witnesses`` (vkeys given out of band) replace the bundle's own list."""
    try:
        return _verify(data, trusted_witnesses)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, struct.error) as e:
        raise Rejected(f"malformed bundle: {e!r}") from e


def _verify(data: bytes, trusted_witnesses: list[str] | None) -> Verdict:
    try:
        outer = json.loads(data.decode("ascii"))
    except (UnicodeDecodeError, ValueError) as e:
        raise Rejected("not a JSON file") from e
    outer = _keys(outer, {"body", "device_key", "format", "sig"}, "bundle")
    if _canonical(outer) + b"\n" != data:
        raise Rejected("the file is not in canonical form")
    if outer["format"] != "mvault-timeline/v1":
        raise Rejected("unknown format")
    body_raw, device_key = _b64(outer["body"]), _b64(outer["device_key"], 32)
    _ed25519(device_key, b"mvault/v1/timeline\x00" + body_raw, _b64(outer["sig"], 64), "the bundle")
    body = _keys(json.loads(body_raw), {"v", "org", "member", "since", "until", "exported_at", "exporter", "log_key",
                                        "witness_keys", "checkpoint", "events", "left_out"}, "body")
    exporter = _keys(body["exporter"], {"member", "device"}, "exporter")
    device_id = hashlib.sha256(b"mvault/v1/device-id\x00" + device_key).digest()[:16].hex()
    if body["v"] != 1 or exporter["device"] != device_id:
        raise Rejected("unknown version, or the signing key is not the exporter's device")
    if _vkey(body["log_key"], 0x01)[0] != "mvault.invalid/audit/" + body["org"]:
        raise Rejected("the log key is not this organization's")
    witnesses = trusted_witnesses if trusted_witnesses is not None else body["witness_keys"]
    size, root, cosigned = _checkpoint(body["checkpoint"], body["log_key"], witnesses)
    since, until, member = body["since"], body["until"], body["member"]
    last = -1
    for row in body["events"]:
        row = _keys(row, {"index", "leaf", "key", "event", "proof"}, "event")
        index, leaf = row["index"], _b64(row["leaf"])
        if not isinstance(index, int) or index <= last:
            raise Rejected("events out of order")
        last = index
        proof = [_b64(h, 32) for h in row["proof"]]
        if _root_from_proof(index, size, hashlib.sha256(b"\x00" + leaf).digest(), proof) != root:
            raise Rejected(f"event {index} is not in the cosigned tree")
        event = _opened_event(leaf, _b64(row["key"], 32))
        if event != row["event"]:
            raise Rejected(f"event {index} is not what its leaf holds")
        if member not in (event["actor"], event["res"].get("member")):
            raise Rejected(f"event {index} is neither by nor about the member")
        if (since is not None and event["time"] < since) or (until is not None and event["time"] > until):
            raise Rejected(f"event {index} lies outside the bundle's window")
    return Verdict(body["org"], member, device_id, size, root, cosigned, body["events"])
