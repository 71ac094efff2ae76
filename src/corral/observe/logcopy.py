"""A consistent copy of the SQLite log store while collectors write to it (the online
backup API, which WAL readers and writers do not block), for `corral backup`."""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path


def copy_log_database(path: Path) -> bytes:
    """The whole database at `path`, as of one moment, as the bytes of a SQLite file."""
    with tempfile.TemporaryDirectory(prefix="corral-logcopy-") as scratch:
        target = Path(scratch) / "logs.db"
        source = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        copy = sqlite3.connect(target)
        try:
            source.backup(copy)
        finally:
            copy.close()
            source.close()
        return target.read_bytes()
