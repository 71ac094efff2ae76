"""RUN steps use the image's own /tmp, as Docker runs them: a file COPY put there is seen by
the next RUN (`COPY requirements.txt /tmp/` then `RUN pip install -r /tmp/…`, as people
write it), and what one RUN leaves there is in its layer and seen by the next. Both
sandboxes (overlay and copied root) give the same digest. Built for real: a Debian base
from the machine cache, bubblewrap."""

from __future__ import annotations

import os
import shutil
import tarfile
from pathlib import Path

import pytest

from corral.images import LocalImageStore
from corral.images.build import builder as builder_module
from corral.images.build.run import Sandbox
from corral.spec.model import ImageSpec

pytestmark = pytest.mark.integration

MACHINE_CACHE = Path(os.environ.get("CORRAL_TEST_CACHE",
                                    Path.home() / ".cache" / "corral-tests")) / "corral-cache"

DOCKERFILE = """FROM debian:bookworm
COPY requirements.txt /tmp/requirements.txt
RUN cat /tmp/requirements.txt > /srv/copied
RUN echo downloaded > /tmp/archive
RUN cat /tmp/archive > /srv/unpacked && rm /tmp/archive /tmp/requirements.txt
"""


def _build(folder: Path) -> tuple[LocalImageStore, str]:
    if os.geteuid() != 0 or shutil.which("bwrap") is None:
        pytest.skip("run steps need bubblewrap (and root for the overlay)")
    if not (MACHINE_CACHE / "bases").is_dir() and shutil.which("debootstrap") is None:
        pytest.skip("no cached Debian base and no debootstrap to make one")
    folder.mkdir(parents=True)
    (folder / "requirements.txt").write_text("flask==3.0\n")
    (folder / "Dockerfile").write_text(DOCKERFILE)
    store = LocalImageStore(folder / ".corral", cache_dir=MACHINE_CACHE)
    return store, store.build("app", ImageSpec(dockerfile="Dockerfile"), folder)


def _names_and_content(store: LocalImageStore, digest: str) -> list[dict[str, str]]:
    """Each layer above the base: its entries' names, and the content of its files."""
    found = []
    for layer in store.layout.read_json(digest)["layers"][1:]:
        entries: dict[str, str] = {}
        with tarfile.open(store.layout.blob_path(layer["digest"])) as tar:
            for member in tar:
                data = tar.extractfile(member) if member.isfile() else None
                entries[member.name] = data.read().decode() if data else ""
        found.append(entries)
    return found


def test_what_copy_or_a_run_puts_in_tmp_is_seen_by_the_next_run_and_layered(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store, digest = _build(tmp_path / "overlay")
    copied, read, made, used = _names_and_content(store, digest)
    assert copied["tmp/requirements.txt"] == "flask==3.0\n"
    assert read["srv/copied"] == "flask==3.0\n"
    assert made["tmp/archive"] == "downloaded\n"
    assert used["srv/unpacked"] == "downloaded\n"
    assert {"tmp/.wh.archive", "tmp/.wh.requirements.txt"} <= set(used)

    monkeypatch.setattr(builder_module, "make_sandbox",
                        lambda layers, scratch, cache, lower=None: Sandbox([b for b, _ in layers],
                                                                           scratch))
    assert _build(tmp_path / "copied")[1] == digest
