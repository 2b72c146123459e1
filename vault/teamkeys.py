"""Team key generations and the boxes that carry them to members.

A generation is a 32-byte seed ``s_g``. From it we derive the document key, the message
key, the name key (for name lookups the server cannot read) and a canary that the
rotation link publishes so every member can check the key it unboxed. A box is
``SealedBox(puk_box_public, encode({team, gen, member, puk_gen, seed}))``; the chain
commits to ``H(H_BOX || box)`` for each (generation, member).
"""

from __future__ import annotations

from dataclasses import dataclass

from vault.chains import BoxCommitment
from vault.crypto import labels
from vault.crypto import primitives as p
from vault.encoding import Fields, decode, encode
from vault.errors import EncodingError, IntegrityError
from vault.keys import PukKeys


@dataclass(frozen=True)
class TeamKey:
    """One generation of a team key.

    ``names`` is the team's name key, the same in every generation so a document keeps
    one id across rotations (and members who joined after a rotation, in a team without
    history, still find it). It is generated with the team (as the KDF of the first
    seed) and travels inside every key box.
    """

    team_id: str
    gen: int
    seed: bytes
    names: bytes | None = None

    @classmethod
    def generate(cls, team_id: str, gen: int) -> TeamKey:
        return cls(team_id, gen, p.random_bytes(32))

    @property
    def doc_key(self) -> bytes:
        return p.kdf(self.seed, labels.KDF_TEAM_DOC)

    @property
    def msg_key(self) -> bytes:
        return p.kdf(self.seed, labels.KDF_TEAM_MSG)

    @property
    def name_key(self) -> bytes:
        return self.names if self.names is not None else p.kdf(self.seed, labels.KDF_TEAM_NAME)

    @property
    def canary(self) -> bytes:
        return p.kdf(self.seed, labels.KDF_TEAM_CANARY + b"\x00" + encode({"team": self.team_id, "gen": self.gen}))

    def doc_id(self, name: str) -> str:
        """The document id for a name: a keyed hash, so the server never learns names."""
        try:
            raw = name.encode("utf-8")
        except UnicodeEncodeError as e:  # e.g. a non-UTF-8 file name read with surrogateescape
            raise EncodingError("document name is not valid Unicode") from e
        return p.kdf(self.name_key, labels.H_DOC_NAME + b"\x00" + raw, 16).hex()

    def seal_for(self, member_id: str, puk_gen: int, puk_box_public: bytes, names: bytes | None = None) -> bytes:
        """The box for one member; ``names`` is the team's name key (default: this key's)."""
        payload = encode({"team": self.team_id, "gen": self.gen, "member": member_id, "puk_gen": puk_gen,
                          "seed": self.seed, "names": names if names is not None else self.name_key})
        return p.seal(puk_box_public, payload)


def seal_history(new: TeamKey, old: TeamKey) -> bytes:
    """The previous generation's seed encrypted under the new one (history for new members)."""
    ad = labels.AD_TEAM_PREV + b"\x00" + encode({"team": new.team_id, "gen": old.gen})
    return p.aead_seal(p.kdf(new.seed, labels.KDF_TEAM_HISTORY), ad, old.seed)


def open_history(new: TeamKey, blob: bytes, canary: bytes) -> TeamKey:
    """The previous generation from ``new``'s history blob, checked against its canary."""
    gen = new.gen - 1
    ad = labels.AD_TEAM_PREV + b"\x00" + encode({"team": new.team_id, "gen": gen})
    if len(blob) < p.AEAD_NONCE_BYTES + p.AEAD_TAG_BYTES:
        raise IntegrityError("team key history is malformed")
    seed = p.aead_open(p.kdf(new.seed, labels.KDF_TEAM_HISTORY), ad, blob)
    key = TeamKey(new.team_id, gen, seed, new.name_key)
    if not p.equal(key.canary, canary):
        raise IntegrityError("team key history does not match the generation's canary")
    return key


def box_hash(box: bytes) -> bytes:
    return p.tagged_hash(labels.H_BOX, box)


def open_team_box(box: bytes, puk: PukKeys, team_id: str, member_id: str, commitment: BoxCommitment,
                  canary: bytes) -> TeamKey:
    """Open a team key box and check it against what the chain committed to."""
    if not p.equal(box_hash(box), commitment.hash):
        raise IntegrityError("team key box does not match the chain's commitment")
    if commitment.member_id != member_id or commitment.puk_gen != puk.generation:
        raise IntegrityError("team key box is committed for another member or key")
    try:
        f = Fields(decode(puk.open_sealed(box)), "team key box",
                   {"team", "gen", "member", "puk_gen", "seed", "names"})
        key = TeamKey(f.str_("team", 64), f.int_("gen", 1), f.bytes_("seed", 32), f.opt_bytes("names", 32))
        bound = (f.str_("member", 64), f.int_("puk_gen", 1))
    except EncodingError as e:
        raise IntegrityError(f"team key box is malformed: {e}") from e
    if key.team_id != team_id or key.gen != commitment.gen or bound != (member_id, puk.generation):
        raise IntegrityError("team key box is bound to another team, generation or member")
    if not p.equal(key.canary, canary):
        raise IntegrityError("team key does not match the generation's canary")
    return key
