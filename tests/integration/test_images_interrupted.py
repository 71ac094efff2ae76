"""A build killed mid-way leaves no partial blob under a digest name; the next run starts
clean and gc removes the leftover temporary file."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from corral.images import LocalImageStore
from corral.spec.model import ImageSpec

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

SPEC = {"copy": [{"src": "data/", "dest": "/data"}]}
BUILD = """
import sys
from pathlib import Path
from corral.images import LocalImageStore
from corral.spec.model import ImageSpec
project = Path(sys.argv[1])
store = LocalImageStore(project / ".corral", cache_dir=project / "machine")
store.build("big", ImageSpec.model_validate({"copy": [{"src": "data/", "dest": "/data"}]}),
            project)
"""


def _project(folder: Path) -> Path:
    (folder / "data").mkdir(parents=True)
    for number in range(4):  # incompressible, so packing takes a while
        (folder / "data" / f"part{number}.bin").write_bytes(os.urandom(16 << 20))
    return folder


def _every_blob_matches_its_name(store: LocalImageStore) -> None:
    for path in store.layout.blobs.iterdir():
        if path.name.startswith("."):
            continue
        assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name


def test_a_killed_build_leaves_no_partial_blob_and_the_next_build_is_clean(
        tmp_path: Path) -> None:
    project = _project(tmp_path / "p")
    store = LocalImageStore(project / ".corral", cache_dir=project / "machine")
    build = subprocess.Popen([sys.executable, "-c", BUILD, str(project)])
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and build.poll() is None:
            if store.layout.blobs.is_dir() and any(
                    p.name.startswith(".layer-") and p.stat().st_size > 1 << 20
                    for p in store.layout.blobs.iterdir()):
                break
            time.sleep(0.02)
        assert build.poll() is None, "the build ended before it could be interrupted"
        build.send_signal(signal.SIGKILL)
        build.wait(timeout=30)
    finally:
        if build.poll() is None:
            build.kill()
            build.wait()
    partial = [p for p in store.layout.blobs.iterdir() if p.name.startswith(".")]
    assert partial, "the kill should have left a temporary file behind"
    _every_blob_matches_its_name(store)
    assert store.layout.find_tag("big:latest") is None

    digest = store.build("big", ImageSpec.model_validate(SPEC), project)
    _every_blob_matches_its_name(store)
    clean = LocalImageStore(tmp_path / "clean", cache_dir=tmp_path / "machine2")
    assert clean.build("big", ImageSpec.model_validate(SPEC), project) == digest

    for path in partial:  # as if the crash happened long ago
        os.utime(path, (time.time() - 7200, time.time() - 7200))
    report = store.gc(set(), dry_run=False)
    assert report.freed >= sum(1 for _ in partial)
    assert not any(p.exists() for p in partial)
    assert store.config(digest).digest == digest
