"""Two ``mvault-server run`` processes over one PostgreSQL database and one data directory (issue 19), the
organization founded through the first before the second starts (tests/test_server_processes.py,
tests/test_closing_processes.py)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

from tests.conftest import PASSPHRASE, Member, Org, found_org
from tests.helpers.killable_server import ServerProcess


@contextlib.contextmanager
def process_pair(root: Path, url: str, then: Callable[[Org, Callable[[str], Member]], object] = lambda *_: None
                 ) -> Iterator[tuple[ServerProcess, ServerProcess, Org]]:
    """Both processes, killed when the block ends; ``then(org, make_member)`` runs before the second starts."""
    one = ServerProcess(root / "data", "--database", url).start()
    two = ServerProcess(root / "data", "--database", url)
    try:
        pf = root / "passphrase"
        pf.write_text(PASSPHRASE + "\n")

        def make(name: str) -> Member:
            return Member(root / f"home-{name}", name, pf)

        org = found_org(one, make)  # type: ignore[arg-type]
        then(org, make)
        two.start()
        yield one, two, org
    finally:
        two.kill()
        one.kill()
