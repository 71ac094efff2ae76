"""What a run step changed becomes layer entries: new and changed paths, whiteouts for the rest."""

from __future__ import annotations

import os
from pathlib import Path

from corral.images.build.layer import pack
from corral.images.build.run import changes, snapshot
from corral.images.roots.unpack import unpack_image


def _root(root: Path) -> Path:
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "keep").write_text("keep")
    (root / "etc" / "edit").write_text("old")
    (root / "usr" / "share" / "doc" / "pkg").mkdir(parents=True)
    (root / "usr" / "share" / "doc" / "pkg" / "README").write_text("docs")
    (root / "old-link").symlink_to("etc/keep")
    return root


def _mutate(root: Path) -> None:
    (root / "etc" / "edit").write_text("new content")
    (root / "etc" / "added").write_text("added")
    (root / "usr" / "share" / "doc" / "pkg" / "README").unlink()
    (root / "usr" / "share" / "doc" / "pkg").rmdir()
    (root / "old-link").unlink()
    (root / "tmp").mkdir()  # a bubblewrap mount point, not content
    os.chmod(root / "etc", 0o700)


def test_changes_list_new_and_changed_paths_and_whiteouts(tmp_path: Path) -> None:
    root = _root(tmp_path / "root")
    before = snapshot(root)
    _mutate(root)
    entries = {e.name: e for e in changes(before, snapshot(root), root)}
    assert sorted(entries) == [".wh.old-link", "etc", "etc/added", "etc/edit",
                               "usr/share/doc/.wh.pkg"]
    assert entries["etc"].mode == 0o700
    assert entries["etc/edit"].size == len("new content")


def test_an_unchanged_tree_has_no_changes(tmp_path: Path) -> None:
    root = _root(tmp_path / "root")
    assert changes(snapshot(root), snapshot(root), root) == []


def test_the_change_layer_over_the_old_root_gives_the_new_root(tmp_path: Path) -> None:
    root = _root(tmp_path / "root")
    lower_entries = changes({}, snapshot(root), root)
    lower, lower_blob = pack(lower_entries, tmp_path)
    before = snapshot(root)
    _mutate(root)
    upper, upper_blob = pack(changes(before, snapshot(root), root), tmp_path)
    rebuilt = unpack_image([lower_blob, upper_blob], tmp_path / "rebuilt")
    assert (rebuilt / "etc" / "edit").read_text() == "new content"
    assert (rebuilt / "etc" / "added").read_text() == "added"
    assert (rebuilt / "etc" / "keep").exists()
    assert not (rebuilt / "usr" / "share" / "doc" / "pkg").exists()
    assert not (rebuilt / "old-link").is_symlink()
    assert not (rebuilt / "tmp").exists()
    assert lower.digest != upper.digest
