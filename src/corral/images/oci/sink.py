"""Where an incoming blob lands (a download, or a base layer copied in from the machine cache):
a temporary file beside the blobs, hashed as it is written and flushed to disk in the
background while it grows, so the fsync that makes it durable waits only for the tail.

It never renames into the layout and never decides whether the digest is right: it reports
the digest; the client compares and the layout adopts.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import threading
from pathlib import Path
from types import TracebackType

# Measured on loopback (bench/images_transfer.py): 8 MiB steps leave the final fsync ~10 ms
# of a 200 MB blob, against ~300 ms when the whole blob is flushed at the end.
FLUSH_EVERY = 8 << 20


class BlobSink:
    """`with BlobSink(folder) as sink: sink.write(...)`; then `sink.path` is a durable file of
    `sink.size` bytes whose sha256 is `sink.digest`. On an exception the file is removed."""

    def __init__(self, folder: Path, flush_every: int = FLUSH_EVERY) -> None:
        fd, name = tempfile.mkstemp(dir=folder, prefix=".tmp-in-")
        self.path = Path(name)
        self.size = 0
        self._fd = fd
        self._hasher = hashlib.sha256()
        self._flush_every = flush_every
        self._unflushed = 0
        self._wanted = threading.Event()
        self._closing = False
        self._flusher: threading.Thread | None = None  # started by the first flush: a
        # small blob (a config, a manifest) never needs one

    @property
    def digest(self) -> str:
        return "sha256:" + self._hasher.hexdigest()

    def write(self, data: bytes) -> None:
        # hashlib releases the GIL on large inputs; os.write goes straight to the page cache.
        self._hasher.update(data)
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]
        self.size += len(data)
        self._unflushed += len(data)
        if self._unflushed >= self._flush_every:
            self._unflushed = 0
            if self._flusher is None:
                self._flusher = threading.Thread(target=self._flush_loop, daemon=True,
                                                 name=f"flush {self.path.name}")
                self._flusher.start()
            self._wanted.set()

    def _flush_loop(self) -> None:
        while True:
            self._wanted.wait()
            self._wanted.clear()
            if self._closing:
                return
            # Starts the disk writing what has arrived while the network brings the rest.
            with contextlib.suppress(OSError):
                os.fdatasync(self._fd)

    def _stop_flusher(self) -> None:
        if self._flusher is not None:
            self._closing = True
            self._wanted.set()
            self._flusher.join()

    def __enter__(self) -> BlobSink:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop_flusher()
        failed = kind is not None
        try:
            if not failed:
                os.fsync(self._fd)
        except BaseException:
            failed = True
            raise
        finally:
            os.close(self._fd)
            if failed:
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
