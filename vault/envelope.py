"""The document envelope: one encrypted, signed version of a team document.

Upload stream (``docs/format.md`` has every byte)::

    MAGIC "MVDOC1\\n" || u32 len || prelude || body || signature(64)
    prelude = encode({"core": core_raw, "wrapped": bytes, "meta": bytes})
    core    = encode({"v", "team", "team_seq", "doc", "seq", "parent", "gen", "author", "device", "time",
                      "frame", "body_len", "key_commit", "nonce", "meta_nonce", "body"?, "body_nonce"?})
    wrapped = AEAD(team doc_key[gen], nonce,      AD_DOC_WRAP || core_raw, data_key)
    meta    = AEAD(kdf(data_key, META), meta_nonce, AD_DOC_META || core_raw, padded metadata)
    body    = format 1: secretstream header || frame*   (1 MiB plaintext frames, last one TAG_FINAL)
              format 2 (core "body": 2): frame* (ChaCha20-Poly1305 STREAM, ``vault/bodyformat.py``)
    signed  = encode({"core", "wrapped", "meta_hash": sha256(meta), "body_hash": sha256(body) / blake3(body)})
    signature = Ed25519(author device, SIG_DOC || 0x00 || signed)

The stored record (what ``ls``/``history`` return) is
``encode({"core", "wrapped", "meta", "body_hash", "sig"})``; the version id is
``H(H_VERSION || signed)``. A reader verifies the signature before trusting anything,
unwraps the data key, checks its commitment, decrypts the metadata, then decrypts the
body frame by frame; plaintext is released by the caller only after ``finish()``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

from vault import bodyformat as bf
from vault.crypto import labels
from vault.crypto import primitives as p
from vault.encoding import Fields, Value, decode, encode
from vault.errors import (
    DecryptionFailed,
    EncodingError,
    IntegrityError,
    Truncated,
)
from vault.keys import DeviceKeys
from vault.review import REVIEW_KEY, check_review_month, parse_review_by, review_month
from vault.teamkeys import TeamKey

MAGIC = b"MVDOC1\n"
FRAME = 1024 * 1024
MAX_PRELUDE = 16 * 1024
META_BUCKET = 256
META_MAX = 4096
MAX_NAME_BYTES = 1024
_CORE_FIELDS = {
    "v", "team", "team_seq", "doc", "seq", "parent", "gen", "author", "device", "time", "frame", "body_len",
    "key_commit", "nonce", "meta_nonce", "op", "review", "body", "body_nonce",
}
# What a version does, beside the plain "put" of new content (``core["op"]``, absent for a put so a put's
# bytes are as they always were): "delete" (a signed deletion: empty body, history kept), "move" (the first
# version at a new name of a document renamed; its metadata names where it came from) and "restore" (an
# older version's content brought back as the newest; its metadata names which) and "conflict" (the first
# version of a conflict copy: a member's local side of a document someone else changed meanwhile; its
# metadata names the version it conflicted with). Readers and the audit log tell them apart.
PUT, DELETE, MOVE, RESTORE, CONFLICT = "put", "delete", "move", "restore", "conflict"
OPS = (PUT, DELETE, MOVE, RESTORE, CONFLICT)


def body_length(size: int, frame: int = FRAME, body: int = bf.BODY_NEW) -> int:
    """Ciphertext body length for a plaintext of ``size`` bytes in body format ``body`` (always one final frame)."""
    return bf.body_length(size, frame, body)


def plaintext_length(body_len: int, frame: int = FRAME, body: int = bf.BODY_NEW) -> int:
    """Inverse of ``body_length``; raises ``EncodingError`` when no size fits."""
    return bf.plaintext_length(body_len, frame, body)


@dataclass(frozen=True)
class Core:
    raw: bytes
    team: str
    team_seq: int  # the team chain head the writer saw: fixes its role and key generation
    doc: str
    seq: int
    parent: str | None
    gen: int
    author: str
    device: str
    time: int
    frame: int
    body_len: int
    key_commit: bytes
    nonce: bytes
    meta_nonce: bytes
    op: str = PUT
    # the month (YYYY-MM) of the review-by date in the encrypted metadata, signed here so that the server's doc.write
    # event carries the author's word, not only a query parameter (rule document-review; absent: no date)
    review: str | None = None
    # the body format (vault/bodyformat.py): 1 (absent from the bytes) or 2, with its 4-byte nonce prefix
    body: int = bf.BODY_V1
    body_nonce: bytes | None = None

    @classmethod
    def parse(cls, raw: bytes) -> Core:
        f = Fields(decode(raw), "document header", _CORE_FIELDS)
        if f.int_("v") != 1:
            raise EncodingError("unsupported document version format")
        frame = f.int_("frame", 1)
        if frame != FRAME:
            raise EncodingError("unsupported frame size")
        body = f.int_("body", bf.BODY_V2, bf.BODY_V2) if f.has("body") else bf.BODY_V1  # an explicit 1 is not canonical
        body_nonce = f.bytes_("body_nonce", bf.PREFIX_BYTES) if body == bf.BODY_V2 else None
        if body == bf.BODY_V1 and f.has("body_nonce"):
            raise EncodingError("a format-1 body has no frame nonce prefix")
        body_len = f.int_("body_len", 0, 2**50)
        plaintext_length(body_len, frame, body)
        op = f.opt_str("op", 16) or PUT
        if op not in OPS or (f.has("op") and op == PUT):
            raise EncodingError("unknown document operation (an explicit 'put' is not canonical either)")
        if op == DELETE and body_len != body_length(0, frame, body):
            raise EncodingError("a deletion has an empty body")
        review = f.opt_str("review", 7)
        if review is not None and (op == DELETE or check_review_month(review) != review):
            raise EncodingError("a deletion carries no review month")
        return cls(
            raw=raw,
            team=f.str_("team", 64),
            team_seq=f.int_("team_seq", 1),
            doc=f.str_("doc", 64),
            seq=f.int_("seq", 1),
            parent=f.opt_str("parent", 64),
            gen=f.int_("gen", 1),
            author=f.str_("author", 64),
            device=f.str_("device", 64),
            time=f.int_("time", 0),
            frame=frame,
            body_len=body_len,
            key_commit=f.bytes_("key_commit", 32),
            nonce=f.bytes_("nonce", p.AEAD_NONCE_BYTES),
            meta_nonce=f.bytes_("meta_nonce", p.AEAD_NONCE_BYTES),
            op=op,
            review=review,
            body=body,
            body_nonce=body_nonce,
        )


def _statement(core_raw: bytes, wrapped: bytes, meta: bytes, body_hash: bytes) -> bytes:
    return encode({"core": core_raw, "wrapped": wrapped, "meta_hash": p.sha256(meta), "body_hash": body_hash})


def _key_commit(data_key: bytes) -> bytes:
    return p.kdf(data_key, labels.KDF_DATA_COMMIT)


@dataclass(frozen=True)
class Record:
    """A stored, signed document version (no body)."""

    raw: bytes
    core: Core
    wrapped: bytes
    meta: bytes
    body_hash: bytes
    sig: bytes

    @cached_property  # computed once per record: a listing asks for it several times per head
    def statement(self) -> bytes:
        return _statement(self.core.raw, self.wrapped, self.meta, self.body_hash)

    @cached_property
    def version_id(self) -> str:
        return p.tagged_hash(labels.H_VERSION, self.statement)[:16].hex()

    def verify(self, device_sign_public: bytes) -> None:
        """Check the author's signature (raises ``BadSignature``)."""
        p.verify(device_sign_public, labels.SIG_DOC, self.statement, self.sig)

    @classmethod
    def parse(cls, raw: bytes) -> Record:
        if len(raw) > MAX_PRELUDE + 256:
            raise EncodingError("document record is too large")
        return cls._of(raw, decode(raw), None)

    @classmethod
    def _of(cls, raw: bytes, value: Value, core: Core | None) -> Record:
        """The record ``raw`` encodes, ``value`` being its fields; ``core``: its core already parsed from those very
        bytes (else parsed here)."""
        f = Fields(value, "document record", {"core", "wrapped", "meta", "body_hash", "sig"})
        core_raw = f.bytes_("core", max_size=2048)
        return cls(
            raw=raw,
            core=core if core is not None and core.raw == core_raw else Core.parse(core_raw),
            wrapped=f.bytes_("wrapped", 32 + p.AEAD_TAG_BYTES),
            meta=f.bytes_("meta", max_size=META_MAX + p.AEAD_TAG_BYTES),
            body_hash=f.bytes_("body_hash", 32),
            sig=f.bytes_("sig", p.SIG_BYTES),
        )

    @classmethod
    def build(cls, core_raw: bytes, wrapped: bytes, meta: bytes, body_hash: bytes, sig: bytes,
              core: Core | None = None) -> Record:
        """The record of these parts, checked as ``parse`` checks one (the same ``Record``), without decoding the
        bytes just encoded; ``core``: ``core_raw`` as ``Core.parse`` gave it already (an upload's prelude)."""
        value: dict[str, Value] = {
            "core": core_raw, "wrapped": wrapped, "meta": meta, "body_hash": body_hash, "sig": sig,
        }
        raw = encode(value)
        if len(raw) > MAX_PRELUDE + 256:
            raise EncodingError("document record is too large")
        return cls._of(raw, value, core)


# -- metadata ---------------------------------------------------------------------------------


def pad_metadata(meta: dict[str, Value]) -> bytes:
    raw = encode(meta)
    if len(raw) + 4 > META_MAX:
        raise EncodingError("document metadata is too large (file name too long?)")
    total = -(-(len(raw) + 4) // META_BUCKET) * META_BUCKET
    return struct.pack(">I", len(raw)) + raw + b"\x00" * (total - len(raw) - 4)


def unpad_metadata(padded: bytes) -> Value:
    if len(padded) < 4 or len(padded) % META_BUCKET:
        raise EncodingError("metadata padding is malformed")
    (n,) = struct.unpack(">I", padded[:4])
    if n > len(padded) - 4 or any(padded[4 + n :]):
        raise EncodingError("metadata padding is malformed")
    return decode(padded[4 : 4 + n])  # checked by check_metadata


def check_metadata(meta: Value, op: str) -> dict[str, Value]:
    """The metadata of a version doing ``op``, checked: ``name`` and ``size`` always; a deletion may name
    where the document was moved (``moved_to``); a move names where it came from (``moved_from``: name,
    document id and version id); a restore names the version it brought back (``restored_from``)."""
    f = Fields(meta, "document metadata")
    f.str_("name", MAX_NAME_BYTES)
    size = f.int_("size", 0)
    extra = {k for k in ("moved_to", "moved_from", "restored_from", "conflict_of") if f.has(k)}
    allowed = {DELETE: {"moved_to"}, MOVE: {"moved_from"}, RESTORE: {"restored_from"},
               CONFLICT: {"conflict_of"}}.get(op, set())
    if not extra <= allowed:
        raise EncodingError(f"document metadata {sorted(extra - allowed)} does not belong to a {op!r} version")
    if op == DELETE and size:
        raise EncodingError("a deletion has size 0")
    if f.has("moved_to"):
        f.str_("moved_to", MAX_NAME_BYTES)
    for op_, key in ((MOVE, "moved_from"), (CONFLICT, "conflict_of")):
        if op == op_:
            src = f.dict_(key, {"name", "doc", "vid"})
            src.str_("name", MAX_NAME_BYTES)
            src.str_("doc", 64)
            src.str_("vid", 64)
    if op == RESTORE:
        f.int_("restored_from", 1)
    if f.has(REVIEW_KEY):  # a review-by date (rule document-review): any version but a deletion
        if op == DELETE:
            raise EncodingError("a deletion carries no review-by date")
        parse_review_by(f.str_(REVIEW_KEY, 10))
    return f.raw


# -- writing ----------------------------------------------------------------------------------


class DocWriter:
    """Encrypts one version as a stream: ``upload_prefix``, ``encrypt``*, ``finish``."""

    def __init__(self, *, key: TeamKey, team_seq: int, device: DeviceKeys, author: str, doc: str, seq: int,
                 parent: str | None, time: int, name: str, size: int, mime: str = "application/octet-stream",
                 mtime: int = 0, op: str = PUT, extra_meta: dict[str, Value] | None = None,
                 body: int = bf.BODY_NEW) -> None:
        try:
            name_bytes = name.encode("utf-8")
        except UnicodeEncodeError as e:  # e.g. a non-UTF-8 file name read with surrogateescape
            raise EncodingError("file name is not valid Unicode") from e
        if len(name_bytes) > MAX_NAME_BYTES:
            raise EncodingError("file name is too long")
        self._device = device
        self.size = size
        self._body = body
        data_key = p.random_bytes(32)
        nonce = p.random_bytes(p.AEAD_NONCE_BYTES)
        meta_nonce = p.random_bytes(p.AEAD_NONCE_BYTES)
        core: dict[str, Value] = {
            "v": 1, "team": key.team_id, "team_seq": team_seq, "doc": doc, "seq": seq, "parent": parent, "gen": key.gen,
            "author": author, "device": device.device_id, "time": time, "frame": FRAME,
            "body_len": body_length(size, FRAME, body), "key_commit": _key_commit(data_key), "nonce": nonce,
            "meta_nonce": meta_nonce,
        }
        body_nonce = None
        if body != bf.BODY_V1:  # format 2: named in the signed header (no server can downgrade it), and its prefix
            body_nonce = p.random_bytes(bf.PREFIX_BYTES)
            core.update({"body": body, "body_nonce": body_nonce})
        if op != PUT:
            if op not in OPS:
                raise EncodingError(f"unknown document operation {op!r}")
            if op == DELETE and size:
                raise EncodingError("a deletion has an empty body")
            core["op"] = op
        review_by = (extra_meta or {}).get(REVIEW_KEY)
        if isinstance(review_by, str):  # its month, signed in the header (the date stays in the metadata)
            core["review"] = review_month(parse_review_by(review_by))
        self.core_raw = encode(core)
        self.wrapped = p.aead_encrypt(key.doc_key, nonce, labels.AD_DOC_WRAP + b"\x00" + self.core_raw, data_key)
        meta: dict[str, Value] = {"name": name, "size": size, "mime": mime, "mtime": mtime, **(extra_meta or {})}
        check_metadata(meta, op)
        padded = pad_metadata(meta)
        self.meta = p.aead_encrypt(
            p.kdf(data_key, labels.KDF_DATA_META), meta_nonce, labels.AD_DOC_META + b"\x00" + self.core_raw, padded
        )
        self._stream = bf.sealer(body, data_key, body_nonce)
        self._hash = bf.body_hasher(body)
        self._hash.update(self._stream.header)
        self._pending = bytearray()
        self._consumed = 0
        self._sealed = self._absorbed = 0  # body bytes sealed, and of those hashed (seal, absorb)
        self._first = True
        self.record: Record | None = None

    def upload_prefix(self) -> bytes:
        prelude = encode({"core": self.core_raw, "wrapped": self.wrapped, "meta": self.meta})
        return MAGIC + struct.pack(">I", len(prelude)) + prelude + self._stream.header

    def upload_length(self) -> int:
        """The byte count of the whole upload stream (prefix, frames, signature), known before it is made."""
        return (len(self.upload_prefix()) - bf.header_bytes(self._body) + body_length(self.size, FRAME, self._body)
                + p.SIG_BYTES)

    def encrypt(self, chunk: p.Frame) -> p.Frame:
        """Feed plaintext; returns the ciphertext of every frame completed so far."""
        frames = self.seal(chunk)
        self.absorb(frames)
        return frames

    def seal(self, chunk: p.Frame) -> p.Frame:
        """``encrypt`` without adding the frames to the body hash: the caller passes each result to ``absorb``, in
        order, before ``finish`` (an upload hashes one piece in a second thread while the next is sealed)."""
        self._consumed += len(chunk)
        if self._consumed > self.size:
            raise IntegrityError("file grew while it was being encrypted")
        if not self._pending and len(chunk) == FRAME and self._consumed < self.size:
            frame = self._stream.push(chunk)  # a whole frame, more to come (the upload's usual case): no copy
            self._sealed += len(frame)
            return frame
        self._pending += chunk
        frames: list[p.Frame] = []
        # Keep the last full frame back while more input is due: the final frame needs TAG_FINAL.
        while len(self._pending) > FRAME or (len(self._pending) == FRAME and self._consumed < self.size):
            frames.append(self._stream.push(_take(self._pending, FRAME)))
        out = frames[0] if len(frames) == 1 else b"".join(frames)
        self._sealed += len(out)
        return out

    def absorb(self, frames: p.Frame) -> None:
        """Add what ``seal`` returned to the body hash (in the order it was returned)."""
        self._hash.update(frames)
        self._absorbed += len(frames)

    def finish(self) -> bytes:
        """The final frame and the signature; afterwards ``record`` is set."""
        if self._consumed != self.size:
            raise IntegrityError("file changed size while it was being encrypted")
        if self._absorbed != self._sealed:
            raise IntegrityError("a sealed frame was not added to the body hash")
        out = bytearray()
        if len(self._pending) == FRAME:  # size is an exact multiple: full frame, then empty final
            frame = self._stream.push(bytes(self._pending))
            self._hash.update(frame)
            out += frame
            self._pending.clear()
        final = self._stream.push(bytes(self._pending), final=True)
        self._hash.update(final)
        out += final
        body_hash = self._hash.digest()
        statement = _statement(self.core_raw, self.wrapped, self.meta, body_hash)
        sig = self._device.sign(labels.SIG_DOC, statement)
        self.record = Record.build(self.core_raw, self.wrapped, self.meta, body_hash, sig)
        return bytes(out) + sig


# -- reading ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Opened:
    """A verified record whose data key and metadata are unlocked."""

    record: Record
    data_key: bytes
    meta: dict[str, Value]

    @property
    def name(self) -> str:
        v = self.meta["name"]
        assert isinstance(v, str)
        return v

    @property
    def size(self) -> int:
        v = self.meta["size"]
        assert isinstance(v, int)
        return v

    @property
    def op(self) -> str:
        return self.record.core.op

    @property
    def deleted(self) -> bool:
        """A signed deletion (the document's head, when it is deleted)."""
        return self.record.core.op == DELETE

    @property
    def moved_to(self) -> str | None:
        v = self.meta.get("moved_to")
        return v if isinstance(v, str) else None

    @property
    def moved_from(self) -> tuple[str, str, str] | None:
        """(name, document id, version id) this document was moved from, on a move's version."""
        return self._source("moved_from")

    @property
    def conflict_of(self) -> tuple[str, str, str] | None:
        """(name, document id, version id) of the version a conflict copy conflicted with."""
        return self._source("conflict_of")

    def _source(self, key: str) -> tuple[str, str, str] | None:
        v = self.meta.get(key)
        if not isinstance(v, dict):
            return None
        name, doc, vid = v["name"], v["doc"], v["vid"]
        assert isinstance(name, str) and isinstance(doc, str) and isinstance(vid, str)
        return name, doc, vid

    @property
    def restored_from(self) -> int | None:
        v = self.meta.get("restored_from")
        return v if isinstance(v, int) else None


def open_record(record: Record, key: TeamKey) -> Opened:
    """Unwrap the data key (AD = header), check its commitment, decrypt the metadata.

    The caller must already have verified the record's signature.
    """
    core = record.core
    if key.team_id != core.team or key.gen != core.gen:
        raise DecryptionFailed("document is encrypted for another team or key generation")
    data_key = p.aead_decrypt(key.doc_key, core.nonce, labels.AD_DOC_WRAP + b"\x00" + core.raw, record.wrapped)
    if not p.equal(_key_commit(data_key), core.key_commit):
        raise DecryptionFailed()
    padded = p.aead_decrypt(
        p.kdf(data_key, labels.KDF_DATA_META), core.meta_nonce, labels.AD_DOC_META + b"\x00" + core.raw, record.meta
    )
    try:
        meta = check_metadata(unpad_metadata(padded), core.op)
    except EncodingError as e:
        raise DecryptionFailed("document metadata is malformed") from e
    review_by = meta.get(REVIEW_KEY)
    if (None if not isinstance(review_by, str) else review_month(parse_review_by(review_by))) != core.review:
        raise IntegrityError("the document's signed review month is not the month of its review-by date")
    size = meta["size"]
    if not isinstance(size, int) or body_length(size, core.frame, core.body) != core.body_len:
        raise IntegrityError("document size does not match its body length")
    return Opened(record, data_key, meta)


class BodyDecryptor:
    """Decrypts a body fed in arbitrary pieces; constant memory (one frame buffered). A frame that arrives
    whole in one piece is decrypted in place; others are gathered in one reused frame buffer."""

    def __init__(self, opened: Opened, into: Callable[[int], memoryview] | None = None) -> None:
        """``into(n)``: where a frame's ``n`` bytes of plaintext go (format 2; a lent buffer, ``DirectFile.buffer``),
        instead of new bytes; format 1 frames always come in their own buffers."""
        self._into = into
        self._core = opened.record.core
        self._expected_hash = opened.record.body_hash
        self._data_key = opened.data_key
        self._hash = bf.body_hasher(self._core.body)
        self._header = bytearray()
        self._header_len = bf.header_bytes(self._core.body)
        self._stream: bf.Opener | None = None
        self._seen = 0
        self._done = False
        self._frame_ct = self._core.frame + bf.tag_bytes(self._core.body)
        # No more than the body can put in it: a small body (a batch download's) does not zero a whole frame's MiB.
        self._frame = bytearray(min(self._frame_ct, max(0, self._core.body_len - self._header_len)))
        self._fill = 0  # bytes of the next frame gathered in _frame

    def feed(self, data: p.Frame) -> list[p.Frame]:
        """Feed ciphertext; returns the plaintext of every frame completed so far."""
        self._seen += len(data)
        if self._seen > self._core.body_len:
            raise IntegrityError("document body is longer than its signed length")
        self._hash.update(data)
        out: list[p.Frame] = []
        with memoryview(data) as view:
            pos = 0
            if self._stream is None:
                pos = min(len(view), self._header_len - len(self._header))
                self._header += view[:pos]
                if len(self._header) < self._header_len:
                    return out
                self._stream = bf.opener(self._core.body, self._data_key, self._core.body_nonce, bytes(self._header))
            at_end = self._seen == self._core.body_len
            # A full-size frame is never the final one (the final frame holds size % FRAME bytes).
            while pos < len(view):
                take = min(self._frame_ct - self._fill, len(view) - pos)
                if not self._fill and take == self._frame_ct:
                    out.append(self._pull(view[pos:pos + take], at_end and pos + take == len(view)))
                else:
                    self._frame[self._fill:self._fill + take] = view[pos:pos + take]
                    self._fill += take
                    if self._fill == self._frame_ct:
                        self._fill = 0
                        out.append(self._pull(self._frame, at_end and pos + take == len(view)))
                pos += take
            if at_end and self._fill:
                with memoryview(self._frame) as gathered:
                    out.append(self._pull(gathered[:self._fill], True))
                self._fill = 0
        return out

    def _pull(self, frame: p.Frame, last: bool) -> p.Frame:
        if self._done:
            raise IntegrityError("data after the final frame")
        assert self._stream is not None
        if self._into is not None and isinstance(self._stream, bf.FramesPull):
            plaintext, final = self._stream.pull_into(frame, last, self._into(len(frame) - p.FRAME_AEAD_TAG_BYTES))
        else:
            plaintext, final = self._stream.pull(frame, last)
        if final:
            self._done = True
            if not last:
                raise IntegrityError("final frame is not the last frame")
        return plaintext

    def finish(self) -> None:
        """Raise unless the whole signed body was seen, hashed right, and ended with TAG_FINAL."""
        if not p.equal(self._hash.digest(), self._expected_hash):
            if self._seen < self._core.body_len:
                raise Truncated("document body is truncated")
            raise IntegrityError("document body does not match its signed hash")
        if not self._done:
            raise Truncated("document body ended without its final frame")


def _take(buf: bytearray, n: int) -> bytes:
    """The first ``n`` bytes of ``buf`` as bytes, removed from it (one copy)."""
    with memoryview(buf) as view:
        head = bytes(view[:n])
    del buf[:n]
    return head
