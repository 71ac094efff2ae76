"""Multi-stage Dockerfiles built for real from scratch stages (no processes): COPY --from
unpacks the source stage, a later stage stacks on an earlier one, heredoc files land, and the
digest is the same from two clean folders."""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

import pytest

from corral.errors import ImageError
from corral.images import LocalImageStore
from corral.spec.model import ImageSpec

DOCKERFILE = """# syntax=docker/dockerfile:1
ARG VERSION=7
FROM scratch AS assets
ARG VERSION
COPY site/ /build/site/
COPY <<EOF /build/site/version.txt
v$VERSION
EOF

FROM assets AS checked
LABEL stage=checked

FROM scratch
COPY --from=assets /build/site/*.txt /www/
COPY --from=checked /build/site/index.html /www/
STOPSIGNAL QUIT
USER 1000:1000
"""


def _project(folder: Path) -> Path:
    (folder / "site").mkdir(parents=True)
    (folder / "site" / "index.html").write_text("<h1>hi</h1>\n")
    (folder / "site" / "notes.txt").write_text("notes\n")
    (folder / "Dockerfile").write_text(DOCKERFILE)
    return folder


def _build(project: Path, **image: object) -> tuple[LocalImageStore, str]:
    store = LocalImageStore(project / ".corral", cache_dir=project / "machine-cache")
    spec = ImageSpec.model_validate({"dockerfile": "Dockerfile", **image})
    return store, store.build("site", spec, project)


def _config(store: LocalImageStore, digest: str) -> dict:  # type: ignore[type-arg]
    return dict(store.layout.read_json(store.layout.read_json(digest)["config"]["digest"]))


def _files(store: LocalImageStore, digest: str) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    for layer in store.layout.read_json(digest)["layers"]:
        with tarfile.open(store.layout.blob_path(layer["digest"])) as tar:
            for member in tar:
                data = tar.extractfile(member) if member.isfile() else None
                if data is not None:
                    found[member.name] = data.read()
    return found


def test_the_last_stage_holds_only_what_it_copied_from_the_others(tmp_path: Path) -> None:
    store, digest = _build(_project(tmp_path / "p"))
    assert _files(store, digest) == {"www/notes.txt": b"notes\n", "www/version.txt": b"v7\n",
                                     "www/index.html": b"<h1>hi</h1>\n"}
    config = _config(store, digest)["config"]
    assert (config["StopSignal"], config["User"]) == ("QUIT", "1000:1000")
    assert "stage" not in config.get("Labels", {})


def test_two_clean_folders_give_the_same_digest_and_a_rebuild_writes_nothing(
        tmp_path: Path) -> None:
    first = _project(tmp_path / "a")
    _, digest = _build(first)
    second = tmp_path / "b"
    shutil.copytree(first, second, ignore=shutil.ignore_patterns(".corral", "machine-cache"))
    assert _build(second)[1] == digest
    blobs = sorted((first / ".corral" / "images" / "blobs" / "sha256").iterdir())
    assert _build(first)[1] == digest
    assert sorted((first / ".corral" / "images" / "blobs" / "sha256").iterdir()) == blobs


def test_target_builds_an_earlier_stage_with_its_own_metadata(tmp_path: Path) -> None:
    store, digest = _build(_project(tmp_path / "p"), target="checked")
    assert _config(store, digest)["config"]["Labels"]["stage"] == "checked"
    assert set(_files(store, digest)) == {"build/site/index.html", "build/site/notes.txt",
                                          "build/site/version.txt"}


def test_copy_from_a_path_the_stage_lacks_names_it(tmp_path: Path) -> None:
    project = _project(tmp_path / "p")
    (project / "Dockerfile").write_text("FROM scratch AS a\nCOPY site/ /s/\n"
                                        "FROM scratch\nCOPY --from=a /nope /x\n")
    with pytest.raises(ImageError, match="'/nope' does not exist in the source"):
        _build(project)


def test_a_user_name_is_resolved_from_the_images_passwd(tmp_path: Path) -> None:
    project = _project(tmp_path / "p")
    (project / "etc").mkdir()
    (project / "etc" / "passwd").write_text("web:x:1500:1600::/:/bin/sh\n")
    (project / "Dockerfile").write_text("FROM scratch\nCOPY etc/passwd /etc/passwd\nUSER web\n")
    store, digest = _build(project)
    assert _config(store, digest)["config"]["User"] == "1500:1600"
    (project / "Dockerfile").write_text("FROM scratch\nUSER web\n")
    with pytest.raises(ImageError, match="no user 'web'"):
        _build(project)


def test_a_stage_the_target_does_not_reach_is_never_built(tmp_path: Path) -> None:
    project = _project(tmp_path / "p")
    (project / "Dockerfile").write_text(
        "FROM scratch AS broken\nRUN false\n"  # would fail if it were built: no /bin/sh
        "FROM scratch AS used\nCOPY site/ /s/\n"
        "FROM scratch\nCOPY --from=used /s/notes.txt /notes.txt\n")
    store, digest = _build(project)
    assert _files(store, digest) == {"notes.txt": b"notes\n"}


def test_progress_names_a_stage_by_its_name_or_its_index(tmp_path: Path) -> None:
    project = _project(tmp_path / "p")
    (project / "Dockerfile").write_text(
        "FROM scratch\nCOPY site/notes.txt /n.txt\n"
        "FROM scratch AS Named\nCOPY site/index.html /i.html\n"
        "FROM named\nCOPY --from=0 /n.txt /www/\nCOPY --from=named /i.html /www/\n")
    said: list[str] = []
    store = LocalImageStore(project / ".corral", cache_dir=project / "machine-cache")
    store.build("site", ImageSpec.model_validate({"dockerfile": "Dockerfile"}), project,
                progress=said.append)
    assert "stage named: scratch" in said and "stage 0: scratch" in said
    assert "layer copy --from=0 /n.txt → /www/" in said
    assert "layer copy --from=named /i.html → /www/" in said
    assert not [line for line in said if "stage:" in line]


def test_a_chown_by_name_is_resolved_from_the_stages_own_passwd_and_group(
        tmp_path: Path) -> None:
    project = _project(tmp_path / "p")
    (project / "etc").mkdir()
    (project / "etc" / "passwd").write_text("web:x:1500:1600::/:/bin/sh\n")
    (project / "etc" / "group").write_text("web:x:1600:\nops:x:1700:\n")
    (project / "Dockerfile").write_text(
        "FROM scratch AS site\nCOPY etc/ /etc/\nCOPY --chown=web:ops site/notes.txt /n.txt\n"
        "FROM site\nCOPY --from=site --chown=web /n.txt /copied.txt\n"
        "COPY --chown=1500 <<EOF /heredoc.txt\nhi\nEOF\n")
    store, digest = _build(project)
    owners = {}
    for layer in store.layout.read_json(digest)["layers"]:
        with tarfile.open(store.layout.blob_path(layer["digest"])) as tar:
            owners.update((m.name, (m.uid, m.gid)) for m in tar if m.isfile())
    assert (owners["n.txt"], owners["copied.txt"], owners["heredoc.txt"]) == (
        (1500, 1700), (1500, 1500), (1500, 1500))
    (project / "Dockerfile").write_text("FROM scratch\nCOPY etc/ /etc/\n"
                                        "COPY --chown=web:nobody site/notes.txt /n.txt\n")
    with pytest.raises(ImageError, match="Dockerfile:3: --chown=web:nobody: the image's "
                                         "/etc/group has no group 'nobody'"):
        _build(project)
