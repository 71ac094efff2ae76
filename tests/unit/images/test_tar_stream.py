"""The tar stream writes exactly the bytes tarfile's PAX format writes, member by member."""

from __future__ import annotations

import io
import tarfile

from hypothesis import given, settings
from hypothesis import strategies as st

from corral.images.build.tarstream import TarStream, header

_TYPES = [tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE]
_names = st.one_of(
    st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=120),
    st.text(min_size=1, max_size=40).filter(lambda n: "\x00" not in n))


def _tarfile_bytes(members: list[tuple[str, bytes, int, int, int, int, bytes, str]]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, mode, uid, gid, mtime, content, link in members:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.uid, info.gid, info.mtime = kind, mode, uid, gid, mtime
            info.uname = info.gname = ""
            if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                info.linkname = link
            if kind == tarfile.REGTYPE:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
            else:
                tar.addfile(info)
    return out.getvalue()


def _stream_bytes(members: list[tuple[str, bytes, int, int, int, int, bytes, str]]) -> bytes:
    out = io.BytesIO()
    stream = TarStream(out)
    for name, kind, mode, uid, gid, mtime, content, link in members:
        if kind == tarfile.REGTYPE:
            stream.add(name, kind, mode, uid, gid, mtime, len(content),
                       content=io.BytesIO(content))
        else:
            linked = kind in (tarfile.SYMTYPE, tarfile.LNKTYPE)
            stream.add(name, kind, mode, uid, gid, mtime, linkname=link if linked else "")
    stream.close()
    return out.getvalue()


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(
    _names, st.sampled_from(_TYPES), st.integers(0, 0o7777),
    st.integers(0, 2**22), st.integers(0, 2**22), st.integers(0, 2**34),
    st.binary(max_size=1500), _names), max_size=6))
def test_members_are_written_byte_for_byte_as_tarfile_writes_them(
        members: list[tuple[str, bytes, int, int, int, int, bytes, str]]) -> None:
    assert _stream_bytes(members) == _tarfile_bytes(members)


def test_a_long_or_non_ascii_name_gets_a_pax_record() -> None:
    block = header("é" * 3, tarfile.REGTYPE, 0o644, 0, 0, 0, 0, "")
    assert b"path=" in block and len(block) % 512 == 0
    plain = header("etc/passwd", tarfile.REGTYPE, 0o644, 0, 0, 0, 10, "")
    assert len(plain) == 512 and plain.startswith(b"etc/passwd\0")
