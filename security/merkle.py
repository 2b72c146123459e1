"""RFC 9162 (Certificate Transparency v2, section 2.1) Merkle tree over SHA-256.

Leaves hash as SHA-256(0x00 || data) and interior nodes as SHA-256(0x01 || left || right), so a
leaf can never pass for a node. The tree head of n > 1 leaves splits them at k, the largest power of
two below n, into a complete left subtree D[0:k] and a right part D[k:n]; the empty tree's head is
SHA-256(""). Inclusion proofs (PATH) and consistency proofs (PROOF) are the sibling and subtree
hashes of that recursion, and the verifiers are the bit-walking algorithms of sections 2.1.3.2/2.1.4.2.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence
from typing import Final

from vault.errors import ProofError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "MerkleTree",
    "ProofError",
    "leaf_hash",
    "node_hash",
    "root_of",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE: Final = 32
EMPTY_ROOT: Final[bytes] = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    """SHA-256(0x00 || data): the hash of one log entry."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right): the hash of an interior node."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly below ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


def root_of(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH(D[n]) over already-hashed leaves, level by level.

    The RFC's recursion splits at the largest power of two below n, so the left part is always a
    complete subtree: hashing each level in pairs from the left and carrying an odd last node up
    unchanged builds exactly that tree (what ``MerkleTree`` stores, and what the CT vectors check),
    with one SHA-256 per interior node and no recursion.
    """
    if not leaf_hashes:
        return EMPTY_ROOT
    sha256 = hashlib.sha256
    join = b"".join
    level = list(leaf_hashes)
    while len(level) > 1:
        pairs = iter(level)  # zipped with itself: (0, 1), (2, 3), ...; an odd last one is left over
        upper = [sha256(join((b"\x01", left, right))).digest() for left, right in zip(pairs, pairs, strict=False)]
        if len(level) & 1:
            upper.append(level[-1])
        level = upper
    return level[0]


def _check_hash(value: bytes, what: str) -> bytes:
    if not isinstance(value, bytes | bytearray) or len(value) != HASH_SIZE:
        raise ValueError(f"{what} must be {HASH_SIZE} bytes")
    return bytes(value)


def _check_int(value: int, what: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} must be an integer")
    if not lo <= value <= hi:
        raise ValueError(f"{what} {value} is out of range [{lo}, {hi}]")
    return value


class MerkleTree:
    """Append-only, in memory: stores complete-subtree hashes per level so append is O(log n) amortized and
    root/proofs for any size <= current size are O(log^2 n) at worst (never O(n)).

    ``_levels[h][i]`` is the hash of the complete subtree over leaves ``[i * 2**h, (i + 1) * 2**h)``;
    level ``h`` always holds exactly ``size >> h`` entries. Every left subtree in the RFC recursion is
    such a complete, aligned subtree, so any tree head is a fold of at most log2(n) stored hashes.
    """

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        self._levels: list[list[bytes]] = [[]]
        for h in leaf_hashes:
            self.append(h)

    def append(self, leaf_hash: bytes) -> int:
        """Add one leaf hash; returns the new leaf's index."""
        value = _check_hash(leaf_hash, "leaf hash")
        levels = self._levels
        levels[0].append(value)
        level = 0
        while len(levels[level]) % 2 == 0:
            row = levels[level]
            if level + 1 == len(levels):
                levels.append([])
            levels[level + 1].append(node_hash(row[-2], row[-1]))
            level += 1
        return len(levels[0]) - 1

    @property
    def size(self) -> int:
        return len(self._levels[0])

    def leaf(self, index: int) -> bytes:
        """The stored hash of leaf ``index``."""
        _check_int(index, "leaf index", 0, self.size - 1)
        return self._levels[0][index]

    def truncate(self, size: int) -> None:
        """Forget every leaf from ``size`` on (e.g. after a storage transaction rolled back)."""
        _check_int(size, "size", 0, self.size)
        for level, row in enumerate(self._levels):
            del row[size >> level :]
        while len(self._levels) > 1 and not self._levels[-1]:
            self._levels.pop()

    def _subtree(self, lo: int, hi: int) -> bytes:
        """MTH(D[lo:hi]) for a range of the RFC recursion (``lo`` aligned to the largest power of two <= hi - lo).

        Walks down the right spine: each left part is a stored complete subtree, and the walk ends on
        one, so this costs at most log2(hi - lo) node hashes.
        """
        lefts: list[bytes] = []
        while True:
            n = hi - lo
            if n & (n - 1) == 0:
                height = n.bit_length() - 1
                acc = self._levels[height][lo >> height]
                break
            k = _split(n)
            height = k.bit_length() - 1
            lefts.append(self._levels[height][lo >> height])
            lo += k
        for left in reversed(lefts):
            acc = node_hash(left, acc)
        return acc

    def root(self, size: int | None = None) -> bytes:
        """MTH of the first ``size`` leaves (default: all of them); size 0 gives ``EMPTY_ROOT``."""
        n = self.size if size is None else _check_int(size, "size", 0, self.size)
        return self._subtree(0, n) if n else EMPTY_ROOT

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """PATH(index, D[size]) of RFC 9162 2.1.3.1, leaf-side sibling first."""
        n = self.size if size is None else _check_int(size, "size", 0, self.size)
        _check_int(index, "leaf index", 0, n - 1)
        path: list[bytes] = []
        lo, hi = 0, n
        while hi - lo > 1:
            k = _split(hi - lo)
            if index < lo + k:
                path.append(self._subtree(lo + k, hi))
                hi = lo + k
            else:
                path.append(self._subtree(lo, lo + k))
                lo += k
        path.reverse()
        return path

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """PROOF(old_size, D[new_size]) of RFC 9162 2.1.4.1; empty when old_size is 0 or new_size."""
        n = self.size if new_size is None else _check_int(new_size, "new size", 0, self.size)
        m = _check_int(old_size, "old size", 0, n)
        if m in (0, n):
            return []
        proof: list[bytes] = []
        lo, hi = 0, n
        whole_old_tree = True  # the "b" flag of SUBPROOF: is D[lo:lo+m] the entire old tree?
        while True:
            if m == hi - lo:
                if not whole_old_tree:
                    proof.append(self._subtree(lo, hi))
                break
            k = _split(hi - lo)
            if m <= k:
                proof.append(self._subtree(lo + k, hi))
                hi = lo + k
            else:
                proof.append(self._subtree(lo, lo + k))
                lo += k
                m -= k
                whole_old_tree = False
        proof.reverse()
        return proof


def _inclusion_length(index: int, size: int) -> int:
    """How many hashes PATH(index, D[size]) has, from the sizes alone."""
    count = 0
    while size > 1:
        k = _split(size)
        if index >= k:
            index -= k
            size -= k
        else:
            size = k
        count += 1
    return count


def _consistency_length(old_size: int, new_size: int) -> int:
    """How many hashes PROOF(old_size, D[new_size]) has, for 0 < old_size < new_size."""
    count = 0
    whole_old_tree = True
    while old_size != new_size:
        k = _split(new_size)
        if old_size <= k:
            new_size = k
        else:
            old_size -= k
            new_size -= k
            whole_old_tree = False
        count += 1
    return count if whole_old_tree else count + 1


def _proof_hashes(proof: Sequence[bytes], expected: int, what: str) -> list[bytes]:
    if isinstance(proof, bytes | bytearray | str):
        raise ProofError(f"{what} proof must be a sequence of hashes")
    if len(proof) != expected:
        raise ProofError(f"{what} proof has {len(proof)} hashes, the sizes call for {expected}")
    for i, element in enumerate(proof):
        if not isinstance(element, bytes | bytearray) or len(element) != HASH_SIZE:
            raise ProofError(f"{what} proof element {i} is not a {HASH_SIZE}-byte hash")
    return [bytes(element) for element in proof]


def _require_hash(value: bytes, what: str) -> bytes:
    if not isinstance(value, bytes | bytearray) or len(value) != HASH_SIZE:
        raise ProofError(f"{what} is not a {HASH_SIZE}-byte hash")
    return bytes(value)


def _require_size(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ProofError(f"{what} must be a non-negative integer")
    return value


def verify_inclusion(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> None:
    """Check that ``leaf_hash`` is leaf ``index`` of the tree of ``size`` leaves whose head is ``root``.

    RFC 9162 2.1.3.2. Raises :class:`ProofError` on any mismatch; returns None when the proof holds.
    """
    leaf = _require_hash(leaf_hash, "leaf hash")
    expected_root = _require_hash(root, "root")
    _require_size(index, "leaf index")
    _require_size(size, "tree size")
    if index >= size:
        raise ProofError(f"leaf index {index} is outside a tree of size {size}")
    path = _proof_hashes(proof, _inclusion_length(index, size), "inclusion")

    fn, sn = index, size - 1
    r = leaf
    for p in path:
        if sn == 0:
            raise ProofError("inclusion proof is longer than the tree is tall")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof is shorter than the tree is tall")
    if not hmac.compare_digest(r, expected_root):
        raise ProofError(f"inclusion proof for leaf {index} does not lead to the root of the tree of size {size}")


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]) -> None:
    """Check that the tree of ``new_size`` leaves with head ``new_root`` extends the one of ``old_size`` / ``old_root``.

    RFC 9162 2.1.4.2, plus the cases it leaves out: equal sizes need an empty proof and equal roots; an
    old size of 0 needs an empty proof and ``old_root == EMPTY_ROOT`` (any tree extends the empty one);
    a new size below the old one is always rejected. Raises :class:`ProofError`; returns None when it holds.
    """
    _require_size(old_size, "old size")
    _require_size(new_size, "new size")
    first_hash = _require_hash(old_root, "old root")
    second_hash = _require_hash(new_root, "new root")
    if old_size > new_size:
        raise ProofError(f"log went backwards: size {new_size} cannot extend size {old_size}")
    if old_size == new_size:
        _proof_hashes(proof, 0, "consistency")
        if not hmac.compare_digest(first_hash, second_hash):
            raise ProofError(f"two different roots for the same tree size {old_size}: the log forked")
        return
    if old_size == 0:
        _proof_hashes(proof, 0, "consistency")
        if not hmac.compare_digest(first_hash, EMPTY_ROOT):
            raise ProofError("old root of an empty tree is not the empty-tree hash")
        return

    path = _proof_hashes(proof, _consistency_length(old_size, new_size), "consistency")
    if old_size & (old_size - 1) == 0:  # the old tree is a complete subtree: its root is the seed
        path.insert(0, first_hash)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof is longer than the tree is tall")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof is shorter than the tree is tall")
    if not hmac.compare_digest(fr, first_hash):
        raise ProofError(f"consistency proof does not reproduce the old root of size {old_size}")
    if not hmac.compare_digest(sr, second_hash):
        raise ProofError(f"consistency proof does not lead from size {old_size} to the new root of size {new_size}")
