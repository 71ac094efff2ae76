"""Run the controller and its API until asked to stop (`corral up` in the foreground).

SIGTERM and SIGINT stop the controller but leave instances and the router running, so a
controller restart or upgrade drops no request; `corral down` stops everything.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import signal
import threading
from pathlib import Path
from types import FrameType

from corral.api.server import ApiServer
from corral.engine.controller import Controller
from corral.engine.workspace import Workspace
from corral.errors import ControllerError

log = logging.getLogger(__name__)


def serve(ws: Workspace, ready: threading.Event | None = None) -> None:
    pid_file = ws.run_dir / "controller.pid"
    if _is_running(pid_file):
        raise ControllerError(f"a controller is already running for {ws.folder} "
                              f"(pid {pid_file.read_text().strip()})",
                              hint="use it, or stop it first with `corral down`")
    _raise_open_file_limit()
    controller = Controller(ws)
    controller.start()
    server = ApiServer(ws.socket_path, controller)
    pid_file.write_text(f"{os.getpid()}\n")

    def on_signal(signum: int, frame: FrameType | None) -> None:
        server.request_shutdown(keep_instances=True)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              name="api", daemon=True)
    thread.start()
    log.info("controller %d serving on %s", os.getpid(), ws.socket_path)
    if ready is not None:
        ready.set()
    try:
        while not server.shutdown_requested.wait(0.5):
            pass
    finally:
        controller.shutdown(server.keep_instances)
        server.shutdown()
        server.server_close()
        ws.socket_path.unlink(missing_ok=True)
        pid_file.unlink(missing_ok=True)
        log.info("controller %d stopped", os.getpid())


def _raise_open_file_limit() -> None:
    """The soft limit on open files up to the hard one (as the builtin router does): the
    controller keeps a few descriptors per instance (a pidfd, a mount table, log files),
    and the usual soft limit of 1024 is low for a few hundred instances."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _is_running(pid_file: os.PathLike[str]) -> bool:
    try:
        with open(pid_file) as file:
            pid = int(file.read().strip())
    except (OSError, ValueError):
        return False
    if pid == os.getpid():
        return False
    try:
        # A killed controller may linger as a zombie until init reaps it: that is not running.
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X") and b"corral" in cmdline
