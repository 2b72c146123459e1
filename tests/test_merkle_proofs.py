"""Tests for ``security.merkle`` (part 3): every single alteration of every proof (sizes 1..64) is
rejected with ``ProofError``, and the verifiers refuse malformed arguments.
"""

from __future__ import annotations

import pytest

from security.merkle import (
    ProofError,
    verify_consistency,
    verify_inclusion,
)
from tests.helpers.merkle import (
    EXHAUSTIVE,
    LEAVES,
    ROOTS,
    TREE,
    InclusionArgs,
    _consistency_mutations,
    _consistency_shape,
    _inclusion_mutations,
    _inclusion_shape,
)

# ── 3. Every altered proof is rejected ──────────────────────────────────────────────────────────────


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
