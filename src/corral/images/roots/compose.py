"""Read-only image roots composed from a per-layer cache, for instances to run from.

Each layer is extracted once (safely, by unpack.extract_layer) into `layers/<diff_id>/`;
a root is then made of hardlinks to those files (`cp -al` for the first layer, a merge for
the rest, whiteouts applied between), so a new release costs a link pass, not an unpack.
The files are shared inodes: roots must stay read-only (run steps use unpack_image instead),
and a write through any link is a write to every root holding it (watch.py watches inodes;
repair.py gives a cache path a fresh inode from the blob; ADR 0010).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time
from pathlib import Path

from corral.errors import ImageError
from corral.images.oci.layout import hex_of
from corral.images.roots.unpack import (
    apply_whiteout,
    extract_layer,
    remove_tree,
    rename_or_drop,
    temp_beside,
)

LayerRef = tuple[Path, str]  # (blob path, diff_id)
INDEX = "index.json"  # beside root/: each entry's tar header offset, for repair.py
_Dirs = dict[str, os.stat_result]


def layer_dir(cache: Path, blob: Path, diff_id: str) -> Path:
    """The extracted layer `<cache>/<hex>/root` with its `meta.json`, made once, atomically."""
    target = cache / hex_of(diff_id)
    if (target / "meta.json").is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    tmp = temp_beside(target)
    (tmp / "root").mkdir(parents=True, mode=0o700)
    try:
        whiteouts, dirs, offsets = extract_layer(blob, tmp / "root")
        os.chmod(tmp / "root", 0o755)
        (tmp / INDEX).write_text(json.dumps(offsets))
        (tmp / "meta.json").write_text(json.dumps({"whiteouts": whiteouts, "dirs": dirs}))
        rename_or_drop(tmp, target)
    except BaseException:
        remove_tree(tmp)
        raise
    return target


def compose_root(layers: list[LayerRef], cache: Path, target: Path) -> Path:
    """`target` as the union of `layers` (lowest first), made of hardlinks into `cache`."""
    if target.is_dir():
        return target
    extracted = [layer_dir(cache, blob, diff_id) for blob, diff_id in layers]
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_beside(target)
    try:
        if extracted:
            _link_tree(extracted[0] / "root", tmp)
        else:
            tmp.mkdir(mode=0o755)
        for folder in extracted[1:]:
            meta = json.loads((folder / "meta.json").read_text())
            for name in meta["whiteouts"]:
                apply_whiteout(tmp, name)
            touched: _Dirs = {}
            _merge(folder / "root", tmp, "", touched, set(meta["dirs"]))
            _fix_dirs(tmp, touched)
        os.chmod(tmp, 0o755)
        rename_or_drop(tmp, target)
    except BaseException:
        remove_tree(tmp)
        raise
    return target


def _link_tree(source: Path, dest: Path) -> None:
    done = subprocess.run(["cp", "-a", "--link", "--no-target-directory", str(source),
                           str(dest)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ImageError(f"could not link the layer cache into {dest.parent}: "
                         f"{done.stderr.strip()[-300:]}",
                         hint="the layer cache and the roots must be on one file system")


def _merge(source: Path, dest: Path, rel: str, touched: _Dirs, explicit: set[str]) -> None:
    """Link every entry of `source` into `dest`; upper entries replace lower ones. Folders
    the layer names (or creates) get its mode and times afterwards, deepest first."""
    _writable(dest, rel.rstrip("/"), touched)
    with os.scandir(source) as scan:
        children = list(scan)
    for child in children:
        name = f"{rel}{child.name}"
        there = dest / child.name
        info = child.stat(follow_symlinks=False)
        try:
            old = there.lstat().st_mode
        except FileNotFoundError:
            old = None
        if stat.S_ISDIR(info.st_mode):
            if old is not None and not stat.S_ISDIR(old):
                there.unlink()
                old = None
            if old is None:
                there.mkdir(mode=0o700)
            if old is None or name in explicit:
                touched[name] = info
            _merge(Path(child.path), there, name + "/", touched, explicit)
            continue
        if old is not None:
            remove_tree(there) if stat.S_ISDIR(old) else there.unlink()
        os.link(child.path, there, follow_symlinks=False)


def _writable(folder: Path, name: str, touched: _Dirs) -> None:
    # As root every folder is writable; others lift the bit, and _fix_dirs puts modes back.
    if os.geteuid() != 0 and name and not os.access(folder, os.W_OK):
        info = folder.lstat()
        touched.setdefault(name, info)
        os.chmod(folder, stat.S_IMODE(info.st_mode) | 0o700)


def _fix_dirs(root: Path, touched: _Dirs) -> None:
    for name in sorted(touched, reverse=True):
        info, path = touched[name], root / name
        if os.geteuid() == 0:
            os.lchown(path, info.st_uid, info.st_gid)
        os.chmod(path, stat.S_IMODE(info.st_mode))
        os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))


def prune(cache: Path, keep: set[str]) -> list[Path]:
    """Remove extracted layers whose diff_id is not in `keep`; return what went."""
    gone = []
    if cache.is_dir():
        for folder in sorted(cache.iterdir()):
            if folder.name.startswith(".tmp-") and time.time() - folder.stat().st_mtime < 3600:
                continue  # another process may be extracting it right now
            if f"sha256:{folder.name}" not in keep:
                remove_tree(folder)
                gone.append(folder)
    return gone


__all__ = ["compose_root", "layer_dir", "prune"]
