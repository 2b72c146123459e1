"""Tests for ``security.merkle`` (parts 4 and 5).

4. The incremental tree: append, historical sizes, truncate and re-append, argument checking.
5. Hypothesis properties up to ~300 leaves, including the proof-length bounds.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from security import merkle
from security.merkle import (
    EMPTY_ROOT,
    MerkleTree,
    leaf_hash,
    root_of,
    verify_consistency,
    verify_inclusion,
)
from tests.helpers.merkle import (
    BIG,
    LEAVES,
    ROOTS,
    TREE,
    _ceil_log2,
    _mth,
    _other,
    _sizes_and_index,
)

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


def test_root_of_is_the_recursive_definition() -> None:
    """``root_of`` hashes level by level; every size up to BIG gives the RFC's recursive head."""
    for n in range(BIG + 1):
        assert root_of(LEAVES[:n]) == _mth(LEAVES[:n]), n
    assert root_of(tuple(LEAVES[:37])) == _mth(LEAVES[:37])  # any sequence
