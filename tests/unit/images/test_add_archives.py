"""ADD of a local tar archive unpacks it, as Docker does (the shape of base-image
Dockerfiles: `FROM scratch`, `ADD rootfs.tar.xz /`): members under the destination with
their own modes and owners, links kept, hardlinks as copies, the layer keyed by the
archive's content; a member escaping the destination fails the build naming the line.
Real builds of scratch images (no processes)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from corral.errors import ImageError
from corral.images import LocalImageStore
from corral.spec.model import ImageSpec


def _tar(path: Path, mode: str, members: list[tuple[tarfile.TarInfo, bytes]]) -> None:
    with tarfile.open(path, mode) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)


def _info(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", mode: int = 0o644,
          owner: int = 0, link: str = "") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.uid, info.gid, info.linkname = kind, mode, owner, owner, link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, data


ROOTFS = [
    _info("./", tarfile.DIRTYPE, mode=0o755),
    _info("./bin/", tarfile.DIRTYPE, mode=0o755),
    _info("./bin/tool", data=b"#!/bin/sh\necho tool\n", mode=0o755),
    _info("./bin/tool-again", tarfile.LNKTYPE, link="./bin/tool", mode=0o755),
    _info("./bin/sh", tarfile.SYMTYPE, link="tool", mode=0o777),
    _info("./home/app/", tarfile.DIRTYPE, mode=0o700, owner=1000),
    _info("./home/app/.profile", data=b"export X=1\n", mode=0o600, owner=1000),
    _info("./dev/null", tarfile.CHRTYPE),  # a device node: left out, as everywhere in corral
]


def _build(folder: Path, dockerfile: str) -> tuple[LocalImageStore, str]:
    (folder / "Dockerfile").write_text(dockerfile)
    store = LocalImageStore(folder / ".corral", cache_dir=folder / "machine-cache")
    return store, store.build("app", ImageSpec(dockerfile="Dockerfile"), folder)


def _members(store: LocalImageStore, digest: str) -> dict[str, tarfile.TarInfo]:
    found: dict[str, tarfile.TarInfo] = {}
    for layer in store.layout.read_json(digest)["layers"]:
        with tarfile.open(store.layout.blob_path(layer["digest"])) as tar:
            for member in tar:
                data = tar.extractfile(member) if member.isfile() else None
                member.pax_headers = {"content": data.read().decode()} if data else {}
                found[member.name] = member
    return found


@pytest.mark.parametrize(("name", "mode"), [("rootfs.tar", "w"), ("rootfs.tar.gz", "w:gz"),
                                             ("rootfs.tgz", "w:gz"), ("rootfs.tar.xz", "w:xz"),
                                             ("rootfs.tar.bz2", "w:bz2")])
def test_a_local_archive_is_unpacked_with_its_modes_owners_and_links(
        tmp_path: Path, name: str, mode: str) -> None:
    _tar(tmp_path / name, mode, ROOTFS)
    (tmp_path / "notes.txt").write_text("copied as it is\n")
    store, digest = _build(tmp_path, f"FROM scratch\nADD {name} /\nADD {name} /opt/again\n"
                           "ADD notes.txt /notes.txt\n")
    members = _members(store, digest)
    tool = members["bin/tool"]
    assert (tool.mode, tool.pax_headers["content"]) == (0o755, "#!/bin/sh\necho tool\n")
    assert members["bin/tool-again"].pax_headers["content"] == "#!/bin/sh\necho tool\n"
    assert (members["bin/sh"].issym(), members["bin/sh"].linkname) == (True, "tool")
    home = members["home/app"]
    assert (home.isdir(), home.mode, home.uid, home.gid) == (True, 0o700, 1000, 1000)
    assert (members["home/app/.profile"].uid, members["home/app/.profile"].mode) == (
        1000, 0o600)
    assert "dev/null" not in members
    assert members["opt/again/bin/tool"].pax_headers["content"] == "#!/bin/sh\necho tool\n"
    assert members["notes.txt"].pax_headers["content"] == "copied as it is\n"


def test_the_layer_is_keyed_by_the_archives_content(tmp_path: Path) -> None:
    _tar(tmp_path / "rootfs.tar.gz", "w:gz", ROOTFS)
    dockerfile = "FROM scratch\nADD rootfs.tar.gz /\n"
    _, first = _build(tmp_path, dockerfile)
    assert _build(tmp_path, dockerfile)[1] == first
    _tar(tmp_path / "rootfs.tar.gz", "w:gz", [*ROOTFS, _info("./etc/added", data=b"x")])
    store, second = _build(tmp_path, dockerfile)
    assert second != first and "etc/added" in _members(store, second)


@pytest.mark.parametrize(("member", "reason"), [
    (_info("../escape", data=b"x"), "climbs out of the root"),
    (_info("/etc/abs", data=b"x"), "is an absolute path"),
])
def test_a_member_escaping_the_destination_fails_naming_the_line(
        tmp_path: Path, member: tuple[tarfile.TarInfo, bytes], reason: str) -> None:
    _tar(tmp_path / "bad.tar", "w", [member])
    with pytest.raises(ImageError, match=f"Dockerfile:2: .*{reason}"):
        _build(tmp_path, "FROM scratch\nADD bad.tar /srv/\n")


def test_chown_on_an_archive_and_a_file_that_is_no_archive_are_refused(tmp_path: Path) -> None:
    _tar(tmp_path / "rootfs.tar", "w", ROOTFS)
    with pytest.raises(ImageError, match=r"Dockerfile:2: .*--chown and --chmod apply to files"):
        _build(tmp_path, "FROM scratch\nADD --chown=1:1 rootfs.tar /\n")
    (tmp_path / "fake.tar.gz").write_text("not gzip at all")
    with pytest.raises(ImageError, match=r"Dockerfile:2: .*not a tar archive corral can unpack"):
        _build(tmp_path, "FROM scratch\nADD fake.tar.gz /\n")
