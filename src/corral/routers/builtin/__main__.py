"""Entry point of the router process: `python -m corral.routers.builtin --control S --state F`.

Serves every service from one process (one worker for now), restores the state file at
start, and shuts down gracefully on SIGTERM/SIGINT or the control `shutdown` op.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import logging
import os
import resource
import signal
import socket
import sys
from pathlib import Path

import uvloop

from corral.routers.builtin.control import ControlServer
from corral.routers.builtin.table import RoutingTable

log = logging.getLogger("corral.router")


def _is_answering(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(path)
        except OSError:
            return False
        return True


async def serve(control: str, state: Path) -> None:
    shutdown = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, shutdown.set)
    table = RoutingTable(state)
    await table.load_state()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(control)  # stale: we checked nothing answers on it
    control_server = await ControlServer(table, shutdown).start(control)
    log.info("router %d ready; control socket %s", os.getpid(), control)
    expiry = asyncio.create_task(_expire_idle_connections(table))
    await shutdown.wait()
    log.info("shutting down")
    control_server.close()
    expiry.cancel()
    await table.shutdown()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(control)


async def _expire_idle_connections(table: RoutingTable) -> None:
    while True:
        await asyncio.sleep(1.0)
        table.expire_idle()


def _raise_open_file_limit() -> None:
    # Each proxied request holds two sockets; the default soft limit (1024) is low for that.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m corral.routers.builtin")
    parser.add_argument("--control", required=True, help="unix control socket path")
    parser.add_argument("--state", required=True, help="state file (JSON), loaded at start")
    parser.add_argument("--pid-file", help="write the router's pid here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s router[%(process)d] %(levelname)s %(message)s")
    _raise_open_file_limit()
    # Held for the process's life: two routers racing to start cannot both pass this.
    lock = open(args.control + ".lock", "a")  # noqa: SIM115
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        log.error("another router already runs with control socket %s", args.control)
        return 1
    if _is_answering(args.control):
        log.error("another router already answers on %s", args.control)
        return 1
    pid_file = Path(args.pid_file) if args.pid_file else None
    if pid_file is not None:
        tmp = pid_file.with_name(pid_file.name + ".tmp")
        tmp.write_text(f"{os.getpid()}\n")
        os.replace(tmp, pid_file)
    try:
        uvloop.run(serve(args.control, Path(args.state)))
    finally:
        if pid_file is not None and _pid_file_is_ours(pid_file):
            pid_file.unlink()
    return 0


def _pid_file_is_ours(pid_file: Path) -> bool:
    try:
        return pid_file.read_text().strip() == str(os.getpid())
    except OSError:
        return False


if __name__ == "__main__":
    sys.exit(main())
