"""The OCI layout stores verified blobs atomically and keeps tags in index.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from corral.errors import ImageError, NotFound
from corral.images.oci.layout import REF_NAME, Layout, digest_of


def _descriptor(digest: str) -> dict[str, object]:
    return {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest,
            "size": 2}


def test_a_blob_reads_back_by_its_digest(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "images")
    digest, size = layout.write_blob(b"hello")
    assert digest == digest_of(b"hello") and size == 5
    assert layout.read_blob(digest) == b"hello"
    assert json.loads((tmp_path / "images" / "oci-layout").read_text()) == {
        "imageLayoutVersion": "1.0.0"}


def test_a_blob_that_does_not_match_its_digest_is_never_stored(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "images")
    wrong = digest_of(b"something else")
    with pytest.raises(ImageError, match="does not match"):
        layout.write_blob(b"hello", expected=wrong)
    assert not layout.has_blob(wrong)
    source = tmp_path / "file"
    source.write_bytes(b"hello")
    with pytest.raises(ImageError, match="does not match"):
        layout.ingest_file(source, wrong)
    assert not layout.has_blob(wrong)
    assert [p.name for p in layout.blobs.iterdir()] == []  # no tmp file left either


def test_a_missing_blob_is_not_found(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "images")
    with pytest.raises(NotFound):
        layout.read_blob(digest_of(b"never written"))


def test_a_corrupted_json_blob_is_detected_on_read(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "images")
    digest, _ = layout.write_blob(b'{"a": 1}')
    layout.blob_path(digest).write_bytes(b'{"a": 2}')
    with pytest.raises(ImageError, match="does not match its digest"):
        layout.read_json(digest)


def test_a_tag_moves_and_the_old_image_stays_untagged(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "images")
    first, _ = layout.write_blob(b"{}")
    second, _ = layout.write_blob(b"[]")
    layout.tag("web:latest", _descriptor(first))
    layout.tag("api:latest", _descriptor(first))
    layout.tag("web:latest", _descriptor(second))
    found = layout.find_tag("web:latest")
    assert found is not None and found["digest"] == second
    index = json.loads((tmp_path / "images" / "index.json").read_text())
    refs = sorted((d["digest"] == first, d.get("annotations", {}).get(REF_NAME))
                  for d in index["manifests"])
    assert refs == [(False, "web:latest"), (True, "api:latest")]
    assert index["schemaVersion"] == 2


def test_retagging_the_same_image_does_not_duplicate_entries(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "images")
    digest, _ = layout.write_blob(b"{}")
    for _ in range(3):
        layout.tag("web:latest", _descriptor(digest))
    assert len(layout.descriptors()) == 1


def test_an_image_that_loses_its_only_tag_is_still_listed(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "images")
    first, _ = layout.write_blob(b"{}")
    second, _ = layout.write_blob(b"[]")
    layout.tag("web:latest", _descriptor(first))
    layout.tag("web:latest", _descriptor(second))
    assert {d["digest"] for d in layout.descriptors()} == {first, second}
