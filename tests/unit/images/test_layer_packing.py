"""Layers are reproducible: the same entries give the same bytes in any folder, on any day."""

from __future__ import annotations

import gzip
import os
import tarfile
from pathlib import Path

import pytest

from corral.images.build.layer import Entry, entries_of_root, pack
from corral.images.roots.unpack import apply_layer


def _tree(root: Path) -> Path:
    (root / "app" / "sub").mkdir(parents=True)
    (root / "app" / "b.txt").write_text("bee\n")
    (root / "app" / "a.py").write_text("print('a')\n")
    (root / "app" / "sub" / "c").write_bytes(b"\x00" * 5000)
    (root / "app" / "link").symlink_to("a.py")
    return root


def _members(blob: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(blob, "r:*") as tar:
        return tar.getmembers()


def test_the_same_tree_in_two_folders_packs_to_the_same_digest(tmp_path: Path) -> None:
    first = _tree(tmp_path / "one")
    second = _tree(tmp_path / "two")
    os.utime(second / "app" / "a.py", (1_700_000_000, 1_700_000_000))
    os.chmod(second / "app" / "b.txt", 0o600)  # a different umask; packed modes come from entries
    layers = []
    for root in (first, second):
        entries = [Entry(e.name, e.kind, 0o644 if e.kind == "file" else e.mode, 0, 0,
                         e.source, e.size, e.linkname) for e in entries_of_root(root)]
        layer, tmp = pack(entries, tmp_path)
        layers.append(layer)
        tmp.unlink()
    assert layers[0] == layers[1]


def test_entries_come_out_sorted_with_fixed_owner_and_mtime(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1234567")
    root = _tree(tmp_path / "t")
    entries = list(entries_of_root(root))
    _, blob = pack(reversed(entries), tmp_path)
    members = _members(blob)
    assert [m.name for m in members] == sorted(m.name for m in members)
    assert {m.mtime for m in members} == {1234567}
    assert {(m.uname, m.gname) for m in members} == {("", "")}


def test_the_gzip_header_carries_no_name_and_no_time(tmp_path: Path) -> None:
    source = tmp_path / "f"
    source.write_text("x")
    _, blob = pack([Entry("f", "file", source=source, size=1)], tmp_path, compression="gzip")
    header = blob.read_bytes()[:10]
    assert header[:3] == b"\x1f\x8b\x08"
    assert header[3] & 0x08 == 0  # FNAME flag
    assert header[4:8] == b"\x00\x00\x00\x00"  # MTIME
    assert gzip.decompress(blob.read_bytes())[:1] == b"f"


def test_a_different_source_date_epoch_gives_a_different_digest(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entries = [Entry("etc", "dir", 0o755)]
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")
    first, _ = pack(entries, tmp_path)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "86400")
    second, _ = pack(entries, tmp_path)
    assert first.digest != second.digest


def test_the_diff_id_is_the_digest_of_the_uncompressed_tar(tmp_path: Path) -> None:
    import hashlib
    layer, blob = pack([Entry("etc", "dir", 0o755)], tmp_path, compression="gzip")
    assert layer.media_type == "application/vnd.oci.image.layer.v1.tar+gzip"
    plain = gzip.decompress(blob.read_bytes())
    assert layer.diff_id == "sha256:" + hashlib.sha256(plain).hexdigest()
    assert layer.digest == "sha256:" + hashlib.sha256(blob.read_bytes()).hexdigest()
    assert layer.size == blob.stat().st_size


def test_setuid_and_setgid_bits_never_reach_a_layer(tmp_path: Path) -> None:
    source = tmp_path / "su"
    source.write_text("#!")
    _, blob = pack([Entry("bin/su", "file", 0o4755, source=source, size=2),
                    Entry("var/mail", "dir", 0o2775)], tmp_path)
    assert {m.name: m.mode for m in _members(blob)} == {"bin/su": 0o755, "var/mail": 0o775}


def test_hardlinked_files_of_a_root_become_one_file_and_links(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    (root / "a-b").mkdir()
    (root / "a" / "x").write_text("same")
    os.link(root / "a" / "x", root / "a-b" / "y")
    _, blob = pack(entries_of_root(root), tmp_path)
    members = {m.name: m for m in _members(blob)}
    # "a-b/y" sorts before "a/x", so it must hold the content and "a/x" must link to it.
    assert members["a-b/y"].isreg() and members["a-b/y"].size == 4
    assert members["a/x"].islnk() and members["a/x"].linkname == "a-b/y"
    (tmp_path / "out").mkdir()
    apply_layer(blob, tmp_path / "out")
    assert (tmp_path / "out" / "a" / "x").read_text() == "same"


def test_device_nodes_of_a_root_are_left_out(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "dev").mkdir(parents=True)
    os.mkfifo(root / "dev" / "fifo")
    if os.geteuid() == 0:
        os.mknod(root / "dev" / "null", 0o666 | 0o020000, os.makedev(1, 3))
    names = [e.name for e in entries_of_root(root)]
    assert names == ["dev"]


def test_a_layer_reads_back_with_the_content_it_was_given(tmp_path: Path) -> None:
    root = _tree(tmp_path / "t")
    _, blob = pack(entries_of_root(root), tmp_path)
    with tarfile.open(blob, "r:") as tar:  # a plain tar by default
        data = tar.extractfile("app/sub/c")
        assert data is not None and data.read() == b"\x00" * 5000
        assert tar.getmember("app/link").linkname == "a.py"


def test_a_plain_layer_is_named_by_the_digest_of_its_tar(tmp_path: Path) -> None:
    import hashlib
    layer, blob = pack(entries_of_root(_tree(tmp_path / "t")), tmp_path)
    assert layer.media_type == "application/vnd.oci.image.layer.v1.tar"
    assert layer.digest == layer.diff_id
    assert layer.digest == "sha256:" + hashlib.sha256(blob.read_bytes()).hexdigest()
    assert layer.size == blob.stat().st_size


def test_a_plain_and_a_gzip_layer_hold_the_same_tar(tmp_path: Path) -> None:
    entries = list(entries_of_root(_tree(tmp_path / "t")))
    plain, plain_blob = pack(entries, tmp_path)
    zipped, zipped_blob = pack(entries, tmp_path, compression="gzip")
    assert plain.diff_id == zipped.diff_id
    assert gzip.decompress(zipped_blob.read_bytes()) == plain_blob.read_bytes()


def test_a_file_that_shrinks_while_packed_fails_the_pack_and_leaves_nothing(
        tmp_path: Path) -> None:
    source = tmp_path / "f"
    source.write_text("short")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(OSError, match="shorter"):
        pack([Entry("f", "file", source=source, size=100)], out)
    assert list(out.iterdir()) == []
