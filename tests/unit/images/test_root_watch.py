"""The root watcher: inotify on every inode (writes through any hardlink), shared watches for
shared inodes, and polling for roots beyond the watch budget; on real files in tmp folders."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from corral.images.roots.watch import InotifyWatcher, PollingWatcher, Report, Watcher, watch_limit
from loopback import poll


def _root(folder: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text)
    return folder


def _linked_root(cache: Path, root: Path) -> Path:
    """`root` made of hardlinks to every file of `cache` (as roots.py composes them)."""
    for where, _, files in os.walk(cache):
        rel = os.path.relpath(where, cache)
        (root / rel).mkdir(parents=True, exist_ok=True)
        for name in files:
            os.link(os.path.join(where, name), root / rel / name)
    return root


def _until(watcher: Watcher, wanted: dict[str, str]) -> Report:
    """Poll until every key of `wanted` reported its path (generous deadline)."""
    seen: Report = {}

    def collect() -> bool:
        for key, paths in watcher.poll(0.05).items():
            seen.setdefault(key, set()).update(paths)
        return all(path in seen.get(key, ()) for key, path in wanted.items())

    poll(collect, 30, f"reports of {wanted}")
    return seen


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return _root(tmp_path / "cache", {"www/index.html": "<h1>hi</h1>\n", "bin/app": "app\n"})


@pytest.mark.parametrize("kind", ["inotify", "polling"])
def test_a_write_through_another_hardlink_is_reported_for_the_root(
        cache: Path, tmp_path: Path, kind: str) -> None:
    root = _linked_root(cache, tmp_path / "root")
    watcher: Watcher = InotifyWatcher() if kind == "inotify" else PollingWatcher()
    try:
        watcher.add("a", root)
        assert watcher.poll(0.01) == {}
        with open(cache / "www" / "index.html", "ab") as f:
            f.write(b"evil\n")
        assert "www/index.html" in _until(watcher, {"a": "www/index.html"})["a"]
    finally:
        watcher.close()


def test_a_mode_change_through_another_hardlink_is_reported(cache: Path, tmp_path: Path) -> None:
    root = _linked_root(cache, tmp_path / "root")
    watcher = InotifyWatcher()
    try:
        watcher.add("a", root)
        os.chmod(cache / "bin" / "app", 0o777)
        _until(watcher, {"a": "bin/app"})
    finally:
        watcher.close()


def test_roots_sharing_inodes_share_watches_and_keep_them_until_the_last_goes(
        cache: Path, tmp_path: Path) -> None:
    one, two = _linked_root(cache, tmp_path / "one"), _linked_root(cache, tmp_path / "two")
    watcher = InotifyWatcher()
    try:
        watcher.add("one", one)
        alone = watcher.watches  # 3 folders and 2 files
        watcher.add("two", two)
        assert watcher.watches == alone + 3  # its own folders; the files' watches are shared
        watcher.remove("one")
        assert watcher.watches == alone
        with open(cache / "bin" / "app", "ab") as f:
            f.write(b"x")
        seen = _until(watcher, {"two": "bin/app"})
        assert "one" not in seen
        watcher.remove("two")
        assert watcher.watches == 0
    finally:
        watcher.close()


def test_a_root_beyond_the_watch_budget_is_polled_and_says_so(
        cache: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = _linked_root(cache, tmp_path / "root")
    watcher = InotifyWatcher(budget=2, fallback_period=0.05)
    try:
        with caplog.at_level(logging.WARNING, logger="corral.images.roots.watch"):
            watcher.add("big", root)
        assert watcher.polled == {"big"} and watcher.watches == 0
        assert "polled every 0.05s instead" in caplog.text
        with open(cache / "www" / "index.html", "ab") as f:
            f.write(b"evil\n")
        _until(watcher, {"big": "www/index.html"})
        watcher.remove("big")
        assert watcher.polled == set()
    finally:
        watcher.close()


def test_a_file_added_to_a_watched_folder_and_a_new_folder_are_reported(tmp_path: Path) -> None:
    root = _root(tmp_path / "root", {"etc/passwd": "root\n"})
    watcher = InotifyWatcher()
    try:
        watcher.add("a", root)
        (root / "etc" / "shadow").write_text("x\n")
        (root / "opt").mkdir()
        _until(watcher, {"a": "etc/shadow"})
        (root / "opt" / "tool").write_text("x\n")  # the new folder is watched too
        _until(watcher, {"a": "opt/tool"})
    finally:
        watcher.close()


def test_the_kernel_watch_limit_is_read() -> None:
    limit = watch_limit()
    assert limit is None or limit > 0


@pytest.mark.parametrize("kind", ["inotify", "polling"])
def test_a_tree_watched_without_its_files_reports_entries_not_content(
        cache: Path, tmp_path: Path, kind: str) -> None:
    spare = _linked_root(cache, tmp_path / "spare")
    watcher: Watcher = InotifyWatcher() if kind == "inotify" else PollingWatcher()
    try:
        watcher.add("spare", spare, files=False)
        os.link(cache / "bin" / "app", cache / "bin" / "app-again")  # a new link: ctime
        with open(cache / "bin" / "app", "ab") as f:
            f.write(b"x")
        assert watcher.poll(0.1) == {}
        (spare / "bin" / "extra").write_text("x\n")
        _until(watcher, {"spare": "bin/extra"})
    finally:
        watcher.close()
