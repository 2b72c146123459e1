"""Tests for ``security.merkle``: RFC 9162 / RFC 6962 Merkle tree, proofs and verifiers.

1. Published known-answer vectors from the Certificate Transparency reference implementations.
2. Exhaustive round trips for every tree size 1..64 against ``root_of`` (itself checked against the
   RFC's recursive definition for every size up to 300).
3. Every single alteration of every proof (sizes 1..64) is rejected with ``ProofError``.
4. The incremental tree: append, historical sizes, truncate and re-append, argument checking.
5. Hypothesis properties up to ~300 leaves, including the proof-length bounds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from security import merkle
from security.merkle import (
    EMPTY_ROOT,
    MerkleTree,
    ProofError,
    leaf_hash,
    node_hash,
    root_of,
    verify_consistency,
    verify_inclusion,
)
from vault.errors import IntegrityError, VaultError

# ── Published vectors ───────────────────────────────────────────────────────────────────────────────
#
# Copied verbatim from transparency-dev/merkle, proof/verify_test.go (the variables ``leaves``,
# ``roots``, ``inclusionProofs`` and ``consistencyProofs``). The same leaves, roots, paths and the
# first four consistency proofs are published in google/certificate-transparency,
# cpp/merkletree/merkle_tree_test.cc (``kInputs``, ``kSHA256Roots``, ``kSHA256Paths``,
# ``kSHA256Proofs``); the (6, 7) consistency proof appears only in transparency-dev/merkle.
# Those files number leaves from 1; the tables below keep their numbering and the tests subtract 1.

CT_INPUTS = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]

# Tree heads of the first 1..8 inputs (index 0 is size 1).
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]

# (leaf number counted from 1, tree size, audit path)
CT_INCLUSION = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (3, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        2,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]

# (old size, new size, consistency proof)
CT_CONSISTENCY = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]

# transparency-dev/merkle, rfc6962/rfc6962_test.go (TestRFC6962Hasher).
SHA256_EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
EMPTY_LEAF_HASH = "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
LEAF_L123456 = "395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56"
NODE_N123_N456 = "aa217fe888e47007fa15edab33c2b492a722cb106c64667fc2b044444de66bbb"

CT_LEAVES = [leaf_hash(data) for data in CT_INPUTS]


def _h(hexes: list[str]) -> list[bytes]:
    return [bytes.fromhex(x) for x in hexes]


def _other(tag: str) -> bytes:
    return hashlib.sha256(tag.encode()).digest()


def _flip(value: bytes, bit: int) -> bytes:
    out = bytearray(value)
    out[(bit // 8) % len(out)] ^= 1 << (bit % 8)
    return bytes(out)


# ── Shared trees ────────────────────────────────────────────────────────────────────────────────────

BIG = 300
LEAVES = [leaf_hash(i.to_bytes(2, "big")) for i in range(BIG)]
TREE = MerkleTree(LEAVES)
EXHAUSTIVE = 64
ROOTS = [root_of(LEAVES[:n]) for n in range(EXHAUSTIVE + 2)]


def _ceil_log2(n: int) -> int:
    return (n - 1).bit_length()


# ── 1. Published vectors ────────────────────────────────────────────────────────────────────────────


def test_hash_primitives_match_rfc6962_vectors() -> None:
    assert EMPTY_ROOT.hex() == SHA256_EMPTY
    assert leaf_hash(b"").hex() == EMPTY_LEAF_HASH
    assert leaf_hash(b"L123456").hex() == LEAF_L123456
    assert node_hash(b"N123", b"N456").hex() == NODE_N123_N456
    assert root_of([]) == EMPTY_ROOT
    assert MerkleTree().root() == EMPTY_ROOT


def test_roots_match_published_vectors() -> None:
    incremental = MerkleTree()
    assert incremental.root(0).hex() == SHA256_EMPTY
    for i, leaf in enumerate(CT_LEAVES):
        assert incremental.append(leaf) == i
        assert incremental.root().hex() == CT_ROOTS[i]
        for j in range(i + 1):  # every historical size, after every append
            assert incremental.root(j + 1).hex() == CT_ROOTS[j]
    for n in range(1, 9):
        assert root_of(CT_LEAVES[:n]).hex() == CT_ROOTS[n - 1]
        assert MerkleTree(CT_LEAVES[:n]).root().hex() == CT_ROOTS[n - 1]


@pytest.mark.parametrize(("leaf_number", "size", "path"), CT_INCLUSION)
def test_inclusion_proofs_match_published_vectors(leaf_number: int, size: int, path: list[str]) -> None:
    tree = MerkleTree(CT_LEAVES)
    index = leaf_number - 1
    proof = _h(path)
    assert tree.inclusion_proof(index, size) == proof
    root = bytes.fromhex(CT_ROOTS[size - 1])
    verify_inclusion(CT_LEAVES[index], index, size, proof, root)
    for desc, args in _inclusion_mutations(CT_LEAVES[index], index, size, proof, root, tree):
        with pytest.raises(ProofError):
            verify_inclusion(*args)
            pytest.fail(f"accepted {desc}")


@pytest.mark.parametrize(("old_size", "new_size", "path"), CT_CONSISTENCY)
def test_consistency_proofs_match_published_vectors(old_size: int, new_size: int, path: list[str]) -> None:
    tree = MerkleTree(CT_LEAVES)
    proof = _h(path)
    old_root, new_root = bytes.fromhex(CT_ROOTS[old_size - 1]), bytes.fromhex(CT_ROOTS[new_size - 1])
    assert tree.consistency_proof(old_size, new_size) == proof
    verify_consistency(old_size, new_size, old_root, new_root, proof)
    if not proof:  # (1, 1): nothing to alter; the trivial cases are covered below
        return
    for desc, args in _consistency_mutations(old_size, new_size, old_root, new_root, proof, tree):
        with pytest.raises(ProofError):
            verify_consistency(*args)
            pytest.fail(f"accepted {desc}")


def test_consistency_special_cases() -> None:
    """The trivial cases of transparency-dev/merkle TestVerifyConsistency (with 32-byte roots)."""
    root1, root2 = _other("root1"), _other("root2")
    # Always consistent.
    verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    verify_consistency(0, 1, EMPTY_ROOT, root2, [])
    verify_consistency(1, 1, root2, root2, [])
    verify_consistency(5, 5, root1, root1, [])
    rejected: list[tuple[int, int, bytes, bytes, list[bytes]]] = [
        (0, 0, root1, root2, []),  # same size, different roots
        (1, 1, root1, root2, []),
        (1, 0, root1, root2, []),  # time travel to the past
        (2, 1, root1, root2, []),
        (2, 1, root1, root1, []),
        (1, 2, root1, root2, []),  # empty proof for a real extension
        (0, 0, EMPTY_ROOT, root2, []),
        (1, 1, EMPTY_ROOT, root2, []),
        (0, 0, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT]),  # roots match but the proof is not empty
        (0, 1, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT]),
        (1, 1, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT]),
        (0, 3, root1, root2, []),  # an empty tree has exactly one root
        (-1, 3, root1, root2, []),
        (1, 1, b"", b"", []),  # roots must be hashes
        (1, 1, root1[:31], root1[:31], []),
    ]
    for args in rejected:
        with pytest.raises(ProofError):
            verify_consistency(*args)


def test_inclusion_trivial_cases() -> None:
    """transparency-dev/merkle TestVerifyInclusion / TestVerifyInclusionSingleEntry."""
    some = _other("some")
    for index, size in ((0, 0), (1, 0), (1, 1), (2, 1), (-1, 1)):
        for leaf, root in ((some, EMPTY_ROOT), (EMPTY_ROOT, EMPTY_ROOT), (some, some)):
            with pytest.raises(ProofError):
                verify_inclusion(leaf, index, size, [], root)
    single = leaf_hash(b"data")
    verify_inclusion(single, 0, 1, [], single)  # a one-leaf tree's root is its leaf hash
    for leaf, root in ((single, b""), (b"", single), (b"", b"")):
        with pytest.raises(ProofError):
            verify_inclusion(leaf, 0, 1, [], root)


def test_proof_error_is_an_integrity_error() -> None:
    with pytest.raises(ProofError) as info:
        verify_inclusion(EMPTY_ROOT, 0, 1, [], _other("x"))
    err = info.value
    assert isinstance(err, IntegrityError)
    assert isinstance(err, VaultError)
    assert err.code == "log_inconsistent"
    assert err.status == 409
    assert "root" in str(err)


# ── 2. Exhaustive round trips ───────────────────────────────────────────────────────────────────────


def test_exhaustive_roots_and_proofs() -> None:
    for n in range(1, EXHAUSTIVE + 1):
        root = TREE.root(n)
        assert root == ROOTS[n]
        for index in range(n):
            proof = TREE.inclusion_proof(index, n)
            assert len(proof) <= _ceil_log2(n)
            verify_inclusion(LEAVES[index], index, n, proof, root)
        for m in range(1, n + 1):
            proof = TREE.consistency_proof(m, n)
            assert len(proof) <= _ceil_log2(n) + 1
            assert (proof == []) == (m == n)
            verify_consistency(m, n, ROOTS[m], root, proof)
        verify_consistency(0, n, EMPTY_ROOT, root, TREE.consistency_proof(0, n))


def test_proofs_of_the_current_size_by_default() -> None:
    tree = MerkleTree(LEAVES[:37])
    assert tree.root() == tree.root(37) == ROOTS[37]
    for index in range(37):
        assert tree.inclusion_proof(index) == tree.inclusion_proof(index, 37) == TREE.inclusion_proof(index, 37)
    for m in range(38):
        assert tree.consistency_proof(m) == tree.consistency_proof(m, 37) == TREE.consistency_proof(m, 37)


# ── 3. Every altered proof is rejected ──────────────────────────────────────────────────────────────

InclusionArgs = tuple[bytes, int, int, list[bytes], bytes]
ConsistencyArgs = tuple[int, int, bytes, bytes, list[bytes]]


def _element_mutations(proof: list[bytes], extra: list[bytes]) -> Iterator[tuple[str, list[bytes]]]:
    """Every single-step alteration of a proof's list of hashes."""
    for i, element in enumerate(proof):
        for bit in (0, 7, 8 * i + 3, 255):
            yield f"flip bit {bit} of [{i}]", [*proof[:i], _flip(element, bit), *proof[i + 1 :]]
        yield f"drop [{i}]", proof[:i] + proof[i + 1 :]
        yield f"[{i}] cut to 31 bytes", [*proof[:i], element[:31], *proof[i + 1 :]]
        yield f"[{i}] grown to 33 bytes", [*proof[:i], element + b"\x00", *proof[i + 1 :]]
        yield f"duplicate [{i}]", [*proof[: i + 1], element, *proof[i + 1 :]]
        if i + 1 < len(proof) and proof[i] != proof[i + 1]:
            yield f"swap [{i}] and [{i + 1}]", [*proof[:i], proof[i + 1], proof[i], *proof[i + 2 :]]
    for e in extra:
        yield "append", [*proof, e]
        yield "prepend", [e, *proof]
        yield "insert", [*proof[:1], e, *proof[1:]]
    yield "append empty", [*proof, b""]
    if proof[::-1] != proof:
        yield "reversed", proof[::-1]
    yield "empty proof", [] if proof else [EMPTY_ROOT]


def _inclusion_mutations(
    leaf: bytes, index: int, size: int, proof: list[bytes], root: bytes, tree: MerkleTree | None = None
) -> Iterator[tuple[str, InclusionArgs]]:
    for desc, p in _element_mutations(proof, [_other("extra"), root, leaf, EMPTY_ROOT]):
        yield desc, (leaf, index, size, p, root)
    for wrong_index in (index - 1, index + 1, index ^ 1, index ^ 2, size, -1):
        if wrong_index != index:
            yield f"index {wrong_index}", (leaf, wrong_index, size, proof, root)
    yield "size 0", (leaf, index, 0, proof, root)
    yield "size * 2", (leaf, index, size * 2, proof, root)
    # A proof for this size offered for a neighbouring size, against that size's real root.
    if tree is not None:
        for wrong_size in (size - 1, size + 1):
            if index < wrong_size <= tree.size:
                yield f"size {wrong_size}", (leaf, index, wrong_size, proof, tree.root(wrong_size))
    for bit in (0, 100, 255):
        yield f"root bit {bit}", (leaf, index, size, proof, _flip(root, bit))
        yield f"leaf bit {bit}", (_flip(leaf, bit), index, size, proof, root)
    yield "empty root", (leaf, index, size, proof, EMPTY_ROOT)
    yield "short root", (leaf, index, size, proof, root[:31])
    yield "short leaf", (leaf[:31], index, size, proof, root)
    yield "leaf data instead of leaf hash", (b"WrongLeaf", index, size, proof, root)


def _consistency_mutations(
    m: int, n: int, old_root: bytes, new_root: bytes, proof: list[bytes], tree: MerkleTree | None = None
) -> Iterator[tuple[str, ConsistencyArgs]]:
    for desc, p in _element_mutations(proof, [_other("extra"), old_root, new_root, proof[0], EMPTY_ROOT]):
        yield desc, (m, n, old_root, new_root, p)
    for wrong_m, wrong_n in ((m - 1, n), (m + 1, n), (m ^ 2, n), (m, n * 2), (m, n // 2), (0, n), (n, n), (m, m)):
        if (wrong_m, wrong_n) != (m, n):
            yield f"sizes {wrong_m},{wrong_n}", (wrong_m, wrong_n, old_root, new_root, proof)
    # The proof offered for neighbouring sizes, against those sizes' real roots.
    if tree is not None:
        for wrong_m, wrong_n in ((m - 1, n), (m + 1, n), (m, n - 1), (m, n + 1)):
            if 0 < wrong_m <= wrong_n <= tree.size:
                args = (wrong_m, wrong_n, tree.root(wrong_m), tree.root(wrong_n), proof)
                yield f"sizes {wrong_m},{wrong_n} with their roots", args
    for bit in (0, 100, 255):
        yield f"old root bit {bit}", (m, n, _flip(old_root, bit), new_root, proof)
        yield f"new root bit {bit}", (m, n, old_root, _flip(new_root, bit), proof)
    yield "swapped roots", (m, n, new_root, old_root, proof)
    yield "old root for both", (m, n, old_root, old_root, proof)
    yield "empty old root", (m, n, EMPTY_ROOT, new_root, proof)
    yield "short old root", (m, n, old_root[:31], new_root, proof)
    yield "short new root", (m, n, old_root, new_root[:31], proof)


def test_every_altered_inclusion_proof_is_rejected() -> None:
    checked = 0
    for n in range(1, EXHAUSTIVE + 1):
        for index in range(n):
            proof = TREE.inclusion_proof(index, n)
            for desc, args in _inclusion_mutations(LEAVES[index], index, n, proof, ROOTS[n], TREE):
                with pytest.raises(ProofError):
                    verify_inclusion(*args)
                    pytest.fail(f"size {n} index {index}: accepted {desc}")
                checked += 1
    assert checked > 50_000


def test_every_altered_consistency_proof_is_rejected() -> None:
    checked = 0
    for n in range(2, EXHAUSTIVE + 1):
        for m in range(1, n):
            proof = TREE.consistency_proof(m, n)
            for desc, args in _consistency_mutations(m, n, ROOTS[m], ROOTS[n], proof, TREE):
                with pytest.raises(ProofError):
                    verify_consistency(*args)
                    pytest.fail(f"sizes {m},{n}: accepted {desc}")
                checked += 1
    assert checked > 50_000


def _inclusion_shape(index: int, size: int) -> list[bool]:
    """The left/right turns from the root down to leaf ``index`` in the RFC recursion (reference)."""
    turns = []
    while size > 1:
        k = 1 << ((size - 1).bit_length() - 1)
        turns.append(index >= k)
        if index >= k:
            index, size = index - k, size - k
        else:
            size = k
    return turns


def _consistency_shape(m: int, n: int) -> tuple[list[bool], bool]:
    """The SUBPROOF recursion's choices for 0 < m < n, and whether the old root is left out (reference)."""
    turns, whole = [], True
    while m != n:
        k = 1 << ((n - 1).bit_length() - 1)
        turns.append(m > k)
        if m > k:
            m, n, whole = m - k, n - k, False
        else:
            n = k
    return turns, whole


def test_sizes_alone_are_bound_through_the_root() -> None:
    """A proof names no sizes, so only the root (from a signed checkpoint) pins them.

    A proof for size n checked as size n +/- 1 *against the same root* is accepted exactly when both
    sizes give the same shape of hash computation (e.g. leaf 0 of 3 vs of 4, or sizes 2->3 vs 2->4);
    a verifier cannot tell those apart without a hash preimage. Against the real root of the other
    size (tested above) every such proof is rejected; here we pin down that nothing else slips through.
    """
    same_shape = 0
    for n in range(1, EXHAUSTIVE + 1):
        for index in range(n):
            proof = TREE.inclusion_proof(index, n)
            for wrong in (n - 1, n + 1):
                if wrong <= index:
                    continue
                if _inclusion_shape(index, wrong) == _inclusion_shape(index, n):
                    same_shape += 1
                    verify_inclusion(LEAVES[index], index, wrong, proof, ROOTS[n])
                else:
                    with pytest.raises(ProofError):
                        verify_inclusion(LEAVES[index], index, wrong, proof, ROOTS[n])
        for m in range(1, n):
            proof = TREE.consistency_proof(m, n)
            for wm, wn in ((m - 1, n), (m + 1, n), (m, n - 1), (m, n + 1)):
                if not 0 < wm < wn:
                    with pytest.raises(ProofError):
                        verify_consistency(wm, wn, ROOTS[m], ROOTS[n], proof)
                elif _consistency_shape(wm, wn) == _consistency_shape(m, n):
                    same_shape += 1
                    verify_consistency(wm, wn, ROOTS[m], ROOTS[n], proof)
                else:
                    with pytest.raises(ProofError):
                        verify_consistency(wm, wn, ROOTS[m], ROOTS[n], proof)
    assert same_shape > 0


def test_verifiers_reject_malformed_arguments() -> None:
    proof = TREE.inclusion_proof(3, 10)
    good: InclusionArgs = (LEAVES[3], 3, 10, proof, ROOTS[10])
    verify_inclusion(*good)
    bad_inclusion: list[tuple[object, ...]] = [
        (LEAVES[3], 3, 10, b"".join(proof), ROOTS[10]),  # a byte string is not a list of hashes
        (LEAVES[3], 3, 10, [p.hex() for p in proof], ROOTS[10]),
        (LEAVES[3], 3, 10, [*proof[:-1], None], ROOTS[10]),
        (LEAVES[3].hex(), 3, 10, proof, ROOTS[10]),
        (LEAVES[3], True, 10, proof, ROOTS[10]),
        (LEAVES[3], 3, 10.0, proof, ROOTS[10]),
    ]
    for args in bad_inclusion:
        with pytest.raises(ProofError):
            verify_inclusion(*args)  # type: ignore[arg-type]
    cproof = TREE.consistency_proof(3, 10)
    verify_consistency(3, 10, ROOTS[3], ROOTS[10], cproof)
    bad_consistency: list[tuple[object, ...]] = [
        (3, 10, ROOTS[3], ROOTS[10], b"".join(cproof)),
        (3, 10, ROOTS[3], ROOTS[10], [*cproof[:-1], bytearray(31)]),
        (3, 10, ROOTS[3].hex(), ROOTS[10], cproof),
        (3.0, 10, ROOTS[3], ROOTS[10], cproof),
    ]
    for args in bad_consistency:
        with pytest.raises(ProofError):
            verify_consistency(*args)  # type: ignore[arg-type]


# ── 4. The incremental tree ─────────────────────────────────────────────────────────────────────────


def test_incremental_tree_matches_batch_and_reference() -> None:
    tree = MerkleTree()
    for i, leaf in enumerate(LEAVES[:130]):
        assert tree.append(leaf) == i
        assert tree.size == i + 1
        assert tree.leaf(i) == leaf
        assert tree.root() == root_of(LEAVES[: i + 1])
    batch = MerkleTree(LEAVES[:130])
    assert batch.size == 130
    assert batch.root() == tree.root()
    for n in range(131):
        assert tree.root(n) == batch.root(n) == TREE.root(n)
    assert MerkleTree(iter(LEAVES[:5])).root() == root_of(LEAVES[:5])  # any iterable


def test_truncate_then_reappend() -> None:
    tree = MerkleTree(LEAVES[:100])
    for cut in (99, 64, 63, 37, 1, 0, 50, 100):
        tree = MerkleTree(LEAVES[:100])
        tree.truncate(cut)
        assert tree.size == cut
        assert tree.root() == root_of(LEAVES[:cut])
        for n in range(cut + 1):
            assert tree.root(n) == TREE.root(n)
        with pytest.raises(ValueError):
            tree.root(cut + 1)
        # Roll forward with different leaves, then back again, then the original leaves.
        for i in range(cut, 100):
            tree.append(_other(f"fork {i}"))
        assert tree.root() != TREE.root(100) or cut == 100
        tree.truncate(cut)
        for leaf in LEAVES[cut:100]:
            tree.append(leaf)
        assert tree.size == 100
        for n in range(101):
            assert tree.root(n) == TREE.root(n)
        for index in range(0, 100, 7):
            assert tree.inclusion_proof(index) == TREE.inclusion_proof(index, 100)
        for m in range(0, 101, 9):
            assert tree.consistency_proof(m) == TREE.consistency_proof(m, 100)
    tree.truncate(100)  # no-op
    assert tree.size == 100
    tree.truncate(0)
    assert tree.size == 0
    assert tree.root() == EMPTY_ROOT
    assert tree.append(LEAVES[0]) == 0
    assert tree.root() == LEAVES[0]


def test_out_of_range_arguments_raise_value_error() -> None:
    tree = MerkleTree(LEAVES[:10])
    calls: list[Callable[[], object]] = [
        lambda: tree.leaf(-1),
        lambda: tree.leaf(10),
        lambda: MerkleTree().leaf(0),
        lambda: tree.root(-1),
        lambda: tree.root(11),
        lambda: tree.root(True),
        lambda: tree.inclusion_proof(10),
        lambda: tree.inclusion_proof(-1),
        lambda: tree.inclusion_proof(0, 0),
        lambda: tree.inclusion_proof(5, 5),
        lambda: tree.inclusion_proof(0, 11),
        lambda: MerkleTree().inclusion_proof(0),
        lambda: tree.consistency_proof(-1),
        lambda: tree.consistency_proof(11),
        lambda: tree.consistency_proof(6, 5),
        lambda: tree.consistency_proof(0, 11),
        lambda: tree.consistency_proof(1, -1),
        lambda: tree.truncate(-1),
        lambda: tree.truncate(11),
        lambda: tree.append(b"x" * 31),
        lambda: tree.append(b"x" * 33),
        lambda: tree.append(LEAVES[0].hex()),  # type: ignore[arg-type]
        lambda: MerkleTree([b"short"]),
    ]
    for call in calls:
        with pytest.raises(ValueError):
            call()
    assert tree.size == 10  # nothing above changed the tree
    assert tree.root() == ROOTS[10]


def test_edge_sizes() -> None:
    tree = MerkleTree(LEAVES[:1])
    assert tree.root() == LEAVES[0]
    assert tree.inclusion_proof(0) == []
    assert tree.consistency_proof(0) == tree.consistency_proof(1) == []
    assert MerkleTree().consistency_proof(0) == []
    assert MerkleTree().root(0) == EMPTY_ROOT
    verify_consistency(1, 1, LEAVES[0], LEAVES[0], [])


def test_proofs_cost_polylog_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Historical roots and proofs never rehash the leaves: at most log2(n)**2 node hashes."""
    n = 5000
    tree = MerkleTree(leaf_hash(i.to_bytes(4, "big")) for i in range(n))
    calls = 0
    real = merkle.node_hash

    def counting(left: bytes, right: bytes) -> bytes:
        nonlocal calls
        calls += 1
        return real(left, right)

    monkeypatch.setattr(merkle, "node_hash", counting)
    log = _ceil_log2(n)
    for size in (1, 2, 3, 1000, 4095, 4096, 4097, 4999, 5000):
        calls = 0
        tree.root(size)
        assert calls <= log
        for index in (0, size // 3, size - 1):
            calls = 0
            tree.inclusion_proof(index, size)
            assert calls <= log * log
        for old in (1, size // 2, size - 1):
            calls = 0
            tree.consistency_proof(old, size)
            assert calls <= log * log


# ── 5. Properties ───────────────────────────────────────────────────────────────────────────────────


@st.composite
def _sizes_and_index(draw: st.DrawFn) -> tuple[int, int, int]:
    n = draw(st.integers(min_value=1, max_value=BIG))
    index = draw(st.integers(min_value=0, max_value=n - 1))
    m = draw(st.integers(min_value=0, max_value=n))
    return n, index, m


@settings(max_examples=300, deadline=None)
@given(_sizes_and_index())
def test_random_proofs_verify_and_stay_short(case: tuple[int, int, int]) -> None:
    n, index, m = case
    root = TREE.root(n)
    proof = TREE.inclusion_proof(index, n)
    assert len(proof) <= _ceil_log2(n)
    verify_inclusion(LEAVES[index], index, n, proof, root)
    cproof = TREE.consistency_proof(m, n)
    assert len(cproof) <= _ceil_log2(n) + 1
    verify_consistency(m, n, TREE.root(m), root, cproof)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=80),
    st.data(),
)
def test_random_leaves_match_reference(leaves: list[bytes], data: st.DataObject) -> None:
    tree = MerkleTree(leaves)
    n = len(leaves)
    assert tree.root() == root_of(leaves)
    size = data.draw(st.integers(min_value=1, max_value=n))
    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    old = data.draw(st.integers(min_value=1, max_value=size))
    old_root, root = root_of(leaves[:old]), root_of(leaves[:size])
    assert tree.root(old) == old_root
    verify_inclusion(leaves[index], index, size, tree.inclusion_proof(index, size), root)
    verify_consistency(old, size, old_root, root, tree.consistency_proof(old, size))
    tree.truncate(old)
    assert tree.root() == old_root


def _mth(leaves: list[bytes]) -> bytes:
    """MTH(D[n]) exactly as RFC 9162 2.1.1 writes it: split at the largest power of two below n."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + _mth(leaves[:k]) + _mth(leaves[k:])).digest()


def test_root_of_is_the_recursive_definition() -> None:
    """``root_of`` hashes level by level; every size up to BIG gives the RFC's recursive head."""
    for n in range(BIG + 1):
        assert root_of(LEAVES[:n]) == _mth(LEAVES[:n]), n
    assert root_of(tuple(LEAVES[:37])) == _mth(LEAVES[:37])  # any sequence
