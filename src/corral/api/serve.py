"""Run the controller and its API until asked to stop (`corral up` in the foreground).

SIGTERM and SIGINT stop the controller but leave instances and the router running, so a
controller restart or upgrade drops no request; `corral down` stops everything.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from corral.api.server import ApiServer
from corral.engine.controller import Controller
from corral.engine.standby import LeaseKeeper
from corral.engine.workspace import Workspace
from corral.errors import ControllerError
from corral.ports.lease import Lease

log = logging.getLogger(__name__)


def serve(ws: Workspace, ready: threading.Event | None = None, *,
          standby: bool = False) -> None:
    """Hold the controller lease, then run the controller and its API until asked to stop.
    A `standby` waits for the lease (the active controller's death or departure) first."""
    pid_file = ws.run_dir / "controller.pid"
    if not standby and _is_running(pid_file):
        raise ControllerError(f"a controller is already running for {ws.folder} "
                              f"(pid {pid_file.read_text().strip()})",
                              hint="use it, or stop it first with `corral down`")
    stopping = threading.Event()
    _on_stop_signals(lambda: stopping.set())
    keeper = LeaseKeeper(ws.store, on_lost=_stop_acting)
    if keeper.acquire(standby=standby, stopping=stopping, waiting=_say_standby) is None:
        return  # stopped while standing by: it never acted
    keeper.start()
    try:
        _run_active(ws, pid_file, ready, stopping)
    finally:
        keeper.stop()


def _run_active(ws: Workspace, pid_file: Path, ready: threading.Event | None,
                stopping: threading.Event) -> None:
    controller = Controller(ws)
    controller.start()
    server = ApiServer(ws.socket_path, controller)
    pid_file.write_text(f"{os.getpid()}\n")
    _on_stop_signals(lambda: server.request_shutdown(keep_instances=True))
    if stopping.is_set():  # a signal between the lease and here
        server.request_shutdown(keep_instances=True)
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


def _on_stop_signals(handler: Callable[[], None]) -> None:
    def on_signal(signum: int, frame: FrameType | None) -> None:
        handler()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)


def _say_standby(current: Lease) -> None:
    log.info("standby: controller %s is active (epoch %d); waiting for its lease",
             current.holder, current.epoch)


def _stop_acting(why: str) -> None:
    """The lease is lost: end the process now, mid-step if need be. Instances and the
    router are separate processes and keep serving; the new active controller resumes
    every deployment from its persisted steps. Exit code 75 (EX_TEMPFAIL)."""
    logging.shutdown()
    os._exit(75)


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
