"""Reproducible layers: a sorted list of entries packed as a plain tar (or tar + gzip).

The same entries give the same bytes on any machine, day or folder: entries sorted by name,
one mtime for all, numeric owners with empty names, PAX format; when compressed, gzip with
mtime 0, no file name and a fixed level (ADR 0007). It packs; it never decides what goes in.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import stat
import tarfile
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from corral.images.build.tarstream import TarStream
from corral.images.oci.layout import LAYER_MEDIA_TYPE, PLAIN_LAYER_MEDIA_TYPE

COMPRESSION_LEVEL = 6
_BUFFER = 1 << 20
# Bits a root image may not carry: the unpacker rejects them, so the packer never writes them.
_PRIVILEGE_BITS = stat.S_ISUID | stat.S_ISGID

Kind = Literal["file", "dir", "symlink", "hardlink"]
Compression = Literal["none", "gzip"]
_TYPES = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
          "hardlink": tarfile.LNKTYPE}


@dataclass(frozen=True)
class Entry:
    """One member of a layer. `name` is relative to the image root, without a leading '/'."""

    name: str
    kind: Kind
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    source: Path | None = None  # where a file's content is read from
    size: int = 0
    linkname: str = ""  # symlink target, or the member a hardlink points at


@dataclass(frozen=True)
class Layer:
    """A packed layer: `digest` names the blob, `diff_id` the uncompressed tar (the same
    digest for a plain tar layer)."""

    digest: str
    diff_id: str
    size: int
    media_type: str = LAYER_MEDIA_TYPE


class _HashingWriter:
    """Counts and hashes what passes through on its way to `sink`."""

    def __init__(self, sink: object) -> None:
        self.sink = sink
        self.hasher = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes | memoryview) -> int:
        self.hasher.update(data)
        self.size += len(data)
        self.sink.write(data)  # type: ignore[attr-defined]
        return len(data)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        pass

    @property
    def digest(self) -> str:
        return "sha256:" + self.hasher.hexdigest()


def source_date_epoch() -> int:
    """The mtime of every entry and the `created` time of every image (default 0)."""
    try:
        return max(0, int(os.environ.get("SOURCE_DATE_EPOCH", "0")))
    except ValueError:
        return 0


def pack(entries: Iterable[Entry], folder: Path, *, mtime: int | None = None,
         compression: Compression = "none") -> tuple[Layer, Path]:
    """Pack `entries` into a tmp file in `folder`; return the layer and the file's path.

    "none" writes a plain tar (its digest is its diff_id); "gzip" compresses it at a fixed
    level with no name and no time in the gzip header.
    """
    when = source_date_epoch() if mtime is None else mtime
    fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=".layer-")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as raw:
            blob = _HashingWriter(raw)
            if compression == "none":
                _write_tar(blob, entries, when)
                return Layer(digest=blob.digest, diff_id=blob.digest, size=blob.size,
                             media_type=PLAIN_LAYER_MEDIA_TYPE), tmp
            with gzip.GzipFile(filename="", mode="wb", fileobj=blob,
                               compresslevel=COMPRESSION_LEVEL, mtime=0) as zipped:
                plain = _HashingWriter(zipped)
                _write_tar(plain, entries, when)
        return Layer(digest=blob.digest, diff_id=plain.digest, size=blob.size), tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_tar(sink: _HashingWriter, entries: Iterable[Entry], mtime: int) -> None:
    tar = TarStream(sink)
    for entry in sorted(entries, key=lambda e: e.name):
        mode = entry.mode & 0o7777 & ~_PRIVILEGE_BITS
        if entry.kind == "file" and entry.source is not None:
            with entry.source.open("rb") as content:
                tar.add(entry.name, tarfile.REGTYPE, mode, entry.uid, entry.gid, mtime,
                        entry.size, content=content)
        else:  # a folder, a link, or an empty file such as a whiteout
            tar.add(entry.name, _TYPES[entry.kind], mode, entry.uid, entry.gid, mtime,
                    linkname=entry.linkname)
    tar.close()


def entries_of_root(root: Path) -> Iterator[Entry]:
    """Every entry of a whole root folder (a debootstrap result), owners and modes kept.

    Device nodes, sockets and fifos are left out: instances get a fresh /dev from the driver,
    and the unpacker refuses them. Files with several links become hardlink entries.
    """
    seen: dict[tuple[int, int], str] = {}
    # Sorted as `pack` sorts, so the first name of a hardlinked file precedes its links.
    for path, rel in sorted(_walk(root, ""), key=lambda pair: pair[1]):
        info = path.lstat()
        mode = info.st_mode
        perms, uid, gid = stat.S_IMODE(mode), info.st_uid, info.st_gid
        if stat.S_ISDIR(mode):
            yield Entry(rel, "dir", perms, uid, gid)
        elif stat.S_ISLNK(mode):
            yield Entry(rel, "symlink", perms, uid, gid, linkname=os.readlink(path))
        elif stat.S_ISREG(mode):
            key = (info.st_dev, info.st_ino)
            if info.st_nlink > 1 and key in seen:
                yield Entry(rel, "hardlink", perms, uid, gid, linkname=seen[key])
                continue
            seen[key] = rel
            yield Entry(rel, "file", perms, uid, gid, source=path, size=info.st_size)


def _walk(folder: Path, prefix: str) -> Iterator[tuple[Path, str]]:
    """(path, name in the image) of everything under `folder`."""
    with os.scandir(folder) as scan:
        children = list(scan)
    for child in children:
        rel = f"{prefix}{child.name}"
        yield Path(child.path), rel
        if child.is_dir(follow_symlinks=False):
            yield from _walk(Path(child.path), rel + "/")
