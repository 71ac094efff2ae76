"""A copy step takes the right files from the context, and hashes them only when they change."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from corral.errors import ImageError
from corral.images.build.context import StatIndex, copy_entries, inputs_digest, is_excluded
from corral.spec.model import CopyStep


def _context(root: Path) -> Path:
    (root / "app" / "__pycache__").mkdir(parents=True)
    (root / "app" / "tests").mkdir()
    (root / "app" / "server.py").write_text("print('hi')\n")
    (root / "app" / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(root / "app" / "run.sh", 0o700)
    (root / "app" / "__pycache__" / "server.cpython-311.pyc").write_bytes(b"\x00")
    (root / "app" / "tests" / "test_x.py").write_text("")
    (root / "config.toml").write_text("a = 1\n")
    return root


def test_a_folder_copies_its_contents_into_dest(tmp_path: Path) -> None:
    step = CopyStep(src="app/", dest="/srv/app", exclude=("__pycache__", "tests/*.py"))
    names = [e.name for e in copy_entries(step, _context(tmp_path))]
    assert names == ["srv/app", "srv/app/run.sh", "srv/app/server.py", "srv/app/tests"]


def test_modes_keep_only_whether_a_file_is_executable(tmp_path: Path) -> None:
    entries = {e.name: e for e in copy_entries(CopyStep(src="app", dest="/app"),
                                              _context(tmp_path))}
    assert entries["app/run.sh"].mode == 0o755
    assert entries["app/server.py"].mode == 0o644
    assert entries["app/tests"].mode == 0o755


def test_mode_and_owner_of_a_step_apply_to_its_files(tmp_path: Path) -> None:
    step = CopyStep(src="config.toml", dest="/etc/app/", mode=0o600, owner="1000:100")
    [entry] = copy_entries(step, _context(tmp_path))
    assert (entry.name, entry.mode, entry.uid, entry.gid) == ("etc/app/config.toml", 0o600,
                                                              1000, 100)


def test_a_file_copied_to_a_path_takes_that_name(tmp_path: Path) -> None:
    [entry] = copy_entries(CopyStep(src="config.toml", dest="/etc/app.toml"), _context(tmp_path))
    assert entry.name == "etc/app.toml"


def test_a_missing_source_says_which_step(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="'nope/' does not exist"):
        copy_entries(CopyStep(src="nope/", dest="/x"), tmp_path)


def test_an_owner_that_is_not_numbers_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="uid:gid"):
        copy_entries(CopyStep(src="config.toml", dest="/x", owner="app:app"), _context(tmp_path))


@pytest.mark.parametrize(("rel", "excluded"), [
    ("a/b/__pycache__", True), ("x.pyc", True), ("deep/x.pyc", True),
    ("tests/t.py", True), ("src/tests/t.py", False), ("server.py", False)])
def test_exclude_patterns_match_like_gitignore(rel: str, excluded: bool) -> None:
    assert is_excluded(rel, ("__pycache__", "*.pyc", "tests/*.py")) is excluded


def test_an_unchanged_file_is_not_hashed_again(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_text("aaaa")
    os.utime(path, ns=(10**18, 10**18))  # old enough not to be "racily clean"
    index = StatIndex(tmp_path / "index.json")
    first = index.file_hash(path)
    index.save()
    # Same size, same mtime, same inode: the stat check answers without reading the file.
    with path.open("r+") as handle:
        handle.write("bbbb")
    os.utime(path, ns=(10**18, 10**18))
    assert StatIndex(tmp_path / "index.json").file_hash(path) == first
    os.utime(path, ns=(10**18 + 1, 10**18 + 1))
    assert StatIndex(tmp_path / "index.json").file_hash(path) != first


def test_the_inputs_digest_changes_with_content_mode_or_name(tmp_path: Path) -> None:
    context = _context(tmp_path)
    index = StatIndex(tmp_path / "index.json")
    step = CopyStep(src="app/", dest="/app")
    before = inputs_digest(copy_entries(step, context), index)
    assert inputs_digest(copy_entries(step, context), index) == before
    (context / "app" / "server.py").write_text("print('bye')\n")
    changed = inputs_digest(copy_entries(step, context), index)
    assert changed != before
    moved = inputs_digest(copy_entries(CopyStep(src="app/", dest="/srv"), context), index)
    assert moved != changed
