"""The router process: `python -m corral.routers.builtin --control S --state F [--workers N]`.

The supervisor process owns the control socket and the state file and starts N workers
(default: one per core) that share each listen port with SO_REUSEPORT. It shuts down
gracefully on SIGTERM/SIGINT or the control `shutdown` op. `--worker-fd` runs one worker.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import socket
import sys
from pathlib import Path

import uvloop

from corral.limits import raise_open_file_limit
from corral.routers.builtin.control import ControlServer
from corral.routers.builtin.supervisor import Supervisor
from corral.routers.builtin.worker import serve_worker

log = logging.getLogger("corral.router")


def _is_answering(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(path)
        except OSError:
            return False
        return True


async def serve(control: str, state: Path, workers: int) -> None:
    shutdown = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, shutdown.set)
    supervisor = Supervisor(state, workers)
    await supervisor.start()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(control)  # stale: we checked nothing answers on it
    control_server = await ControlServer(supervisor, shutdown).start(control)
    log.info("router %d ready with %d workers; control socket %s", os.getpid(), workers,
             control)
    await shutdown.wait()
    log.info("shutting down")
    control_server.close()
    await supervisor.shutdown()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(control)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m corral.routers.builtin")
    parser.add_argument("--control", help="unix control socket path")
    parser.add_argument("--state", help="state file (JSON), loaded at start")
    parser.add_argument("--pid-file", help="write the router's pid here")
    parser.add_argument("--workers", type=int, default=0,
                        help="worker processes (default: one per core)")
    parser.add_argument("--worker-fd", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s router[%(process)d] %(levelname)s %(message)s")
    raise_open_file_limit()
    if args.worker_fd is not None:
        uvloop.run(serve_worker(args.worker_fd))
        return 0
    if not args.control or not args.state:
        parser.error("--control and --state are required")
    workers = args.workers if args.workers > 0 else (os.cpu_count() or 1)
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
        uvloop.run(serve(args.control, Path(args.state), workers))
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
