"""Run the controller and its API until asked to stop (`corral up` in the foreground).

SIGTERM and SIGINT stop the controller but leave instances and the router running, so a
controller restart or upgrade drops no request; `corral down` stops everything.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from corral.api.server import ApiServer, Lifecycle, TcpApiServer, tls_context
from corral.core.access import FailureWindow
from corral.engine.access.gate import Gate
from corral.engine.controller import Controller
from corral.engine.standby import LeaseKeeper
from corral.engine.workspace import Workspace
from corral.errors import ControllerError
from corral.limits import raise_open_file_limit
from corral.ports.lease import Lease
from corral.processes import is_running
from corral.spec.model import listen_problem

log = logging.getLogger(__name__)


def serve(ws: Workspace, ready: threading.Event | None = None, *,
          listen: str | None = None, standby: bool = False) -> None:
    """Hold the controller lease, then run the controller and its API (the unix socket,
    and `listen`, else `[controller] listen`, with tokens) until asked to stop. A
    `standby` waits for the lease (the active controller's death or departure) first."""
    pid_file = ws.run_dir / "controller.pid"
    if not standby and _is_running(pid_file):
        raise ControllerError(f"a controller is already running for {ws.folder} "
                              f"(pid {pid_file.read_text().strip()})",
                              hint="use it, or stop it first with `corral down`")
    ws.make_private()  # an older corral's 0644 databases and log: closed now
    raise_open_file_limit()
    lifecycle = Lifecycle()
    _on_stop_signals(lambda: lifecycle.request(keep_instances=True))
    keeper = LeaseKeeper(ws.store, on_lost=_stop_acting)
    stopping = lifecycle.requested
    if keeper.acquire(standby=standby, stopping=stopping, waiting=_say_standby) is None:
        return  # stopped while standing by: it never acted
    keeper.start()
    try:
        _run_active(ws, pid_file, ready, lifecycle, listen)
    finally:
        keeper.stop()


def _run_active(ws: Workspace, pid_file: Path, ready: threading.Event | None,
                lifecycle: Lifecycle, listen: str | None) -> None:
    tcp = _tcp_server(ws, listen or ws.loaded.spec.controller.listen, lifecycle)
    controller = Controller(ws)
    try:
        controller.start()
    except BaseException:
        if tcp is not None:
            tcp.server_close()
        raise
    servers: list[ApiServer | TcpApiServer] = [ApiServer(ws.socket_path, controller, lifecycle)]
    if tcp is not None:
        tcp.controller = controller
        servers.append(tcp)
    pid_file.write_text(f"{os.getpid()}\n")
    for server in servers:
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                         name="api", daemon=True).start()
    log.info("controller %d serving on %s%s", os.getpid(), ws.socket_path,
             f" and {_url_of(tcp)}" if tcp else "")
    if ready is not None:
        ready.set()
    try:
        while not lifecycle.requested.wait(0.5):
            pass
    finally:
        controller.shutdown(lifecycle.keep_instances)
        for server in servers:
            server.shutdown()
            server.server_close()
        ws.socket_path.unlink(missing_ok=True)
        pid_file.unlink(missing_ok=True)
        log.info("controller %d stopped", os.getpid())


def _tcp_server(ws: Workspace, listen: str | None, lifecycle: Lifecycle) -> TcpApiServer | None:
    """The API's TCP server on `listen`, bound before the controller starts anything, so a
    taken port or a bad certificate stops `corral up` with nothing left running."""
    if listen is None:
        return None
    settings = ws.loaded.spec.controller
    problem = listen_problem(listen, settings.tls is not None)
    if problem:
        raise ControllerError(f"cannot listen on {problem}",
                              hint="listen on 127.0.0.1:PORT, or give the controller TLS")
    tls = None
    if settings.tls is not None:
        tls = tls_context(ws.folder / settings.tls.cert, ws.folder / settings.tls.key)
    host, _, port = listen.rpartition(":")
    gate = Gate(ws.tokens, ws.store, time.time,
                FailureWindow(settings.auth_failures, settings.auth_window))
    try:
        return TcpApiServer(host, int(port), None, gate, lifecycle, tls)  # type: ignore[arg-type]
    except OSError as exc:
        raise ControllerError(f"the API cannot listen on {listen}: {exc.strerror}",
                              hint="pick a free port: corral up --listen 127.0.0.1:PORT") from None


def _url_of(server: TcpApiServer | None) -> str:
    if server is None:
        return ""
    scheme = "https" if server.tls else "http"
    host = str(server.server_address[0])
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}:{server.port}"


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
    # A killed controller may linger as a zombie until init reaps it: that is not running.
    if not is_running(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"corral" in cmdline
