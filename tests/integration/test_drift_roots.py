"""File drift in real unpacked roots: file lists from layers, verification, watchers and
quarantine, on a scratch image built by the real local image store."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from corral.images.roots.guard import RootGuard
from corral.images.roots.quarantine import sweep_quarantine
from corral.images.roots.unpack import remove_tree
from corral.images.roots.watch import InotifyWatcher, PollingWatcher, Watcher
from corral.images.store import LocalImageStore
from corral.spec.model import ImageSpec
from loopback import poll

pytestmark = pytest.mark.integration


@pytest.fixture
def image(tmp_path: Path) -> tuple[LocalImageStore, str, RootGuard]:
    (tmp_path / "app" / "lib").mkdir(parents=True)
    (tmp_path / "app" / "server.py").write_text("print('hello')\n")
    (tmp_path / "app" / "lib" / "util.py").write_text("X = 1\n")
    (tmp_path / "static").mkdir()
    (tmp_path / "static" / "index.html").write_text("<h1>hi</h1>\n")
    store = LocalImageStore(tmp_path / ".corral", cache_dir=tmp_path / "machine-cache")
    digest = store.build("web", ImageSpec.model_validate({
        "base": "scratch", "copy": [{"src": "app/", "dest": "/app"},
                                    {"src": "static/", "dest": "/srv"}],
        "entrypoint": ["/app/server.py"]}), tmp_path)
    store.unpack(digest)
    return store, digest, RootGuard.for_store(store)


def test_a_fresh_root_matches_the_file_list_computed_from_its_layers(
        image: tuple[LocalImageStore, str, RootGuard]) -> None:
    _, digest, guard = image
    entries = guard.file_list(digest)
    assert entries["app/server.py"].kind == "file"
    assert entries["app/lib"].kind == "dir"
    verifier = guard.verifier(digest)
    assert verifier is not None and verifier.verify() == []


def test_the_verifier_names_modified_added_removed_and_re_moded_files(
        image: tuple[LocalImageStore, str, RootGuard]) -> None:
    _, digest, guard = image
    verifier = guard.verifier(digest)
    assert verifier is not None
    verifier.verify()  # remembers clean fingerprints; a change must still be seen
    root = verifier.root
    os.chmod(root / "app" / "server.py", 0o755)
    (root / "app" / "server.py").write_text("print('evil')\n")
    (root / "app" / "lib" / "util.py").unlink()
    (root / "app" / "extra.py").write_text("")
    os.chmod(root / "srv" / "index.html", 0o666)
    changes = dict(verifier.verify())
    assert changes["/app/server.py"] in ("modified", f"mode changed from "
                                         f"{guard.file_list(digest)['app/server.py'].mode:o} "
                                         "to 755")
    assert changes["/app/lib/util.py"] == "removed"
    assert changes["/app/extra.py"] == "added"
    assert changes["/srv/index.html"].startswith("mode changed")


def test_an_appended_byte_is_found_even_with_the_same_mode(
        image: tuple[LocalImageStore, str, RootGuard]) -> None:
    _, digest, guard = image
    verifier = guard.verifier(digest)
    assert verifier is not None and verifier.verify() == []
    with open(verifier.root / "srv" / "index.html", "ab") as f:
        f.write(b"\n")
    assert verifier.verify(["srv/index.html"]) == [("/srv/index.html", "modified")]


@pytest.mark.parametrize("kind", ["inotify", "polling"])
def test_a_watcher_reports_a_changed_file(
        image: tuple[LocalImageStore, str, RootGuard], kind: str) -> None:
    _, digest, guard = image
    root = guard.root_of(digest)
    assert root is not None
    watcher: Watcher = InotifyWatcher() if kind == "inotify" else PollingWatcher()
    try:
        watcher.add(digest, root)
        assert watcher.poll(0.05) == {}
        with open(root / "app" / "lib" / "util.py", "ab") as f:
            f.write(b"# changed\n")
        seen: dict[str, set[str]] = {}  # how fast: bench-operate measures it, not a test
        poll(lambda: "app/lib/util.py" in _collect(watcher, seen).get(digest, ()),
             30, "the watcher to report app/lib/util.py")
    finally:
        watcher.close()


def test_quarantine_moves_the_root_and_repairs_the_layer_cache_at_the_drifted_path(
        image: tuple[LocalImageStore, str, RootGuard]) -> None:
    store, digest, guard = image
    root = guard.root_of(digest)
    assert root is not None
    (root / "app" / "server.py").chmod(0o644)
    (root / "app" / "server.py").write_text("print('evil')\n")
    layers = {p.name: (p / "meta.json").stat().st_ino for p in guard.layer_cache.iterdir()}
    done = guard.quarantine(digest, [("/app/server.py", "modified")])
    assert done.quarantined is not None and guard.root_of(digest) is None
    assert (done.quarantined / "app" / "server.py").read_text() == "print('evil')\n"
    assert [paths for paths in done.repaired.values()] == [["app/server.py"]]
    assert done.extracted == []
    assert {p.name: (p / "meta.json").stat().st_ino for p in guard.layer_cache.iterdir()} \
        == layers  # repaired in place, no layer extracted again
    fresh = store.unpack(digest)
    assert (fresh / "app" / "server.py").read_text() == "print('hello')\n"
    verifier = guard.verifier(digest)
    assert verifier is not None and verifier.verify() == []


def _collect(watcher: Watcher, seen: dict[str, set[str]]) -> dict[str, set[str]]:
    for key, paths in watcher.poll(0.1).items():
        seen.setdefault(key, set()).update(paths)
    return seen


def _cache_path(guard: RootGuard, rel: str) -> Path:
    return next(p / "root" / rel for p in guard.layer_cache.iterdir()
                if (p / "root" / rel).is_file())


@pytest.mark.parametrize("kind", ["inotify", "polling"])
def test_a_write_through_the_layer_cache_hardlink_is_found_and_gets_a_clean_root(
        image: tuple[LocalImageStore, str, RootGuard], kind: str) -> None:
    _, digest, guard = image
    root = guard.root_of(digest)
    verifier = guard.verifier(digest)
    assert root is not None and verifier is not None and verifier.verify() == []
    cached = _cache_path(guard, "srv/index.html")
    assert cached.stat().st_ino == (root / "srv" / "index.html").stat().st_ino
    watcher: Watcher = InotifyWatcher() if kind == "inotify" else PollingWatcher()
    try:
        watcher.add(digest, root)
        with open(cached, "ab") as f:  # not through the root: through the cache's link
            f.write(b"<script>evil()</script>\n")
        seen: dict[str, set[str]] = {}
        poll(lambda: "srv/index.html" in _collect(watcher, seen).get(digest, ()), 30,
             "the write to be reported")
    finally:
        watcher.close()
    changes = verifier.verify(seen[digest])
    assert changes == [("/srv/index.html", "modified")]
    done = guard.replace_root(digest, changes)
    assert done.fresh is not None and done.quarantined is not None
    assert (done.fresh / "srv" / "index.html").read_text() == "<h1>hi</h1>\n"
    assert cached.read_text() == "<h1>hi</h1>\n"  # the cache path holds a fresh inode
    assert "evil" in (done.quarantined / "srv" / "index.html").read_text()
    fresh = guard.verifier(digest)
    assert fresh is not None and fresh.verify() == []


def test_roots_sharing_a_layer_share_its_watches_and_are_both_reported(
        image: tuple[LocalImageStore, str, RootGuard], tmp_path: Path) -> None:
    store, digest, guard = image
    other = store.build("web2", ImageSpec.model_validate({
        "base": "scratch", "copy": [{"src": "app/", "dest": "/app"},
                                    {"src": "static/", "dest": "/www"}],
        "entrypoint": ["/app/server.py"]}), tmp_path)
    roots = {digest: store.unpack(digest), other: store.unpack(other)}
    assert (roots[digest] / "app" / "server.py").stat().st_ino == \
        (roots[other] / "app" / "server.py").stat().st_ino
    watcher = InotifyWatcher()
    try:
        watcher.add(digest, roots[digest])
        alone = watcher.watches
        watcher.add(other, roots[other])
        assert watcher.watches < 2 * alone  # the shared files' inodes are watched once
        with open(_cache_path(guard, "app/server.py"), "ab") as f:
            f.write(b"# changed\n")
        seen: dict[str, set[str]] = {}
        poll(lambda: all("app/server.py" in _collect(watcher, seen).get(k, ()) for k in roots),
             30, "both roots to be reported")
    finally:
        watcher.close()


def test_a_standby_root_takes_the_repaired_files_and_becomes_the_fresh_root(
        image: tuple[LocalImageStore, str, RootGuard]) -> None:
    _, digest, guard = image
    standby = guard.make_standby(digest)
    folder = standby.stat().st_ino
    cached = _cache_path(guard, "app/server.py")
    with open(cached, "ab") as f:
        f.write(b"import evil\n")
    root = guard.root_of(digest)
    assert root is not None and (root / "app" / "server.py").read_text().endswith("evil\n")
    (root / "srv" / "index.html").unlink()  # through the root: only its own entry goes
    changes = [("/app/server.py", "modified"), ("/srv/index.html", "removed")]
    done = guard.replace_root(digest, changes)
    assert done.fresh is not None and done.fresh.stat().st_ino == folder  # renamed, not made
    assert not guard.standby_of(digest).exists()
    assert (done.fresh / "app" / "server.py").read_text() == "print('hello')\n"
    assert (done.fresh / "srv" / "index.html").read_text() == "<h1>hi</h1>\n"
    fresh = guard.verifier(digest)
    assert fresh is not None and fresh.verify() == []


def test_gc_keeps_the_standby_of_an_unpacked_image_and_removes_it_with_its_root(
        image: tuple[LocalImageStore, str, RootGuard]) -> None:
    _, digest, guard = image
    standby = guard.make_standby(digest)
    cache = guard.quarantine_dir.parent
    sweep_quarantine(cache, dry_run=False, mounted=set())
    assert standby.is_dir()
    root = guard.root_of(digest)
    assert root is not None
    remove_tree(root)  # as `corral gc` does for an image no release keeps
    sweep_quarantine(cache, dry_run=False, mounted=set())
    assert not standby.exists()
