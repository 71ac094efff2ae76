"""File drift in real unpacked roots: file lists from layers, verification, watchers and
quarantine, on a scratch image built by the real local image store."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from corral.images.guard import RootGuard
from corral.images.store import LocalImageStore
from corral.images.watch import InotifyWatcher, PollingWatcher, Watcher
from corral.spec.model import ImageSpec


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
def test_a_watcher_reports_a_changed_file_within_a_second(
        image: tuple[LocalImageStore, str, RootGuard], kind: str) -> None:
    _, digest, guard = image
    root = guard.root_of(digest)
    assert root is not None
    watcher: Watcher = InotifyWatcher() if kind == "inotify" else PollingWatcher()
    try:
        watcher.add(digest, root)
        assert watcher.poll(0.05) == {}
        changed_at = time.monotonic()
        with open(root / "app" / "lib" / "util.py", "ab") as f:
            f.write(b"# changed\n")
        seen: set[str] = set()
        while time.monotonic() - changed_at < 1.0 and "app/lib/util.py" not in seen:
            seen |= watcher.poll(0.1).get(digest, set())
        assert "app/lib/util.py" in seen
    finally:
        watcher.close()


def test_quarantine_moves_the_root_and_drops_the_layer_holding_the_file(
        image: tuple[LocalImageStore, str, RootGuard]) -> None:
    store, digest, guard = image
    root = guard.root_of(digest)
    assert root is not None
    (root / "app" / "server.py").chmod(0o644)
    (root / "app" / "server.py").write_text("print('evil')\n")
    layers = sorted(p.name for p in guard.layer_cache.iterdir()) \
        if guard.layer_cache.is_dir() else []
    moved = guard.quarantine(digest, [("/app/server.py", "modified")])
    assert moved is not None and moved.is_dir() and guard.root_of(digest) is None
    left = sorted(p.name for p in guard.layer_cache.iterdir()) \
        if guard.layer_cache.is_dir() else []
    assert len(left) == len(layers) - 1 if layers else left == []
    fresh = store.unpack(digest)
    assert (fresh / "app" / "server.py").read_text() == "print('hello')\n"
    verifier = guard.verifier(digest)
    assert verifier is not None and verifier.verify() == []
