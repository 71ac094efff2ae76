"""Referrers, SBOM and signatures of images in a local layout."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from corral.errors import ImageError
from corral.images import LocalImageStore
from corral.images.build.sbom import LayerScan, dpkg_packages, merge, scan_layer
from corral.images.oci.referrers import SBOM_TYPE, SIGNATURE_TYPE, add_referrer, referrers_of
from corral.images.oci.signing import generate_key, inline_form, load_public
from corral.spec.model import ImageSpec

SPEC = ImageSpec.model_validate({"copy": [{"src": "app/", "dest": "/app"}]})
STATUS = """Package: python3
Status: install ok installed
Architecture: amd64
Version: 3.11.2-1+b1

Package: removed-thing
Status: deinstall ok config-files
Version: 1
"""


def _store(tmp_path: Path) -> tuple[LocalImageStore, str]:
    (tmp_path / "app").mkdir(parents=True, exist_ok=True)
    (tmp_path / "app" / "main.py").write_text("print(1)\n")
    (tmp_path / "app" / "lib-1.0.dist-info").mkdir(exist_ok=True)
    (tmp_path / "app" / "lib-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: lib\nVersion: 1.0\n\nLong text\n")
    store = LocalImageStore(tmp_path / ".corral", cache_dir=tmp_path / "machine")
    return store, store.build("web", SPEC, tmp_path)


def test_every_build_carries_an_spdx_sbom_as_a_referrer(tmp_path: Path) -> None:
    store, digest = _store(tmp_path)
    [found] = referrers_of(store.layout, digest)
    assert found["artifactType"] == SBOM_TYPE
    artifact = store.layout.read_json(found["digest"])
    assert artifact["subject"]["digest"] == digest
    assert artifact["config"]["mediaType"] == "application/vnd.oci.empty.v1+json"
    sbom = store.sbom(digest)
    assert sbom["spdxVersion"] == "SPDX-2.3"
    names = {f["fileName"]: f for f in sbom["files"]}
    assert set(names) == {"./app/main.py", "./app/lib-1.0.dist-info/METADATA"}
    assert [c["algorithm"] for c in names["./app/main.py"]["checksums"]] == ["SHA1", "SHA256"]
    assert ("lib", "1.0") in {(p["name"], p["versionInfo"]) for p in sbom["packages"]}


def test_the_sbom_is_the_same_for_the_same_image(tmp_path: Path) -> None:
    store_a, digest_a = _store(tmp_path / "a")
    store_b, digest_b = _store(tmp_path / "b")
    assert digest_a == digest_b
    assert referrers_of(store_a.layout, digest_a) == referrers_of(store_b.layout, digest_b)


def test_a_rebuild_adds_no_second_sbom(tmp_path: Path) -> None:
    store, digest = _store(tmp_path)
    index = (tmp_path / ".corral" / "images" / "index.json").read_bytes()
    assert store.build("web", SPEC, tmp_path) == digest
    assert (tmp_path / ".corral" / "images" / "index.json").read_bytes() == index


def test_dpkg_status_lists_only_installed_packages() -> None:
    assert dpkg_packages(STATUS) == [("python3", "3.11.2-1+b1", "amd64")]


def test_whiteouts_hide_lower_files_and_packages_in_the_merged_view(tmp_path: Path) -> None:
    lower = LayerScan(files={"a/x": ["1", "1"], "b": ["2", "2"]}, dpkg_status=STATUS,
                      python={"a/p-1.dist-info/METADATA": ["p", "1"]})
    upper = LayerScan(files={"c": ["3", "3"]}, whiteouts=["a/.wh..wh..opq", ".wh.b"])
    image = merge([lower, upper])
    assert set(image.files) == {"c"} and image.python == {}
    assert image.dpkg_status == STATUS


def test_a_layer_is_scanned_once(tmp_path: Path) -> None:
    blob = tmp_path / "layer.tar"
    with tarfile.open(blob, "w") as tar:
        info = tarfile.TarInfo("var/lib/dpkg/status")
        info.size = len(STATUS)
        tar.addfile(info, io.BytesIO(STATUS.encode()))
    diff_id = "sha256:" + "1" * 64
    first = scan_layer(blob, diff_id, tmp_path / "cache")
    blob.unlink()
    assert scan_layer(blob, diff_id, tmp_path / "cache") == first


def test_a_signed_image_verifies_with_its_key_only(tmp_path: Path) -> None:
    store, digest = _store(tmp_path)
    pub, _ = generate_key(tmp_path / "keys" / "ci.key")
    other, _ = generate_key(tmp_path / "keys" / "other.key")
    assert (tmp_path / "keys" / "ci.key").stat().st_mode & 0o777 == 0o600
    assert not store.verify(digest, [str(pub)], tmp_path).ok
    store.sign(digest, tmp_path / "keys" / "ci.key", now=1_700_000_000)
    assert store.verify(digest, ["keys/ci.pub"], tmp_path).ok
    inline = inline_form(load_public(str(pub), tmp_path))
    assert store.verify(digest, [inline], tmp_path).ok
    verdict = store.verify(digest, [str(other)], tmp_path)
    assert not verdict.ok and "not a trusted key" in verdict.reason()


def test_a_signature_moved_to_another_image_does_not_count(tmp_path: Path) -> None:
    store, digest = _store(tmp_path)
    generate_key(tmp_path / "k.key")
    signature = store.sign(digest, tmp_path / "k.key", now=0)
    (tmp_path / "app" / "main.py").write_text("print(2)\n")
    other = store.build("web", SPEC, tmp_path)
    layer = store.layout.read_json(signature["digest"])["layers"][0]["digest"]
    blob = store.layout.read_blob(layer)
    add_referrer(store.layout, store.descriptor(other), SIGNATURE_TYPE, blob)
    verdict = store.verify(other, ["k.pub"], tmp_path)
    assert not verdict.ok and "for another image" in verdict.reason()


def test_a_tampered_signature_does_not_verify(tmp_path: Path) -> None:
    store, digest = _store(tmp_path)
    generate_key(tmp_path / "k.key")
    signature = store.sign(digest, tmp_path / "k.key", now=0)
    layer = store.layout.read_json(signature["digest"])["layers"][0]["digest"]
    envelope = json.loads(store.layout.read_blob(layer))
    envelope["signature"] = envelope["signature"][:-4] + ("AAA=" if envelope["signature"][-4:]
                                                          != "AAA=" else "BBB=")
    add_referrer(store.layout, store.descriptor(digest), SIGNATURE_TYPE,
                 json.dumps(envelope).encode())
    store.layout.blob_path(signature["digest"]).unlink()  # only the tampered one is left
    verdict = store.verify(digest, ["k.pub"], tmp_path)
    assert not verdict.ok and "does not verify" in verdict.reason()


def test_keygen_never_overwrites_a_key(tmp_path: Path) -> None:
    generate_key(tmp_path / "k.key")
    with pytest.raises(ImageError, match="already exists"):
        generate_key(tmp_path / "k.key")


def test_a_private_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    store, digest = _store(tmp_path)
    generate_key(tmp_path / "k.key")
    (tmp_path / "k.key").chmod(0o644)
    with pytest.raises(ImageError, match="chmod 600"):
        store.sign(digest, tmp_path / "k.key", now=0)
