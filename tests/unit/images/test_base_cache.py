"""The machine-wide cache of debootstrap base layers is verified before it is shared: a
cached layer is trusted by its stat signature, hashed when the signature changed, made again
when it no longer matches its digest, and hardlinked (read-only) into project layouts."""

from __future__ import annotations

import errno
import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path

import pytest

from corral.errors import ImageError
from corral.images.build import debian
from corral.images.build.debian import DebianBase, debian_layer
from corral.images.build.layer import Layer
from corral.images.oci.layout import Layout, digest_of

BASE = DebianBase(suite="bookworm", packages=("python3",), mirror="http://deb.example/debian")
CONTENT = b"a base layer, as a tar would be" * 1000


def cached(cache: Path, content: bytes = CONTENT) -> tuple[Path, Layer]:
    """A cache entry as an earlier version of corral left it: no signature recorded."""
    folder = cache / "bases" / BASE.key
    folder.mkdir(parents=True)
    digest = digest_of(content)
    layer = Layer(digest=digest, diff_id=digest, size=len(content))
    (folder / "layer.tar").write_bytes(content)
    (folder / "layer.json").write_text(json.dumps(asdict(layer)))
    return folder / "layer.tar", layer


class Bootstrapped(Exception):
    """debian_layer went on to make the base again."""


@pytest.fixture
def no_debootstrap(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse() -> None:
        raise Bootstrapped

    monkeypatch.setattr(debian, "_check_can_bootstrap", refuse)


def test_a_cached_layer_is_hashed_once_then_trusted_by_its_signature(
        tmp_path: Path, no_debootstrap: None, monkeypatch: pytest.MonkeyPatch) -> None:
    blob, layer = cached(tmp_path)
    assert debian_layer(BASE, tmp_path, lambda _: None) == (layer, blob)
    assert blob.stat().st_mode & 0o777 == 0o444
    assert (blob.parent / "layer.stat").is_file()

    real_sha256 = hashlib.sha256

    def no_file_hashing(*data: bytes) -> object:
        assert data, "the blob was hashed although its signature held"
        return real_sha256(*data)  # the cache key is a hash too

    monkeypatch.setattr(hashlib, "sha256", no_file_hashing)
    said: list[str] = []
    assert debian_layer(BASE, tmp_path, said.append) == (layer, blob)
    assert said == [f"{BASE.describe()}: cached"]


def test_a_cached_layer_changed_in_place_is_made_again(tmp_path: Path,
                                                       no_debootstrap: None) -> None:
    blob, _ = cached(tmp_path)
    debian_layer(BASE, tmp_path, lambda _: None)
    os.chmod(blob, 0o644)
    with blob.open("r+b") as handle:  # same size, other bytes: only the hash can tell
        handle.write(b"X")
    said: list[str] = []
    with pytest.raises(Bootstrapped):
        debian_layer(BASE, tmp_path, said.append)
    assert "does not match its digest" in said[0]
    assert not (blob.parent / "layer.json").exists()


def test_a_touched_but_intact_layer_is_hashed_and_trusted_again(tmp_path: Path,
                                                                no_debootstrap: None) -> None:
    blob, layer = cached(tmp_path)
    debian_layer(BASE, tmp_path, lambda _: None)
    os.utime(blob, ns=(0, 1_000_000_000))
    assert debian_layer(BASE, tmp_path, lambda _: None) == (layer, blob)
    record = json.loads((blob.parent / "layer.stat").read_text())
    assert record[1] == 1_000_000_000


def test_a_verified_base_is_linked_into_a_layout_not_copied(tmp_path: Path) -> None:
    source = tmp_path / "layer.tar"
    source.write_bytes(CONTENT)
    source.chmod(0o444)
    layout = Layout(tmp_path / "images")
    digest = digest_of(CONTENT)
    assert layout.link_in(source, digest) == len(CONTENT)
    assert layout.blob_path(digest).stat().st_ino == source.stat().st_ino
    assert layout.link_in(source, digest) == len(CONTENT)  # already there: nothing to do
    assert sorted(p.name for p in layout.blobs.iterdir()) == [digest.removeprefix("sha256:")]


def test_without_hardlinks_a_base_is_copied_and_verified(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def cross_device(*_: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", cross_device)
    source = tmp_path / "layer.tar"
    source.write_bytes(CONTENT)
    layout = Layout(tmp_path / "images")
    digest = digest_of(CONTENT)
    assert layout.link_in(source, digest) == len(CONTENT)
    assert layout.blob_path(digest).stat().st_ino != source.stat().st_ino
    assert layout.read_blob(digest) == CONTENT
    with pytest.raises(ImageError, match="does not match"):
        layout.link_in(source, digest_of(b"other"))
    assert sorted(p.name for p in layout.blobs.iterdir()) == [digest.removeprefix("sha256:")]
