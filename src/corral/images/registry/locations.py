"""Where blobs were last seen in registries, so a push can mount instead of upload.

A small JSON file (`.corral/registry-blobs.json`): registry → digest → repositories.
It is a hint only: a stale entry costs one failed mount, never a wrong image.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
from pathlib import Path

_MAX_REPOS = 8


class BlobLocations:
    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._data: dict[str, dict[str, list[str]]] = {}
        if path is not None:
            with contextlib.suppress(FileNotFoundError, ValueError, OSError):
                loaded = json.loads(path.read_text())
                if isinstance(loaded, dict):
                    self._data = loaded

    def where(self, registry: str, digest: str) -> list[str]:
        with self._lock:
            return list(self._data.get(registry, {}).get(digest, []))

    def add(self, registry: str, digest: str, repository: str) -> None:
        with self._lock:
            repos = self._data.setdefault(registry, {}).setdefault(digest, [])
            if repository in repos:
                repos.remove(repository)
            repos.insert(0, repository)
            del repos[_MAX_REPOS:]

    def save(self) -> None:
        if self.path is None:
            return
        with self._lock:
            data = json.dumps(self._data, sort_keys=True).encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(tmp, self.path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
