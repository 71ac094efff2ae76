"""LocalImageStore builds: OCI documents, the step cache, bases, and refusals."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from corral.errors import ImageError, NotFound, UnsafeLayerError
from corral.images import LocalImageStore
from corral.images.build import debian as debian_module
from corral.images.oci.layout import Layout
from corral.spec.model import ImageSpec

TWO_STEPS = ImageSpec.model_validate({
    "copy": [{"src": "lib/", "dest": "/lib/app"}, {"src": "app/", "dest": "/app"}],
    "entrypoint": ["/app/run"],
})


def _project(folder: Path) -> Path:
    (folder / "lib").mkdir(parents=True)
    (folder / "app").mkdir()
    (folder / "lib" / "util.py").write_text("X = 1\n")
    (folder / "app" / "run").write_text("#!/bin/sh\necho hi\n")
    return folder


def _store(project: Path) -> LocalImageStore:
    return LocalImageStore(project / ".corral", cache_dir=project / "machine-cache")


def _blobs(store: LocalImageStore) -> set[str]:
    return {p.name for p in store.layout.blobs.iterdir()}


def test_compression_gzip_gives_gzip_layers_holding_the_same_tars(tmp_path: Path) -> None:
    store = _store(_project(tmp_path))
    plain = json.loads(store.layout.read_blob(store.build("web", TWO_STEPS, tmp_path)))
    zipped_spec = TWO_STEPS.model_copy(update={"compression": "gzip"})
    zipped = json.loads(store.layout.read_blob(store.build("web", zipped_spec, tmp_path)))
    assert [x["mediaType"] for x in zipped["layers"]] == [
        "application/vnd.oci.image.layer.v1.tar+gzip"] * 2
    configs = [json.loads(store.layout.read_blob(m["config"]["digest"])) for m in (plain, zipped)]
    assert configs[0]["rootfs"] == configs[1]["rootfs"]  # the same diff_ids
    assert plain["layers"] != zipped["layers"]


def test_the_layout_holds_an_oci_1_1_manifest_and_config(tmp_path: Path) -> None:
    store = _store(_project(tmp_path))
    digest = store.build("web", TWO_STEPS, tmp_path)
    manifest = json.loads(store.layout.read_blob(digest))
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert manifest["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    assert [x["mediaType"] for x in manifest["layers"]] == [
        "application/vnd.oci.image.layer.v1.tar"] * 2  # plain tar by default (ADR 0007)
    config = json.loads(store.layout.read_blob(manifest["config"]["digest"]))
    assert config["os"] == "linux" and config["architecture"] in ("amd64", "arm64")
    assert config["created"] == "1970-01-01T00:00:00Z"
    assert len(config["rootfs"]["diff_ids"]) == 2
    index = json.loads((tmp_path / ".corral" / "images" / "index.json").read_text())
    images = [d for d in index["manifests"] if "artifactType" not in d]
    assert images[0]["annotations"] == {"org.opencontainers.image.ref.name": "web:latest"}
    assert [d["artifactType"] for d in index["manifests"] if d not in images] == [
        "application/spdx+json"]


def test_a_rebuild_with_no_change_writes_no_blob(tmp_path: Path) -> None:
    store = _store(_project(tmp_path))
    first = store.build("web", TWO_STEPS, tmp_path)
    before = _blobs(store)
    messages: list[str] = []
    assert store.build("web", TWO_STEPS, tmp_path, progress=messages.append) == first
    assert _blobs(store) == before
    assert all(m.endswith("(cached)") for m in messages) and len(messages) == 2


def test_a_one_file_change_rebuilds_only_from_its_step_on(tmp_path: Path) -> None:
    store = _store(_project(tmp_path))
    store.build("web", TWO_STEPS, tmp_path)
    (tmp_path / "app" / "run").write_text("#!/bin/sh\necho changed\n")
    messages: list[str] = []
    store.build("web", TWO_STEPS, tmp_path, progress=messages.append)
    assert [m for m in messages if m.startswith("layer")] == [
        "layer copy lib/ → /lib/app: 1 file (cached)", "layer copy app/ → /app: 1 file"]


def test_source_date_epoch_sets_created_and_changes_the_digest(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = _store(_project(tmp_path))
    default = store.build("web", TWO_STEPS, tmp_path)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    dated = store.build("web", TWO_STEPS, tmp_path)
    assert dated != default
    [summary] = [s for s in store.list() if s.digest == dated]
    assert summary.created == 1700000000.0


def test_a_layout_base_brings_its_layers_and_config(tmp_path: Path) -> None:
    base_project = _project(tmp_path / "base")
    base_spec = ImageSpec.model_validate({"copy": [{"src": "lib/", "dest": "/lib/app"}],
                                          "env": {"BASE": "yes"}, "entrypoint": ["/base"],
                                          "cmd": ["--base"], "ports": [9000]})
    base_store = _store(base_project)
    base_digest = base_store.build("base", base_spec, base_project)
    project = _project(tmp_path / "app")
    spec = ImageSpec.model_validate({"base": "layout:../base/.corral/images:base:latest",
                                     "copy": [{"src": "app/", "dest": "/app"}],
                                     "env": {"APP": "1"}, "cmd": ["--app"]})
    store = _store(project)
    digest = store.build("web", spec, project)
    config = store.config(digest)
    assert config.env["BASE"] == "yes" and config.env["APP"] == "1"
    assert (config.entrypoint, config.cmd, config.ports) == (("/base",), ("--app",), (9000,))
    root = store.unpack(digest)
    assert (root / "lib" / "app" / "util.py").exists() and (root / "app" / "run").exists()
    base_layers = json.loads(base_store.layout.read_blob(base_digest))["layers"]
    layers = json.loads(store.layout.read_blob(digest))["layers"]
    assert layers[0] == base_layers[0]


def test_an_unknown_layout_tag_lists_the_tags_there(tmp_path: Path) -> None:
    base_store = _store(_project(tmp_path / "base"))
    base_store.build("base", TWO_STEPS, tmp_path / "base")
    spec = ImageSpec.model_validate({"base": "layout:base/.corral/images:nope"})
    with pytest.raises(NotFound, match="nope") as caught:
        _store(tmp_path).build("web", spec, tmp_path)
    assert "base:latest" in str(caught.value.hint)


def test_an_unsafe_layer_in_a_layout_base_is_refused_at_unpack(tmp_path: Path) -> None:
    evil = Layout(tmp_path / "evil")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("../../escaped")
        tar.addfile(info, io.BytesIO(b""))
    layer_digest, layer_size = evil.write_blob(buffer.getvalue())
    import gzip
    import hashlib
    diff_id = "sha256:" + hashlib.sha256(gzip.decompress(buffer.getvalue())).hexdigest()
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    config_digest, config_size = evil.write_blob(config)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": layer_digest, "size": layer_size}]}).encode()
    manifest_digest, size = evil.write_blob(manifest)
    evil.tag("evil:latest", {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                             "digest": manifest_digest, "size": size})
    project = tmp_path / "p"
    project.mkdir()
    store = _store(project)
    with pytest.raises(UnsafeLayerError, match="escaped"):  # its SBOM scan refuses it
        store.build("web", ImageSpec.model_validate({"base": "layout:../evil:evil"}), project)
    assert store.layout.find_tag("web:latest") is None
    assert not (tmp_path / "escaped").exists()
    for cache in (store.roots, store.layer_cache):
        assert not cache.exists() or list(cache.iterdir()) == []


def test_a_registry_base_on_an_unreachable_registry_says_so(tmp_path: Path) -> None:
    spec = ImageSpec.model_validate({"base": "oci:127.0.0.1:1/web:1"})
    with pytest.raises(ImageError, match="unreachable"):
        _store(tmp_path).build("web", spec, tmp_path)
    assert not (tmp_path / "corral.lock").exists()


def test_a_debian_base_without_debootstrap_says_how_to_install_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(debian_module, "debootstrap_program", lambda: None)
    spec = ImageSpec.model_validate({"base": "debian:bookworm", "packages": ["python3"]})
    with pytest.raises(ImageError) as caught:
        _store(tmp_path).build("web", spec, tmp_path)
    assert caught.value.hint == "apt-get install debootstrap"


def test_a_missing_dockerfile_is_named(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match=r"dockerfile .*Dockerfile: cannot be read"):
        _store(tmp_path).build("web", ImageSpec(dockerfile="Dockerfile"), tmp_path)


def test_an_invalid_image_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="not valid"):
        _store(tmp_path).build("Web Site", ImageSpec(), tmp_path)
