"""The state folder is the controller user's alone: the folder and its run/ 0700, the
databases (and their WAL files), the token book and the controller's log 0600.

Called when a workspace opens its store and when the controller starts, so a folder
made by an older corral (0755, databases 0644) is closed as well. Files SQLite makes
later (-wal, -shm) take the mode of their database, so pre-creating it 0600 suffices.
"""

from __future__ import annotations

import os
from pathlib import Path

PRIVATE_FILES = ("state.db", "logs.db")
"""Made 0600 before any adapter opens them."""

_ALSO_CLOSED = ("state.db-wal", "state.db-shm", "logs.db-wal", "logs.db-shm", "tokens.json",
                "tokens.lock", "run/controller.log", "run/controller.pid")


def make_private(state_dir: Path, databases: tuple[str, ...] = PRIVATE_FILES) -> None:
    """Create `state_dir` (and run/) 0700 and its `databases` 0600; close what exists."""
    for folder in (state_dir, state_dir / "run"):
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        except PermissionError:
            continue
        _chmod(folder, 0o700)
    for name in databases:
        try:
            os.close(os.open(state_dir / name, os.O_CREAT | os.O_WRONLY, 0o600))
        except PermissionError:  # a folder we may only read: its owner made them
            continue
        _chmod(state_dir / name, 0o600)
    for name in (*PRIVATE_FILES, *_ALSO_CLOSED):
        _chmod(state_dir / name, 0o600)


def _chmod(path: Path, mode: int) -> None:
    try:
        if path.stat().st_mode & 0o777 != mode:
            os.chmod(path, mode)
    except FileNotFoundError:
        pass
    except PermissionError:  # not ours (a shared CORRAL_STATE_DIR): leave it to its owner
        pass
