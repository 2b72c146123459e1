"""The cheap check of where a pass acts (``docplaces.plainly_inside``, issue 16's first sync, session 13) says a path
is plain only where resolving it would say so too: a link anywhere under the folder (the file itself, a folder on
the way, one pointing back inside), ``..``, a name leading out or to the folder itself, or a folder that is no longer
the directory it was all send the engine to the full check (``docplaces.inside``), which refuses them as before."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from client.docplaces import inside, plainly_inside, root_id
from vault.errors import BadName


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = (tmp_path / "folder").resolve()
    (root / "d" / "e").mkdir(parents=True)
    (root / "d" / "e" / "f.md").write_text("f\n")
    (root / "file.md").write_text("x\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "out").symlink_to(outside)
    (root / "back").symlink_to(root / "d")
    (root / "d" / "link.md").symlink_to(root / "file.md")
    (root / "dangling.md").symlink_to(tmp_path / "nowhere")
    return root


def _resolves_plainly(root: Path, name: str) -> bool:
    """The engine's former check alone: ``inside`` gives back the very path."""
    try:
        return inside(root, name) == root / name
    except BadName:
        return False


NAMES = ["file.md", "d/e/f.md", "d/e", "new.md", "d/new/deeper/x.md", "file.md/under", "out", "out/x.md", "back",
         "back/e/f.md", "d/link.md", "dangling.md", "d/../file.md", "../folder/file.md", "/etc/passwd", "", "."]


@pytest.mark.parametrize("name", NAMES)
def test_plain_only_where_resolving_says_so(folder: Path, name: str) -> None:
    ident = root_id(folder)
    assert ident is not None
    fast = plainly_inside(folder, ident, name)
    assert not fast or _resolves_plainly(folder, name)  # never plain where resolving would refuse
    if name in ("file.md", "d/e/f.md", "d/e", "new.md", "d/new/deeper/x.md", "file.md/under"):
        assert fast  # the usual case is told without resolving


def test_a_folder_replaced_meanwhile_is_never_plain(folder: Path, tmp_path: Path) -> None:
    ident = root_id(folder)
    assert ident is not None and plainly_inside(folder, ident, "d/e/f.md")
    os.rename(folder, tmp_path / "moved")
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "d" / "e").mkdir(parents=True)
    folder.symlink_to(elsewhere)  # the folder's path now leads elsewhere through a link
    assert not plainly_inside(folder, ident, "d/e/f.md")
    assert not _resolves_plainly(folder, "d/e/f.md")


def test_a_folder_reached_through_a_link_has_no_identity(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "via").symlink_to(real)
    assert root_id(tmp_path / "via") is None and root_id(tmp_path / "missing") is None
    assert root_id(real.resolve()) is not None
