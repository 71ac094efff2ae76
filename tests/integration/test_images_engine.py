"""The engine side of images over a real workspace (SQLite store, OCI layout): gc keeps
what releases need, deploys refuse unsigned images with a ledger entry, and a rebuild from
nothing is compared file by file."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.engine.delivery.request import deploy_request
from corral.engine.images import catalog, reproducible, trust
from corral.engine.images.build import build_image
from corral.engine.workspace import Workspace
from corral.errors import DeployError
from corral.ports.records import Event, Instance, InstanceState

pytestmark = pytest.mark.integration

SPEC = """
[project]
name = "shop"

[images.web]
copy = [{{ src = "app/", dest = "/app" }}]
entrypoint = ["/app/run"]

[services.web]
image = "web"
{extra}
"""


def _workspace(folder: Path, extra: str = "") -> Workspace:
    (folder / "app").mkdir(parents=True, exist_ok=True)
    (folder / "app" / "run").write_text("#!/bin/sh\necho v0\n")
    (folder / "corral.toml").write_text(SPEC.format(extra=extra))
    return Workspace.open(folder / "corral.toml")


def _release(ws: Workspace, version_text: str, *, live: bool = False) -> str:
    (ws.folder / "app" / "run").write_text(f"#!/bin/sh\necho {version_text}\n")
    digest = build_image(ws, "web")
    event = Event(at=1.0, actor="t", action="release", subject="web")
    release = ws.store.add_release("web", digest, f"sha256:{version_text:0>64}", {}, 1.0, event)
    if live:
        ws.store.set_live_release("web", release.version, event)
    return digest


def _blobs(ws: Workspace) -> set[str]:
    return {p.name for p in (ws.state_dir / "images" / "blobs" / "sha256").iterdir()}


def test_gc_keeps_live_recent_and_running_images_and_deletes_the_rest(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    digests = [_release(ws, f"v{n}", live=(n == 1)) for n in range(1, 9)]
    ws.images.unpack(digests[0])
    ws.images.unpack(digests[1])
    ws.store.put_instance(Instance(id="web-v3-x", service="web", release=3,
                                   image_digest=digests[2], address="127.0.0.1:1",
                                   state=InstanceState.READY, created_at=1.0))
    (ws.folder / "app" / "run").write_text("#!/bin/sh\necho tagged\n")
    tagged = build_image(ws, "web")  # web:latest, no release
    dry, kept = catalog.gc(ws, dry_run=True, keep_last=2)
    assert set(kept) == {digests[0], digests[2], digests[6], digests[7]}
    assert set(dry.images) == {digests[1], digests[3], digests[4], digests[5]}
    before = _blobs(ws)
    report, _ = catalog.gc(ws, dry_run=False, keep_last=2)
    assert report.blobs == dry.blobs and report.freed > 0
    assert _blobs(ws) == before - {d.removeprefix("sha256:") for d in report.blobs}
    for digest in (digests[0], digests[2], digests[6], digests[7], tagged):
        assert ws.images.config(digest).digest == digest
        assert ws.images.unpack(digest).is_dir()  # every blob it needs is still there
        assert ws.images.sbom(digest)["spdxVersion"] == "SPDX-2.3"  # and its referrers
    assert not (ws.state_dir / "cache" / "roots" / digests[1].removeprefix("sha256:")).exists()
    assert catalog.gc(ws, dry_run=False, keep_last=2)[0].blobs == {}


def test_the_image_list_names_the_releases_using_each_image(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    first = _release(ws, "v1")
    _release(ws, "v2", live=True)
    rows = {row.digest: row for row in catalog.list_images(ws)}
    assert rows[first].releases == ("web v1",)
    assert any(r.releases == ("web v2 (live)",) and r.names == ("web:latest",)
               for r in rows.values())


def test_a_deploy_of_an_unsigned_image_is_refused_with_a_ledger_entry(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    private, _, _, inline = trust.keygen(keys / "ci.key")
    ws = _workspace(tmp_path / "p", 'require_signature = true\ntrusted_keys = ["../keys/ci.pub"]')
    with pytest.raises(DeployError, match="has no signature"):
        deploy_request(ws, "web")
    refused = [e for e in ws.store.events() if e.action == "deploy.refused"]
    assert len(refused) == 1 and refused[0].subject == "web"
    trust.sign(ws, "web", private)
    request = deploy_request(ws, "web")
    assert request.config["trusted_keys"] == [inline]  # the release pins the key itself


def test_a_deploy_signed_by_an_untrusted_key_is_refused(tmp_path: Path) -> None:
    trust.keygen(tmp_path / "trusted.key")
    other, *_ = trust.keygen(tmp_path / "other.key")
    ws = _workspace(tmp_path / "p",
                    'require_signature = true\ntrusted_keys = ["../trusted.pub"]')
    build_image(ws, "web")
    trust.sign(ws, "web", other)
    with pytest.raises(DeployError, match="not a trusted key"):
        deploy_request(ws, "web")


def test_a_rebuild_from_nothing_gives_the_same_digest(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    digest = build_image(ws, "web")
    assert reproducible.check_reproducible(ws, "web", digest) is None


def test_a_build_that_depends_on_the_folder_names_the_differing_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = _workspace(tmp_path)
    digest = build_image(ws, "web")
    # Simulate a non-reproducible input: the copy in the temporary folder gets other content.
    original = reproducible.shutil.copytree

    def tampering_copy(src: Path, dst: Path, *args: object, **kwargs: object) -> object:
        result = original(src, dst, *args, **kwargs)  # type: ignore[arg-type]
        if Path(dst).name == "context":
            (Path(dst) / "app" / "run").write_text("#!/bin/sh\necho other\n")
        return result

    monkeypatch.setattr(reproducible.shutil, "copytree", tampering_copy)
    found = reproducible.check_reproducible(ws, "web", digest)
    assert found is not None and "/app/run differs in size, content" in found
