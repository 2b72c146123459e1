"""The routes' retry on ``SignerMoved`` (``server.access.stored_judged``), one SQLite server: a store that answers
``SignerMoved`` every time is tried ``STORE_TRIES`` times per request, then the route answers 409; one that answers it
once is judged again and stored on the second try. The judge again (``judged_again``) also runs after the last
``SignerMoved``, on every route: a version (single and batch upload), a thread record and a message (the cosign
route's retry: tests/test_cosign_race.py). The stores and ``judged_again`` are wrapped in the test process (the
server runs in it): the real store answers every try that is not made to move."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from server.access import STORE_TRIES
from server.context import DOCUMENTS, LOG, THREADS
from server.store.records import SignerMoved
from tests.conftest import Org

MOVED_TEXT = "your member chain or the organization chain changed while this was stored; sync and try again"
MESSAGE_MOVED_TEXT = "your member chain or the organization chain changed while this message was stored"


class Moving:
    """A store method that answers ``SignerMoved`` on its first ``moves`` calls (all of them: None), the real
    method after; ``calls``: every call's signer (the chains the act was judged on)."""

    def __init__(self, real: Callable[..., Any], moves: int | None, many: bool = False) -> None:
        self.real, self.moves, self.many, self.calls = real, moves, many, list[Any]()

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.many:  # add_messages: one outcome per post of the group commit
            self.calls.extend(post.signer for post in args[0])
        else:
            self.calls.append(kwargs.get("signer", args[-1]))
        if self.moves is None or len(self.calls) <= self.moves:
            return [SignerMoved()] * len(args[0]) if self.many else SignerMoved()
        return await self.real(*args, **kwargs)


def _count_judges(monkeypatch: pytest.MonkeyPatch, module: str) -> list[int]:
    """``judged_again`` as the route's module calls it, counted."""
    import importlib

    routes = importlib.import_module(module)
    real, judged = routes.judged_again, list[int]()

    async def counted(*args: Any, **kwargs: Any) -> Any:
        judged.append(1)
        return await real(*args, **kwargs)

    monkeypatch.setattr(routes, "judged_again", counted)
    return judged


def test_a_thread_record_whose_signers_chains_keep_moving_is_refused_after_store_tries(
        org: Org, monkeypatch: pytest.MonkeyPatch) -> None:
    me = org.alice.json("whoami")["member"]
    store = org.server.app[THREADS]
    judged = _count_judges(monkeypatch, "server.routes.threads")
    moving = Moving(store.add_thread, None)
    monkeypatch.setattr(store, "add_thread", moving)
    org.alice.fails("thread", "create", "drafting", "kept", contains=MOVED_TEXT)
    assert [set(signer) for signer in moving.calls] == [{me, "org"}] * STORE_TRIES
    assert len(judged) == STORE_TRIES  # judged again after each, the last included

    once = Moving(moving.real, 1)
    monkeypatch.setattr(store, "add_thread", once)
    org.alice.ok("thread", "create", "drafting", "moved-once")
    assert len(once.calls) == 2 and len(judged) == STORE_TRIES + 1
    assert "moved-once" in org.bob.ok("thread", "ls", "drafting").out


def test_a_message_whose_signers_chains_keep_moving_is_refused_after_store_tries(
        org: Org, monkeypatch: pytest.MonkeyPatch) -> None:
    org.alice.ok("thread", "create", "drafting", "talk")
    storage = org.server.app[LOG].storage
    judged = _count_judges(monkeypatch, "server.routes.threads")
    moving = Moving(storage.add_messages, None, many=True)
    monkeypatch.setattr(storage, "add_messages", moving)
    org.alice.fails("thread", "post", "drafting", "talk", "never stored", contains=MESSAGE_MOVED_TEXT)
    # the client posts again on a 409 (up to 4 times): each request tried STORE_TRIES times, judged again between
    posts = len(moving.calls) // STORE_TRIES
    assert posts >= 1 and len(moving.calls) == STORE_TRIES * posts
    assert len(judged) == STORE_TRIES * posts  # after the last too, as every route

    once = Moving(moving.real, 1, many=True)
    monkeypatch.setattr(storage, "add_messages", once)
    org.alice.ok("thread", "post", "drafting", "talk", "stored on the second try")
    assert len(once.calls) == 2 and len(judged) == STORE_TRIES * posts + 1
    shown = org.bob.ok("thread", "read", "drafting", "talk").out
    assert "stored on the second try" in shown and "never stored" not in shown


def test_a_version_whose_signers_chains_keep_moving_is_refused_after_store_tries(
        org: Org, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    me = org.bob.json("whoami")["member"]
    store = org.server.app[DOCUMENTS]
    judged = _count_judges(monkeypatch, "server.routes.docs")
    moving = Moving(store.add_version, None)
    monkeypatch.setattr(store, "add_version", moving)
    (tmp_path / "plan.md").write_text("never stored\n")
    org.bob.fails("put", "drafting", str(tmp_path / "plan.md"), contains=MOVED_TEXT)
    assert [set(signer) for signer in moving.calls] == [{me, "org"}] * STORE_TRIES
    assert len(judged) == STORE_TRIES

    once = Moving(moving.real, 1)
    monkeypatch.setattr(store, "add_version", once)
    (tmp_path / "plan.md").write_text("stored on the second try\n")
    org.bob.ok("put", "drafting", str(tmp_path / "plan.md"))
    assert len(once.calls) == 2 and len(judged) == STORE_TRIES + 1
    org.alice.ok("get", "drafting", "plan.md", "-o", str(tmp_path / "got.md"))
    assert (tmp_path / "got.md").read_text() == "stored on the second try\n"


def test_a_batch_whose_signers_chains_keep_moving_is_refused_item_by_item_after_store_tries(
        org: Org, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    store = org.server.app[DOCUMENTS]
    judged = _count_judges(monkeypatch, "server.routes.batch")
    moving = Moving(store.add_version, None)
    monkeypatch.setattr(store, "add_version", moving)
    for name in ("a.md", "b.md"):
        (tmp_path / name).write_text(f"{name} never stored\n")
    r = org.bob.run("put", "drafting", str(tmp_path / "a.md"), str(tmp_path / "b.md"))
    assert r.code == 1 and MOVED_TEXT in r.err, (r.out, r.err)
    assert "Traceback" not in r.err
    # each batch request tries its pending items STORE_TRIES times and judges them again after each try
    assert len(moving.calls) == 2 * STORE_TRIES, moving.calls
    assert len(judged) in (STORE_TRIES, 2 * STORE_TRIES)  # the two items in one request or in two

    once = Moving(moving.real, 1)  # the first item's first try moves
    monkeypatch.setattr(store, "add_version", once)
    for name in ("a.md", "b.md"):
        (tmp_path / name).write_text(f"{name} stored\n")
    before = len(judged)
    org.bob.ok("put", "drafting", str(tmp_path / "a.md"), str(tmp_path / "b.md"))
    assert len(once.calls) == 3 and len(judged) == before + 1
    listing = org.alice.ok("ls", "drafting").out
    assert "a.md" in listing and "b.md" in listing
