"""``LocalIndex.record``/``forget`` keep "one path holds one document" with a path -> document map instead of a
walk over every document per entry (which made a batch put quadratic): checked against the walk, at random."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from vault.localindex import LocalCopy, LocalIndex

COPY = LocalCopy("0" * 32, 1, bytes(32), 0, 0, 0)
ops = st.lists(st.tuples(st.sampled_from(["record", "forget"]), st.sampled_from("abcd"), st.sampled_from("pqrs")),
               max_size=40)


def walk_record(docs: dict[str, dict[str, LocalCopy]], key: str, path: str) -> None:
    for other, paths in list(docs.items()):
        if other != key and paths.pop(path, None) is not None and not paths:
            del docs[other]
    docs.setdefault(key, {})[path] = COPY


@settings(max_examples=300, deadline=None)
@given(ops, st.booleans())
def test_record_and_forget_agree_with_the_walk(steps: list[tuple[str, str, str]], reload: bool) -> None:
    index, model = LocalIndex(), LocalIndex().docs
    for i, (op, doc, path) in enumerate(steps):
        if reload and i % 7 == 3:  # a fresh object from the same data: the map is built again
            index = LocalIndex.from_value(index.to_value())
        if op == "record":
            index.record("t", doc, path, COPY)
            walk_record(model, LocalIndex.key("t", doc), path)
        else:
            assert index.forget("t", doc) == (model.pop(LocalIndex.key("t", doc), None) is not None)
        assert index.docs == model
