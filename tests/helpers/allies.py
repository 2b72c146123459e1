"""The allied organization of the coalition tests (issue 20): a second real server with its founder dora (NCC),
and, for the guest tests, her member erin."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RUNNING, Member, ServerThread


@pytest.fixture
def ally(tmp_path: Path, make_member: Any) -> Iterator[Member]:
    """The allied organization on a server of its own: its founder dora (NCC)."""
    server = ServerThread(tmp_path / "ally-server").start()
    dora = make_member("dora")
    assert server.invite is not None
    dora.ok("join", server.invite, "--name", "dora")
    yield dora
    server.stop()


def own_server(tmp_path: Path) -> ServerThread:
    """The ally's server of the ``ally`` fixture (erin's own organization's)."""
    return next(s for s in RUNNING.values() if s.data_dir == tmp_path / "ally-server")
