"""BlobSink: a downloading blob's temporary file, hashed as written and flushed to disk
in the background while it grows."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from corral.images.oci.sink import BlobSink


def test_a_blob_written_in_pieces_is_whole_and_reports_its_digest(tmp_path: Path) -> None:
    pieces = [os.urandom(n) for n in (1, 4096, 70_000, 3, 1 << 20)]
    with BlobSink(tmp_path, flush_every=8192) as sink:
        for piece in pieces:
            sink.write(piece)
    data = b"".join(pieces)
    assert sink.path.read_bytes() == data
    assert (sink.size, sink.digest) == (len(data), "sha256:" + hashlib.sha256(data).hexdigest())
    assert sink.path.parent == tmp_path and sink.path.name.startswith(".tmp-")


def test_the_file_is_flushed_to_disk_while_it_grows(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real = os.fdatasync

    def counting(fd: int) -> None:
        synced.append(os.fstat(fd).st_size)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", counting)
    with BlobSink(tmp_path, flush_every=1024) as sink:
        sink.write(b"x" * 4096)
        deadline = time.monotonic() + 30
        while not synced:
            assert time.monotonic() < deadline, "the background flush never ran"
            time.sleep(0.01)
        sink.write(b"y" * 10)
    assert synced[0] >= 4096  # a flush while the blob was still open, before the final fsync


def test_an_error_inside_the_sink_removes_its_file(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), BlobSink(tmp_path) as sink:
        sink.write(b"partial")
        raise RuntimeError("the download broke off")
    assert not sink.path.exists()
    assert list(tmp_path.iterdir()) == []


def test_a_sink_leaves_no_flusher_thread_behind(tmp_path: Path) -> None:
    with BlobSink(tmp_path, flush_every=1) as sink:
        sink.write(b"abc")
        flusher = sink._flusher
        assert flusher is not None and flusher.is_alive()
    assert not flusher.is_alive()


def test_a_small_blob_starts_no_flusher(tmp_path: Path) -> None:
    with BlobSink(tmp_path, flush_every=1 << 20) as sink:
        sink.write(b"a config")
        assert sink._flusher is None
    assert sink.path.read_bytes() == b"a config"
