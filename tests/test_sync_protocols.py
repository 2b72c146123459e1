"""The share of a folder a sync pass may delete without --confirm-deletes is a protocol parameter
(``[sync] max_delete_percent`` of security-protocols.toml), changed like every protocol: proposed by one
NCC member, in force when a second approves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from security.protocols import defaults, parse
from tests.conftest import Org
from tests.test_sync import acts, sync, write
from vault.errors import EncodingError


def test_the_default_is_half_and_bad_values_are_refused() -> None:
    assert defaults().sync_delete_percent == 50
    text = defaults().text
    assert parse(text.replace("max_delete_percent = 50", "max_delete_percent = 80")).sync_delete_percent == 80
    for bad in ("0", "101", '"50"', "true", "50.5"):
        with pytest.raises(EncodingError, match="sync.max_delete_percent must be an integer from 1 to 100"):
            parse(text.replace("max_delete_percent = 50", f"max_delete_percent = {bad}"))
    with pytest.raises(EncodingError, match=r"\[sync\] has unknown keys"):
        parse(text.replace("max_delete_percent = 50", "max_delete = 50"))
    assert parse(text.replace("[sync]\nmax_delete_percent = 50", "")).sync_delete_percent == 50  # missing: default


def test_an_approved_share_lets_a_pass_delete_more_without_confirmation(org: Org, make_member: Any,
                                                                       tmp_path: Path) -> None:
    a = tmp_path / "a"
    for n in ("1.md", "2.md", "3.md", "4.md"):
        write(a / n, f"{n} v1\n")
    sync(org.alice, a)
    (a / "1.md").unlink()
    (a / "2.md").unlink()
    (a / "3.md").unlink()
    r = org.alice.run("sync", "drafting", str(a), "--json")
    assert r.code == 1 and "--confirm-deletes" in r.err  # 75 % > the default 50 %

    dana = make_member("dana")
    dana.ok("join", org.alice.json("invite")["invite"], "--name", "dana")
    org.alice.ok("role", "grant", "dana", "ncc", "--until", "2099-01-01")
    text = org.alice.ok("audit", "protocols", "show").out
    changed = tmp_path / "p.toml"
    changed.write_text(text.replace("version = 1", "version = 2").replace("max_delete_percent = 50",
                                                                            "max_delete_percent = 80"))
    digest = org.alice.json("audit", "protocols", "propose", str(changed))["digest"]
    r = org.alice.run("sync", "drafting", str(a), "--json")
    assert r.code == 1  # proposed is not in force
    dana.ok("audit", "protocols", "approve", digest[:16])
    assert acts(sync(org.alice, a)) == [("delete-remote", n) for n in ("1.md", "2.md", "3.md")]
