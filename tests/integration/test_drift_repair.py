"""Drift in a Debian base layer: a file tampered through the layer cache is found, the cache
is repaired at that one path (the base layer is not extracted again), a fresh root has the
original bytes, and `corral gc` removes the quarantined root once no instance runs on it."""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.drivers.process import ProcessDriver
from corral.engine.images.catalog import with_quarantine
from corral.images.roots.guard import RootGuard
from corral.images.roots.watch import InotifyWatcher
from corral.images.store import LocalImageStore
from corral.ports.image_trust import GcReport
from corral.ports.records import InstanceSpec
from corral.spec.model import ImageSpec
from loopback import poll

pytestmark = pytest.mark.integration

# Machine-wide like the real default (~/.cache/corral): the first run pays for debootstrap.
MACHINE_CACHE = Path(os.environ.get("CORRAL_TEST_CACHE",
                                    Path.home() / ".cache" / "corral-tests")) / "corral-cache"
TAMPERED = "etc/debian_version"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[LocalImageStore, str]:
    if shutil.which("debootstrap") is None and not Path("/usr/sbin/debootstrap").exists():
        pytest.skip("debootstrap is not installed")
    if os.geteuid() != 0:
        pytest.skip("debootstrap needs root")
    tmp_path = tmp_path_factory.mktemp("debian")
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "server.py").write_text("print('hello')\n")
    store = LocalImageStore(tmp_path / ".corral", cache_dir=MACHINE_CACHE)
    digest = store.build("web", ImageSpec.model_validate({
        "base": "debian:bookworm", "packages": ["python3"],
        "copy": [{"src": "app/", "dest": "/app"}], "entrypoint": ["python3"]}), tmp_path)
    return store, digest


@pytest.fixture
def debian(built: tuple[LocalImageStore, str]) -> Iterator[tuple[LocalImageStore, str, RootGuard]]:
    """The image with a root unpacked (a test before may have quarantined the last one)."""
    store, digest = built
    store.unpack(digest)
    yield store, digest, RootGuard.for_store(store)


def _base_layer(guard: RootGuard) -> Path:
    return next(p for p in guard.layer_cache.iterdir() if (p / "root" / TAMPERED).is_file())


def _inodes(folder: Path) -> dict[str, int]:
    found = {}
    for where, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(where, name)
            found[os.path.relpath(path, folder)] = os.lstat(path).st_ino
    return found


def _tamper_and_find(guard: RootGuard, digest: str) -> list[tuple[str, str]]:
    """Append to the base file through the layer cache's link; what the watch then finds."""
    verifier = guard.verifier(digest)
    assert verifier is not None and verifier.verify() == []
    watcher = InotifyWatcher()
    try:
        watcher.add(digest, verifier.root)
        with open(_base_layer(guard) / "root" / TAMPERED, "ab") as f:
            f.write(b"tampered\n")
        reported: set[str] = poll(lambda: watcher.poll(0.1).get(digest), 30,
                                  "the write through the cache to be reported")
    finally:
        watcher.close()
    return verifier.verify(reported)


def test_a_base_file_tampered_through_the_cache_is_repaired_alone(
        debian: tuple[LocalImageStore, str, RootGuard]) -> None:
    _, digest, guard = debian
    base = _base_layer(guard)
    original = (base / "root" / TAMPERED).read_bytes()
    before = _inodes(base)
    changes = _tamper_and_find(guard, digest)
    assert changes == [(f"/{TAMPERED}", "modified")]
    done = guard.replace_root(digest, changes)
    assert done.extracted == []
    assert done.repaired == {base.name: [TAMPERED]}
    after = _inodes(base)
    # Only the tampered path has a new inode: the rest of the base layer was not touched.
    assert {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)} \
        == {f"root/{TAMPERED}"}
    assert done.fresh is not None and (done.fresh / TAMPERED).read_bytes() == original
    assert done.quarantined is not None
    assert (done.quarantined / TAMPERED).read_bytes() == original + b"tampered\n"
    fresh = guard.verifier(digest)
    assert fresh is not None and fresh.verify() == []


def test_gc_removes_a_quarantined_root_once_its_instance_is_stopped(
        debian: tuple[LocalImageStore, str, RootGuard], tmp_path: Path) -> None:
    _, digest, guard = debian
    root = guard.root_of(digest)
    assert root is not None
    driver = ProcessDriver(tmp_path / "state")
    driver.start(InstanceSpec(id="web-1", service="web", release=1, image_digest=digest,
                              rootfs=str(root), argv=("python3", "-c",
                                                      "import time; time.sleep(120)"),
                              env={}))
    try:
        done = guard.replace_root(digest, _tamper_and_find(guard, digest))
        assert done.quarantined is not None and done.quarantined.is_dir()
        cache = guard.quarantine_dir.parent
        kept = with_quarantine(GcReport(), cache, dry_run=False)
        assert str(done.quarantined) not in kept.quarantined
        assert kept.still_mounted == (str(done.quarantined),)
        assert done.quarantined.is_dir()
    finally:
        driver.stop("web-1", grace=1)
    swept = with_quarantine(GcReport(), cache, dry_run=False)
    assert list(swept.quarantined) == [str(done.quarantined)] and swept.still_mounted == ()
    assert swept.quarantined[str(done.quarantined)] > 0  # the tampered file was its own
    assert not done.quarantined.exists()
    assert done.fresh is not None and stat.S_ISDIR(done.fresh.lstat().st_mode)
