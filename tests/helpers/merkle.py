"""The Merkle tests' shared data (``tests/test_merkle_*.py``): the published Certificate Transparency
vectors, trees of every size up to 64 with their roots, and the alterations of a proof.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from hypothesis import strategies as st

from security.merkle import (
    EMPTY_ROOT,
    MerkleTree,
    leaf_hash,
    root_of,
)

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


@st.composite
def _sizes_and_index(draw: st.DrawFn) -> tuple[int, int, int]:
    n = draw(st.integers(min_value=1, max_value=BIG))
    index = draw(st.integers(min_value=0, max_value=n - 1))
    m = draw(st.integers(min_value=0, max_value=n))
    return n, index, m


def _mth(leaves: list[bytes]) -> bytes:
    """MTH(D[n]) exactly as RFC 9162 2.1.1 writes it: split at the largest power of two below n."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + _mth(leaves[:k]) + _mth(leaves[k:])).digest()
