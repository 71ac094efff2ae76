"""Starting the controller in the background (`corral up -d`) and stopping what runs when
no controller is there to ask (`corral down` after a crash)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from corral.engine.workspace import Workspace
from corral.errors import ControllerError


def start_detached(ws: Workspace, is_up: Callable[[], bool], timeout: float = 60.0,
                   listen: str | None = None) -> int:
    """Start `corral up` as a detached process; wait until its API answers."""
    log_path = ws.run_dir / "controller.log"
    fd = os.open(log_path, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)  # the user's alone
    with open(fd, "ab") as log:
        start = log.tell()  # earlier runs' lines are history: show only this start's
        process = subprocess.Popen(
            [sys.executable, "-m", "corral", "up", "-f", str(ws.loaded.path),
             *(["--env", ws.env] if ws.env else []),
             *(["--listen", listen] if listen else [])],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, cwd=ws.folder)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if is_up():
            return process.pid
        if process.poll() is not None:
            raise ControllerError(f"the controller exited at start (code {process.returncode}):"
                                  f"\n{_tail(log_path, start)}", hint=f"full log: {log_path}")
        time.sleep(0.05)
    raise ControllerError(f"the controller did not answer within {timeout:.0f}s",
                          hint=f"see {log_path}")


def stop_everything(ws: Workspace, keep_instances: bool) -> int:
    """Stop instances and the router without a controller; returns instances stopped."""
    if keep_instances:
        return 0
    stopped = 0
    for observed in ws.driver.list():
        ws.driver.stop(observed.id, grace=5.0)
        stopped += 1
    ws.router.stop()
    return stopped


def _tail(path: Path, start: int, lines: int = 15) -> str:
    """The last `lines` lines written to `path` from byte `start` on."""
    try:
        with open(path, "rb") as log:
            log.seek(start)
            text = log.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
