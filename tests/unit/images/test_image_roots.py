"""Roots composed from the per-layer cache equal a full unpack, and share the cache's files."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from corral.errors import UnsafeLayerError
from corral.images.roots.compose import compose_root, layer_dir, prune
from corral.images.roots.unpack import unpack_image

Member = tuple[str, str, str, int]  # name, kind, data or link target, mode


def _layer(path: Path, *members: Member) -> tuple[Path, str]:
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, data, mode in members:
            info = tarfile.TarInfo(name)
            info.mode, info.mtime = mode, 1000
            info.type = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE,
                         "symlink": tarfile.SYMTYPE}[kind]
            if kind == "symlink":
                info.linkname = data
            payload = data.encode() if kind == "file" else b""
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload) if kind == "file" else None)
    return path, f"sha256:{os.urandom(32).hex()}"


def _tree(root: Path) -> dict[str, tuple[str, int, str]]:
    found = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        kind = "dir" if stat.S_ISDIR(info.st_mode) else \
            "link" if stat.S_ISLNK(info.st_mode) else "file"
        content = os.readlink(path) if kind == "link" else \
            path.read_text() if kind == "file" else ""
        found[str(path.relative_to(root))] = (kind, stat.S_IMODE(info.st_mode), content)
    return found


@pytest.fixture
def layers(tmp_path: Path) -> list[tuple[Path, str]]:
    return [
        _layer(tmp_path / "1.tgz", ("etc", "dir", "", 0o755), ("etc/a", "file", "old", 0o644),
               ("etc/gone", "file", "x", 0o644), ("var", "dir", "", 0o755),
               ("var/cache", "dir", "", 0o755), ("var/cache/x", "file", "x", 0o644),
               ("opt", "file", "a file", 0o644), ("bin", "symlink", "usr/bin", 0o777)),
        _layer(tmp_path / "2.tgz", ("etc/a", "file", "new", 0o600), ("etc/.wh.gone", "file", "", 0),
               ("var/cache", "dir", "", 0o700), ("var/cache/.wh..wh..opq", "file", "", 0),
               ("var/cache/y", "file", "y", 0o644), ("opt", "dir", "", 0o711),
               ("opt/tool", "file", "t", 0o755)),
        _layer(tmp_path / "3.tgz", ("etc/.wh.a", "file", "", 0), ("srv", "dir", "", 0o555),
               ("srv/app", "file", "app", 0o644)),
    ]


def test_a_composed_root_equals_a_full_unpack(tmp_path: Path,
                                              layers: list[tuple[Path, str]]) -> None:
    composed = compose_root(layers, tmp_path / "cache", tmp_path / "roots" / "c")
    unpacked = unpack_image([blob for blob, _ in layers], tmp_path / "roots" / "u")
    assert _tree(composed) == _tree(unpacked)
    assert "etc/a" not in _tree(composed) and "var/cache/x" not in _tree(composed)
    assert (composed / "opt" / "tool").read_text() == "t"


def test_a_composed_root_shares_its_files_with_the_layer_cache(
        tmp_path: Path, layers: list[tuple[Path, str]]) -> None:
    root = compose_root(layers, tmp_path / "cache", tmp_path / "roots" / "c")
    cached = layer_dir(tmp_path / "cache", *layers[2]) / "root" / "srv" / "app"
    assert (root / "srv" / "app").stat().st_ino == cached.stat().st_ino


def test_a_second_root_over_the_same_layers_extracts_nothing_again(
        tmp_path: Path, layers: list[tuple[Path, str]]) -> None:
    compose_root(layers[:2], tmp_path / "cache", tmp_path / "roots" / "one")
    for blob, _ in layers[:2]:
        blob.unlink()  # a new extraction would need the blob
    root = compose_root(layers[:2], tmp_path / "cache", tmp_path / "roots" / "two")
    assert (root / "var" / "cache" / "y").read_text() == "y"


def test_a_whiteout_in_an_upper_layer_leaves_the_lower_layer_cache_intact(
        tmp_path: Path, layers: list[tuple[Path, str]]) -> None:
    compose_root(layers, tmp_path / "cache", tmp_path / "roots" / "c")
    lower = layer_dir(tmp_path / "cache", *layers[0]) / "root"
    assert (lower / "etc" / "gone").read_text() == "x"
    assert (lower / "etc" / "a").read_text() == "old"


def test_an_unsafe_layer_leaves_no_cache_and_no_root(tmp_path: Path) -> None:
    evil = _layer(tmp_path / "evil.tgz", ("../escaped", "file", "x", 0o644))
    with pytest.raises(UnsafeLayerError):
        compose_root([evil], tmp_path / "cache", tmp_path / "roots" / "r")
    assert list((tmp_path / "cache").iterdir()) == []
    assert not (tmp_path / "roots" / "r").exists() and not (tmp_path / "escaped").exists()


def test_a_whiteout_cannot_reach_through_a_lower_symlink(tmp_path: Path) -> None:
    lower = _layer(tmp_path / "1.tgz", ("out", "symlink", "/", 0o777))
    upper = _layer(tmp_path / "2.tgz", ("out/.wh.etc", "file", "", 0))
    with pytest.raises(UnsafeLayerError, match="symlink"):
        compose_root([lower, upper], tmp_path / "cache", tmp_path / "roots" / "r")
    assert not (tmp_path / "roots" / "r").exists()


def test_prune_keeps_only_the_layers_asked_for(tmp_path: Path,
                                               layers: list[tuple[Path, str]]) -> None:
    compose_root(layers, tmp_path / "cache", tmp_path / "roots" / "c")
    gone = prune(tmp_path / "cache", {layers[0][1]})
    assert len(gone) == 2
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [layers[0][1][7:]]
