"""Tests for ``security.merkle``: RFC 9162 / RFC 6962 Merkle tree, proofs and verifiers (parts 1 and 2).

1. Published known-answer vectors from the Certificate Transparency reference implementations.
2. Exhaustive round trips for every tree size 1..64 against ``root_of`` (itself checked against the
   RFC's recursive definition for every size up to 300, in ``tests/test_merkle_tree.py``).

The vectors and the shared trees are in ``tests/helpers/merkle.py``.
"""

from __future__ import annotations

import pytest

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
from tests.helpers.merkle import (
    CT_CONSISTENCY,
    CT_INCLUSION,
    CT_LEAVES,
    CT_ROOTS,
    EMPTY_LEAF_HASH,
    EXHAUSTIVE,
    LEAF_L123456,
    LEAVES,
    NODE_N123_N456,
    ROOTS,
    SHA256_EMPTY,
    TREE,
    _ceil_log2,
    _consistency_mutations,
    _h,
    _inclusion_mutations,
    _other,
)
from vault.errors import IntegrityError, VaultError

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
