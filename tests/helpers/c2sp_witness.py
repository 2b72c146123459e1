"""A small outside witness written from the C2SP texts alone (c2sp.org/signed-note, c2sp.org/tlog-checkpoint,
c2sp.org/tlog-cosignature), as a witness run by another organization would be: it imports nothing of ours
(hashlib, nacl, base64 and struct only).

It is configured with the log's verifier key, reads a checkpoint note, checks the log's Ed25519 signature
and that the checkpoint does not contradict the last one it cosigned (same size, same root; never smaller),
and appends its timestamped Ed25519 cosignature (signature type 0x04, ``cosignature/v1``).
"""

from __future__ import annotations

import base64
import hashlib
import struct

import nacl.signing

EM_DASH = "\u2014"


class Refused(Exception):
    """The witness does not cosign this note."""


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
