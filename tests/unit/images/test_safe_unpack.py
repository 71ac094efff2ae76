"""Unpacking applies layers with whiteouts, and refuses every entry that could escape."""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from corral.errors import UnsafeLayerError
from corral.images.roots.unpack import unpack_image

Member = tuple[str, str, dict[str, object]]


def _layer(path: Path, *members: Member) -> Path:
    """A gzip layer of (name, kind, options) written in the order given (not sorted)."""
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, options in members:
            info = tarfile.TarInfo(name)
            info.mode = int(options.get("mode", 0o644))  # type: ignore[call-overload]
            data = str(options.get("data", "")).encode()
            info.type = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE,
                         "symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE,
                         "chr": tarfile.CHRTYPE, "blk": tarfile.BLKTYPE,
                         "fifo": tarfile.FIFOTYPE}[kind]
            info.linkname = str(options.get("link", ""))
            info.size = len(data) if kind == "file" else 0
            tar.addfile(info, io.BytesIO(data) if kind == "file" else None)
    return path


def _file(name: str, data: str = "x", mode: int = 0o644) -> Member:
    return (name, "file", {"data": data, "mode": mode})


def _dir(name: str, mode: int = 0o755) -> Member:
    return (name, "dir", {"mode": mode})


def _link(name: str, target: str, kind: str = "symlink") -> Member:
    return (name, kind, {"link": target})


def _snapshot(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def test_layers_apply_in_order_and_later_files_win(tmp_path: Path) -> None:
    lower = _layer(tmp_path / "1.tgz", _dir("etc"), _file("etc/a", "old"), _file("etc/b", "b"))
    upper = _layer(tmp_path / "2.tgz", _file("etc/a", "new"), _file("etc/c", "c"))
    root = unpack_image([lower, upper], tmp_path / "roots" / "r")
    assert (root / "etc" / "a").read_text() == "new"
    assert sorted(p.name for p in (root / "etc").iterdir()) == ["a", "b", "c"]


def test_a_whiteout_removes_a_lower_file_or_folder(tmp_path: Path) -> None:
    lower = _layer(tmp_path / "1.tgz", _dir("app"), _file("app/keep"), _file("app/gone"),
                   _dir("app/old"), _file("app/old/deep"))
    upper = _layer(tmp_path / "2.tgz", _file("app/.wh.gone", ""), _file("app/.wh.old", ""))
    root = unpack_image([lower, upper], tmp_path / "roots" / "r")
    assert _snapshot(root / "app") == {"keep"}


def test_a_whiteout_does_not_hide_a_file_of_its_own_layer(tmp_path: Path) -> None:
    lower = _layer(tmp_path / "1.tgz", _file("a-x", "lower"))
    # "a-x" is written before ".wh.a-x" here, as a sorted tar would order them.
    upper = _layer(tmp_path / "2.tgz", _file("a-x", "upper"), _file(".wh.a-x", ""))
    root = unpack_image([lower, upper], tmp_path / "roots" / "r")
    assert (root / "a-x").read_text() == "upper"


def test_an_opaque_whiteout_hides_everything_lower_in_its_folder(tmp_path: Path) -> None:
    lower = _layer(tmp_path / "1.tgz", _dir("srv"), _file("srv/a"), _dir("srv/d"),
                   _file("srv/d/e"), _file("other"))
    upper = _layer(tmp_path / "2.tgz", _dir("srv"), _file("srv/-mine", "m"),
                   _file("srv/.wh..wh..opq", ""), _file("srv/new", "n"))
    root = unpack_image([lower, upper], tmp_path / "roots" / "r")
    assert _snapshot(root / "srv") == {"-mine", "new"}
    assert (root / "other").exists()


def test_folder_modes_apply_after_their_contents(tmp_path: Path) -> None:
    layer = _layer(tmp_path / "1.tgz", _dir("ro", 0o555), _file("ro/f"), _dir("tmp", 0o1777))
    root = unpack_image([layer], tmp_path / "roots" / "r")
    assert (root / "ro" / "f").exists()
    assert (root / "ro").stat().st_mode & 0o7777 == 0o555
    assert (root / "tmp").stat().st_mode & 0o7777 == 0o1777
    assert root.stat().st_mode & 0o777 == 0o755


def test_a_second_unpack_reuses_the_first_root(tmp_path: Path) -> None:
    layer = _layer(tmp_path / "1.tgz", _file("f", "one"))
    target = tmp_path / "roots" / "r"
    unpack_image([layer], target)
    (target / "marker").write_text("still here")
    assert unpack_image([layer], target) == target
    assert (target / "marker").exists()


def test_leading_dot_slash_names_are_accepted(tmp_path: Path) -> None:
    layer = _layer(tmp_path / "1.tgz", ("./", "dir", {}), _dir("./etc"), _file("./etc/x", "y"))
    root = unpack_image([layer], tmp_path / "roots" / "r")
    assert (root / "etc" / "x").read_text() == "y"


UNSAFE: dict[str, tuple[list[Member], str]] = {
    "absolute path": ([_file("/etc/passwd")], "absolute"),
    "dot-dot": ([_file("a/../../outside")], "'..'"),
    "symlink escaping": ([_link("esc", "../../outside")], "escaping"),
    "write through symlink": ([_link("esc", "/"), _file("esc/outside")], "through the symlink"),
    "symlink climbing above the root": (
        [_link("tmpdir", "../../"), _file("tmpdir/outside")], "escaping"),
    "hardlink escaping": ([_link("h", "../../outside", "hardlink")], "'..'"),
    "hardlink absolute": ([_link("h", "/etc/passwd", "hardlink")], "absolute"),
    "hardlink through symlink": ([_link("s", "/"), _link("h", "s/etc/passwd", "hardlink")],
                                 "through the symlink"),
    "hardlink to nothing": ([_link("h", "missing", "hardlink")], "not in the image"),
    "char device": ([("dev/null", "chr", {})], "device"),
    "block device": ([("dev/sda", "blk", {})], "device"),
    "fifo": ([("pipe", "fifo", {})], "fifo"),
    "setuid": ([_file("bin/su", "#!", 0o4755)], "setuid"),
    "setgid": ([_file("bin/wall", "#!", 0o2755)], "setgid"),
}


@pytest.mark.parametrize("case", sorted(UNSAFE))
def test_an_unsafe_entry_is_refused_and_nothing_is_written(tmp_path: Path, case: str) -> None:
    members, why = UNSAFE[case]
    box = tmp_path / "box"
    roots = box / "cache" / "roots"
    roots.mkdir(parents=True)
    layer = _layer(tmp_path / "evil.tgz", _dir("ok"), _file("ok/file"), *members)
    before = _snapshot(tmp_path)
    with pytest.raises(UnsafeLayerError) as caught:
        unpack_image([layer], roots / "r")
    assert why in str(caught.value)
    assert _snapshot(tmp_path) == before
    assert not (roots / "r").exists()
    assert os.listdir(roots) == []


def _second_layer_case(tmp_path: Path) -> Callable[[], Path]:
    lower = _layer(tmp_path / "1.tgz", _link("lib", "/"))
    upper = _layer(tmp_path / "2.tgz", _file("lib/outside", "pwned"))
    return lambda: unpack_image([lower, upper], tmp_path / "roots" / "r")


def test_a_later_layer_cannot_write_through_a_lower_symlink(tmp_path: Path) -> None:
    unpack = _second_layer_case(tmp_path)
    with pytest.raises(UnsafeLayerError, match="through the symlink 'lib'"):
        unpack()
    assert not Path("/outside").exists()
    assert not (tmp_path / "roots" / "r").exists()


def test_absolute_symlinks_stay_links_inside_the_root(tmp_path: Path) -> None:
    layer = _layer(tmp_path / "1.tgz", _link("bin", "usr/bin"), _link("etc-localtime", "/usr/x"))
    root = unpack_image([layer], tmp_path / "roots" / "r")
    assert os.readlink(root / "etc-localtime") == "/usr/x"
    assert os.readlink(root / "bin") == "usr/bin"
