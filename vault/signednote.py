"""C2SP signed notes, checkpoints and witness cosignatures (docs/format.md, "Checkpoint notes").

The audit log's checkpoints are also published as C2SP ``tlog-checkpoint`` notes
(https://c2sp.org/tlog-checkpoint, https://c2sp.org/signed-note), so that a witness outside the
organization, running any C2SP tool, can check and cosign them (https://c2sp.org/tlog-cosignature,
``cosignature/v1``)::

    mvault.invalid/audit/<org id>          origin
    1234                                   tree size
    <base64 root hash>
                                           (blank line)
    — mvault.invalid/audit/<org id> <base64(key id || Ed25519 signature of the text above)>
    — witness.example/w1 <base64(key id || u64 timestamp || Ed25519 signature)>

The log key signs the note text with Ed25519 as C2SP says (no domain tag): a note text holds no 0x00
byte, and every tagged message of ours does (``vault/crypto/primitives.sign_plain``). Pure functions:
no I/O, no clock.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
from dataclasses import dataclass

from vault.crypto import primitives as p
from vault.errors import BadSignature, EncodingError

ED25519: int = 0x01  # signature type: Ed25519 over the note text (signed-note)
COSIGNATURE_V1: int = 0x04  # signature type: timestamped Ed25519 witness cosignature (tlog-cosignature)
DASH = "\u2014 "  # em dash and a space open every signature line
MAX_NOTE = 16 * 1024  # bytes of a whole note we read
MAX_SIGNATURES = 32  # C2SP: verifiers must accept at least 16
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,18}")
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")


def origin_of(org_id: str) -> str:
    """The origin line (and the log key's name) of this organization's audit log."""
    return f"mvault.invalid/audit/{org_id}"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def strict_b64(text: str, what: str) -> bytes:
    """Standard base64 with padding, in its one canonical form (other encodings of the same bytes refused)."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as e:
        raise EncodingError(f"{what} is not base64") from e
    if _b64(raw) != text:
        raise EncodingError(f"{what} is not canonical base64")
    return raw


def check_key_name(name: str) -> str:
    if not name or "+" in name or any(c.isspace() for c in name) or _CONTROL.search(name):
        raise EncodingError("a key name is non-empty, without spaces, plus signs or control characters")
    return name


def key_id(name: str, sig_type: int, public: bytes) -> bytes:
    """``SHA-256(key name || 0x0A || signature type || public key)[:4]``."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([sig_type]) + public).digest()[:4]


@dataclass(frozen=True)
class VerifierKey:
    """A signed-note verifier key: ``<name>+<hex key id>+<base64(type || public key)>``."""

    name: str
    sig_type: int
    public: bytes

    @property
    def id(self) -> bytes:
        return key_id(self.name, self.sig_type, self.public)

    @property
    def text(self) -> str:
        return f"{self.name}+{self.id.hex()}+{_b64(bytes([self.sig_type]) + self.public)}"

    @classmethod
    def parse(cls, text: str) -> VerifierKey:
        parts = text.split("+", 2)  # the name holds no "+", the base64 key may
        if len(parts) != 3 or len(parts[1]) != 8:
            raise EncodingError("a verifier key reads <name>+<8 hex digits>+<base64 key>")
        name = check_key_name(parts[0])
        data = strict_b64(parts[2], "the verifier key")
        if len(data) != 33 or data[0] not in (ED25519, COSIGNATURE_V1):
            raise EncodingError("a verifier key here is an Ed25519 key (type 0x01 or 0x04, 32 bytes)")
        key = cls(name, data[0], data[1:])
        if key.id.hex() != parts[1]:
            raise EncodingError("the verifier key's id does not match its name and key")
        return key


@dataclass(frozen=True)
class CheckpointText:
    """The note text of a checkpoint: origin, tree size, root hash (no extension lines here)."""

    origin: str
    size: int
    root: bytes

    @property
    def text(self) -> str:
        return f"{self.origin}\n{self.size}\n{_b64(self.root)}\n"

    @classmethod
    def parse(cls, text: str) -> CheckpointText:
        lines = text.split("\n")
        if len(lines) != 4 or lines[3] != "" or not lines[0]:
            raise EncodingError("a checkpoint note has three lines: origin, tree size, root hash")
        if not _DECIMAL.fullmatch(lines[1]):
            raise EncodingError("the tree size is a decimal number without leading zeroes")
        root = strict_b64(lines[2], "the root hash")
        if len(root) != 32:
            raise EncodingError("the root hash is 32 bytes")
        return cls(lines[0], int(lines[1]), root)


@dataclass(frozen=True)
class SignatureLine:
    name: str
    key_id: bytes
    sig: bytes  # what follows the key id

    @property
    def line(self) -> str:
        return f"{DASH}{self.name} {_b64(self.key_id + self.sig)}\n"


@dataclass(frozen=True)
class Note:
    text: str  # ends with a newline
    signatures: tuple[SignatureLine, ...]

    @property
    def serialized(self) -> str:
        return self.text + "\n" + "".join(s.line for s in self.signatures)

    @classmethod
    def parse(cls, data: str) -> Note:
        try:
            size = len(data.encode())
        except UnicodeEncodeError as e:  # a lone surrogate: not UTF-8 text
            raise EncodingError("a note is UTF-8 text") from e
        if size > MAX_NOTE:
            raise EncodingError(f"a note is at most {MAX_NOTE} bytes")
        if _CONTROL.search(data) or not data.endswith("\n"):
            raise EncodingError("a note is text ending in a newline, without control characters")
        cut = data.rfind("\n\n")
        if cut < 0:
            raise EncodingError("a note has a blank line before its signatures")
        text, lines = data[: cut + 1], data[cut + 2 :].split("\n")[:-1]
        if not lines or len(lines) > MAX_SIGNATURES:
            raise EncodingError(f"a note has 1 to {MAX_SIGNATURES} signature lines")
        sigs = []
        for line in lines:
            name, sep, b64 = line.removeprefix(DASH).partition(" ")
            if not line.startswith(DASH) or not sep:
                raise EncodingError("a signature line reads: em dash, space, key name, space, base64")
            raw = strict_b64(b64, "a signature")
            if len(raw) < 5:
                raise EncodingError("a signature holds a key id and a signature")
            sigs.append(SignatureLine(check_key_name(name), raw[:4], raw[4:]))
        return cls(text, tuple(sigs))

    def lines_of(self, key: VerifierKey) -> list[SignatureLine]:
        return [s for s in self.signatures if s.name == key.name and s.key_id == key.id]


def log_key(org_id: str, log_public: bytes) -> VerifierKey:
    return VerifierKey(origin_of(org_id), ED25519, log_public)


def sign_checkpoint_note(log_secret: bytes, key: VerifierKey, cp: CheckpointText) -> Note:
    """The checkpoint as a note signed by the log key (Ed25519 over the note text)."""
    return Note(cp.text, (SignatureLine(key.name, key.id, p.sign_plain(log_secret, cp.text.encode())),))


def verify_log_signature(note: Note, key: VerifierKey) -> None:
    """Raises ``BadSignature`` unless a signature line of ``key`` verifies (and none of it fails)."""
    lines = note.lines_of(key)
    if not lines:
        raise BadSignature("the note carries no signature of the log key")
    for line in lines:
        p.verify_plain(key.public, note.text.encode(), line.sig)


def cosignature_message(text: str, timestamp: int) -> bytes:
    """What a ``cosignature/v1`` signs: two header lines, then the checkpoint's note text."""
    return f"cosignature/v1\ntime {timestamp}\n{text}".encode()


def verify_cosignature(note: Note, line: SignatureLine, key: VerifierKey) -> int:
    """The timestamp of ``line``, a ``cosignature/v1`` of ``note`` by ``key``; ``BadSignature`` otherwise."""
    if key.sig_type != COSIGNATURE_V1 or (line.name, line.key_id) != (key.name, key.id) or len(line.sig) != 72:
        raise BadSignature("not a cosignature/v1 by this witness key")
    (timestamp,) = struct.unpack(">Q", line.sig[:8])
    if timestamp > 2**63 - 1:
        raise BadSignature("a cosignature's timestamp exceeds 2^63 - 1")
    p.verify_plain(key.public, cosignature_message(note.text, timestamp), line.sig[8:])
    return int(timestamp)


def witness_cosignatures(note: Note, keys: list[VerifierKey]) -> list[tuple[VerifierKey, SignatureLine, int]]:
    """Every cosignature of ``note`` by one of ``keys``, verified: ``(key, line, timestamp)``. Lines of
    unknown keys are ignored (C2SP); a line of a known key that does not verify refuses the note."""
    out = []
    for key in keys:
        for line in note.lines_of(key):
            out.append((key, line, verify_cosignature(note, line, key)))
    return out
