"""A small outside witness written from the C2SP texts alone (c2sp.org/signed-note, c2sp.org/tlog-checkpoint,
c2sp.org/tlog-cosignature), as a witness run by another organization would be: it imports nothing of ours
(hashlib, nacl, base64 and struct only).

It is configured with the log's verifier key, reads a checkpoint note, checks the log's Ed25519 signature
and that the checkpoint does not contradict the last one it cosigned (same size, same root; never smaller),
and appends its timestamped Ed25519 cosignature (signature type 0x04, ``cosignature/v1``).

``add_checkpoint`` is the C2SP tlog-witness call (c2sp.org/tlog-witness): the request body is ``old N``, the
consistency proof lines (base64, at most 63), an empty line and the note; the witness answers 409 (``Conflict``,
with its size) when N is not the size it cosigned last, 400 when N is beyond the note's size, and 422 when the RFC
9162 consistency proof (section 2.1.4.2, written out below from the RFC's text) from its last cosigned checkpoint
to the new one does not verify: a log that forked after the witness cosigned is refused.
"""

from __future__ import annotations

import base64
import hashlib
import struct

import nacl.signing

EM_DASH = "\u2014"


class Refused(Exception):
    """The witness does not cosign this note (``status``: the tlog-witness HTTP status it would answer)."""

    def __init__(self, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.status = status


class Conflict(Refused):
    """409: the request's old size is not the size this witness cosigned last (``size``)."""

    def __init__(self, size: int) -> None:
        super().__init__(f"409 Conflict: the witness cosigned size {size} last", 409)
        self.size = size


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def consistent(first: int, second: int, first_hash: bytes, second_hash: bytes, path: list[bytes]) -> bool:
    """RFC 9162 2.1.4.2: does ``path`` prove the tree of ``second`` leaves (root ``second_hash``) extends the tree of
    ``first`` leaves (root ``first_hash``)? For 0 < first < second."""
    if not 0 < first < second or not path:
        return False
    if first & (first - 1) == 0:  # an exact power of 2
        path = [first_hash, *path]
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = _node(c, fr), _node(c, sr)
            if not fn & 1:
                while not (fn & 1 or fn == 0):
                    fn, sn = fn >> 1, sn >> 1
        else:
            sr = _node(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return fr == first_hash and sr == second_hash and sn == 0


def _key_id(name: str, sig_type: int, public: bytes) -> bytes:
    return hashlib.sha256(name.encode("utf-8") + b"\x0a" + bytes([sig_type]) + public).digest()[:4]


def _b64decode(text: str) -> bytes:
    raw = base64.b64decode(text, validate=True)
    if base64.b64encode(raw).decode() != text:
        raise Refused("non-canonical base64")
    return raw


class OutsideWitness:
    def __init__(self, name: str, log_vkey: str, seed: bytes | None = None) -> None:
        self.name = name
        self._key = nacl.signing.SigningKey(seed) if seed is not None else nacl.signing.SigningKey.generate()
        self.seed = bytes(self._key)
        self.public = bytes(self._key.verify_key)
        log_name, log_id, log_key = log_vkey.split("+", 2)  # base64 may hold "+"
        key = _b64decode(log_key)
        if key[0] != 0x01 or len(key) != 33 or _key_id(log_name, 0x01, key[1:]).hex() != log_id:
            raise Refused("the log's verifier key is not a well-formed Ed25519 key")
        self.log_name, self.log_id, self.log_public = log_name, bytes.fromhex(log_id), key[1:]
        self.last: tuple[int, bytes] | None = None  # (size, root) of the last checkpoint cosigned

    @property
    def vkey(self) -> str:
        """This witness's verifier key: ``name+hex(key id)+base64(0x04 || public key)``."""
        return f"{self.name}+{_key_id(self.name, 0x04, self.public).hex()}+" + base64.b64encode(
            b"\x04" + self.public).decode()

    def check(self, note: str) -> tuple[str, int, bytes]:
        """The note's text, tree size and root, once the log's signature verifies."""
        if not note.endswith("\n") or "\n\n" not in note:
            raise Refused("not a signed note")
        cut = note.rindex("\n\n")
        text, signature_lines = note[: cut + 1], note[cut + 2 :].splitlines()
        verified = False
        for line in signature_lines:
            if not line.startswith(EM_DASH + " "):
                raise Refused("a signature line does not start with an em dash and a space")
            name, b64 = line[2:].split(" ")
            sig = _b64decode(b64)
            if name == self.log_name and sig[:4] == self.log_id:
                try:
                    nacl.signing.VerifyKey(self.log_public).verify(text.encode("utf-8"), sig[4:])
                except nacl.exceptions.BadSignatureError as e:
                    raise Refused("the log's signature does not verify") from e
                verified = True
        if not verified:
            raise Refused("the note carries no signature of the log")
        lines = text.split("\n")[:-1]
        if len(lines) < 3 or lines[0] != self.log_name:
            raise Refused("not a checkpoint of this log")
        if lines[1] != "0" and (not lines[1].isdigit() or lines[1].startswith("0")):
            raise Refused("malformed tree size")
        root = _b64decode(lines[2])
        if len(root) != 32:
            raise Refused("malformed root hash")
        return text, int(lines[1]), root

    def add_checkpoint(self, body: str, now: int) -> str:
        """The tlog-witness ``add-checkpoint`` call: the response body (this witness's cosignature line) for a
        request body ``old N`` / proof lines / empty line / note, or ``Refused`` with the status it would answer."""
        head, sep, note = body.partition("\n\n")
        lines = head.split("\n")
        if not sep or not lines[0].startswith("old ") or len(lines) > 64:
            raise Refused("400 Bad Request: not an add-checkpoint request body", 400)
        old_text = lines[0][4:]
        if not old_text.isdigit() or (old_text != "0" and old_text.startswith("0")):
            raise Refused("400 Bad Request: malformed old size", 400)
        old, proof = int(old_text), [_b64decode(line) for line in lines[1:]]
        _, size, root = self.check(note)
        if old > size:
            raise Refused("400 Bad Request: the old size is beyond the checkpoint", 400)
        last_size, last_root = self.last if self.last is not None else (0, b"")
        if old != last_size:
            raise Conflict(last_size)
        if old == size:
            if root != last_root:
                raise Refused("409 Conflict: the same size with another root", 409)
        elif old == 0:
            if proof:
                raise Refused("400 Bad Request: a proof from size 0", 400)
        elif not consistent(old, size, last_root, root, proof):
            raise Refused("422 Unprocessable Entity: the consistency proof does not verify", 422)
        return self.cosign(note, now)[len(note):]

    def cosign(self, note: str, now: int) -> str:
        """The note with this witness's cosignature line appended."""
        text, size, root = self.check(note)
        if self.last is not None and (size < self.last[0] or (size == self.last[0] and root != self.last[1])):
            raise Refused("this checkpoint contradicts the last one cosigned")
        message = f"cosignature/v1\ntime {now}\n".encode() + text.encode("utf-8")
        signature = self._key.sign(message).signature
        blob = _key_id(self.name, 0x04, self.public) + struct.pack(">Q", now) + signature
        self.last = (size, root)
        return note + f"{EM_DASH} {self.name} {base64.b64encode(blob).decode()}\n"
