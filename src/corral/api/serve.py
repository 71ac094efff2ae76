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
from pathlib import Path
from types import FrameType

from corral.api.server import ApiServer, Lifecycle, TcpApiServer, tls_context
from corral.core.access import FailureWindow
from corral.engine.access.gate import Gate
from corral.engine.access.private import make_private
from corral.engine.controller import Controller
from corral.engine.workspace import Workspace
from corral.errors import ControllerError
from corral.spec.model import listen_problem

log = logging.getLogger(__name__)


def serve(ws: Workspace, ready: threading.Event | None = None,
          listen: str | None = None) -> None:
    """Serve the API on the unix socket, and on `listen` (else `[controller] listen`) with
    tokens, until asked to stop."""
    pid_file = ws.run_dir / "controller.pid"
    if _is_running(pid_file):
        raise ControllerError(f"a controller is already running for {ws.folder} "
                              f"(pid {pid_file.read_text().strip()})",
                              hint="use it, or stop it first with `corral down`")
    make_private(ws.state_dir)  # an older corral's 0644 databases and log: closed now
    lifecycle = Lifecycle()
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

    def on_signal(signum: int, frame: FrameType | None) -> None:
        lifecycle.request(keep_instances=True)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
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
