"""The attacker of check (c): a full copy of every key box ever made, and every PUK it ever held."""

from __future__ import annotations

from collections.abc import Mapping

from vault.crypto import primitives as p
from vault.encoding import Fields, decode
from vault.errors import DecryptionFailed, VaultError
from vault.keys import PukKeys
from vault.teamkeys import TeamKey, open_history


def open_box(puks: Mapping[int, PukKeys], box: bytes) -> TeamKey | None:
    """What a former member does offline with one box and its own keys: try every PUK it ever had."""
    for puk in puks.values():
        try:
            f = Fields(decode(puk.open_sealed(box)), "box")
        except DecryptionFailed:
            continue
        return TeamKey(f.str_("team"), f.int_("gen"), f.bytes_("seed", 32))
    return None


def openable(team_id: str, canaries: Mapping[int, bytes], prev: Mapping[int, bytes], puks: list[PukKeys],
             boxes: list[tuple[int, bytes]]) -> set[int]:
    """Every generation opened with ``puks`` from ``boxes`` (gen, box), then following history blobs down."""
    opened: dict[int, TeamKey] = {}
    for gen, box in boxes:
        for puk in puks:
            try:
                value = decode(puk.open_sealed(box))
            except VaultError:
                continue
            assert isinstance(value, dict) and isinstance(value["seed"], bytes)
            key = TeamKey(team_id, gen, value["seed"])
            assert p.equal(key.canary, canaries[gen])
            opened[gen] = key
    for gen in sorted(opened, reverse=True):
        key = opened[gen]
        while key.gen > 1 and key.gen - 1 not in opened and key.gen in prev:
            key = open_history(key, prev[key.gen], canaries[key.gen - 1])
            opened[key.gen] = key
    return set(opened)
