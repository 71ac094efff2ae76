"""corral.lock pins for oci: bases, and the blob-location hints behind cross-repository
mounts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from corral.errors import ImageError
from corral.images.oci.layout import MANIFEST_MEDIA_TYPE, Layout, canonical_json
from corral.images.registry.base_image import oci_base_manifest
from corral.images.registry.locations import BlobLocations
from corral.images.registry.lock import LOCK_NAME, pin, read_pins

BASE = "oci:127.0.0.1:1/team/base:1"  # port 1: nothing listens, so any request would fail


def _manifest(layout: Layout, note: str = "") -> str:
    config, size = layout.write_blob(canonical_json({"note": note}))
    manifest: dict[str, object] = {
        "schemaVersion": 2, "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config,
                   "size": size}, "layers": []}
    digest, _ = layout.write_blob(canonical_json(manifest))
    return digest


def test_pins_are_written_sorted_and_read_back_keeping_other_pins(tmp_path: Path) -> None:
    pin(tmp_path, "oci:h.io/b:1", "sha256:" + "b" * 64)
    pin(tmp_path, "oci:h.io/a:1", "sha256:" + "a" * 64)
    assert read_pins(tmp_path) == {"oci:h.io/a:1": "sha256:" + "a" * 64,
                                   "oci:h.io/b:1": "sha256:" + "b" * 64}
    assert list(json.loads((tmp_path / LOCK_NAME).read_text())["bases"]) == [
        "oci:h.io/a:1", "oci:h.io/b:1"]
    assert [p.name for p in tmp_path.iterdir()] == [LOCK_NAME]


def test_a_broken_lock_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / LOCK_NAME).write_text("{not json")
    with pytest.raises(ImageError, match="not valid JSON"):
        read_pins(tmp_path)


def test_a_pinned_base_already_local_needs_no_registry(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "images")
    digest = _manifest(layout)
    pin(tmp_path, BASE, digest)
    assert oci_base_manifest(BASE, tmp_path, layout, lambda _: None) == digest


def test_a_base_by_digest_already_local_needs_no_registry_and_no_pin(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "images")
    digest = _manifest(layout)
    base = f"oci:127.0.0.1:1/team/base@{digest}"
    assert oci_base_manifest(base, tmp_path, layout, lambda _: None) == digest
    assert not (tmp_path / LOCK_NAME).exists()


def test_a_pinned_base_that_is_missing_is_pulled_by_its_digest(tmp_path: Path) -> None:
    pin(tmp_path, BASE, "sha256:" + "c" * 64)
    with pytest.raises(ImageError, match="unreachable"):
        oci_base_manifest(BASE, tmp_path, Layout(tmp_path / "images"), lambda _: None)
    assert read_pins(tmp_path) == {BASE: "sha256:" + "c" * 64}


def test_blob_locations_remember_the_latest_repositories_across_runs(tmp_path: Path) -> None:
    path = tmp_path / "blobs.json"
    locations = BlobLocations(path)
    locations.add("h:5000", "sha256:1", "team/a")
    locations.add("h:5000", "sha256:1", "team/b")
    locations.add("h:5000", "sha256:1", "team/a")
    locations.save()
    again = BlobLocations(path)
    assert again.where("h:5000", "sha256:1") == ["team/a", "team/b"]
    assert again.where("other:5000", "sha256:1") == []


def test_a_corrupt_blob_location_file_is_only_a_lost_hint(tmp_path: Path) -> None:
    (tmp_path / "blobs.json").write_text("][")
    assert BlobLocations(tmp_path / "blobs.json").where("h", "sha256:1") == []
