"""A tar stream writer for layers: the bytes of tarfile's PAX format, written without it.

tarfile spends most of a layer's packing time building headers (a TarInfo copy, a dict,
a PAX check per member). Members whose fields fit a plain ustar header (ASCII names up to
100 bytes, sizes below 8 GiB, small owners) get one here, byte for byte what tarfile
writes; anything else falls back to tarfile's own encoder. It writes; it never chooses
what goes into a layer.
"""

from __future__ import annotations

import tarfile
from typing import BinaryIO, Protocol

BLOCK = 512
_RECORD = 20 * BLOCK  # tarfile pads the archive to whole records
_READ = 1 << 20
_MAX_SIZE = 8**11  # 12-byte octal field
_MAX_ID = 8**7  # 8-byte octal field


class Sink(Protocol):
    def write(self, data: bytes | memoryview, /) -> int: ...


class TarStream:
    """Members written in the order given; `close` ends the archive as tarfile does."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.offset = 0
        self._buffer = bytearray(_READ)

    def add(self, name: str, typeflag: bytes, mode: int, uid: int, gid: int, mtime: int,
            size: int = 0, linkname: str = "", content: BinaryIO | None = None) -> None:
        if typeflag == tarfile.DIRTYPE and not name.endswith("/"):
            name += "/"  # what tarfile does for folders
        self._write(header(name, typeflag, mode, uid, gid, mtime, size, linkname))
        if content is not None:
            self._copy(content, size, name)

    def close(self) -> None:
        self._write(bytes(2 * BLOCK))
        remainder = self.offset % _RECORD
        if remainder:
            self._write(bytes(_RECORD - remainder))

    def _write(self, data: bytes | memoryview) -> None:
        self.sink.write(data)
        self.offset += len(data)

    def _copy(self, content: BinaryIO, size: int, name: str) -> None:
        view, left = memoryview(self._buffer), size
        while left:
            count = content.readinto(view[:min(left, _READ)])  # type: ignore[attr-defined]
            if not count:
                raise OSError(f"{name} became shorter while it was packed")
            self._write(view[:count])
            left -= count
        if size % BLOCK:
            self._write(bytes(BLOCK - size % BLOCK))


def header(name: str, typeflag: bytes, mode: int, uid: int, gid: int, mtime: int,
           size: int, linkname: str) -> bytes:
    """One member's header block(s), equal to TarInfo.tobuf(PAX_FORMAT, 'utf-8', ...)."""
    if not _fits_ustar(name, linkname, uid, gid, size, mtime):
        return _tarfile_header(name, typeflag, mode, uid, gid, mtime, size, linkname)
    block = bytearray(BLOCK)
    block[0:len(name)] = name.encode("ascii")
    block[100:108] = b"%07o\0" % (mode & 0o7777)
    block[108:116] = b"%07o\0" % uid
    block[116:124] = b"%07o\0" % gid
    block[124:136] = b"%011o\0" % size
    block[136:148] = b"%011o\0" % mtime
    block[148:156] = b"        "
    block[156:157] = typeflag
    block[157:157 + len(linkname)] = linkname.encode("ascii")
    block[257:265] = tarfile.POSIX_MAGIC
    block[148:155] = b"%06o\0" % sum(block)
    return bytes(block)


def _fits_ustar(name: str, linkname: str, uid: int, gid: int, size: int, mtime: int) -> bool:
    return (name.isascii() and linkname.isascii() and len(name) <= 100
            and len(linkname) <= 100 and 0 <= uid < _MAX_ID and 0 <= gid < _MAX_ID
            and 0 <= size < _MAX_SIZE and 0 <= mtime < _MAX_SIZE)


def _tarfile_header(name: str, typeflag: bytes, mode: int, uid: int, gid: int, mtime: int,
                    size: int, linkname: str) -> bytes:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.uid, info.gid = typeflag, mode, uid, gid
    info.mtime, info.size, info.linkname = mtime, size, linkname
    info.uname = info.gname = ""
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
