"""A router worker process: serves traffic, applies what the supervisor sends it, nothing else.

Each worker has its own event loop and routing table and binds every listen address with
SO_REUSEPORT. It talks to its supervisor over one inherited socket (JSON lines, the same ops
as the control socket); when that socket closes the supervisor is gone, and so does it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
from typing import Any

from corral.routers.builtin.table import ControlError, RoutingTable

log = logging.getLogger("corral.router")
MAX_LINE = 4 << 20


async def serve_worker(fd: int) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: None)  # the supervisor says when to stop
    table = RoutingTable()
    sock = socket.socket(fileno=fd)
    reader, writer = await asyncio.open_unix_connection(sock=sock, limit=MAX_LINE)
    line = b""
    try:
        while line := await reader.readline():
            request = json.loads(line)
            reply = await _reply(table, request)
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
            if request.get("op") == "shutdown":
                break
    except (ConnectionError, OSError, ValueError) as exc:
        log.error("worker %d lost its supervisor: %s", os.getpid(), exc)
    grace = None if line else 0.5  # supervisor gone without a word: do not linger
    await table.shutdown(grace)
    writer.close()


async def _reply(table: RoutingTable, request: dict[str, Any]) -> dict[str, Any]:
    try:
        return {"ok": True, "result": await _dispatch(table, request)}
    except ControlError as exc:
        return {"ok": False, "error": {"kind": exc.kind, "message": exc.message,
                                       "hint": exc.hint}}
    except (ValueError, KeyError, TypeError) as exc:
        return {"ok": False, "error": {"kind": "bad_request", "message": repr(exc),
                                       "hint": None}}


async def _dispatch(table: RoutingTable, request: dict[str, Any]) -> Any:
    op = request.get("op")
    if op == "set_backends":
        await table.set_backends(str(request["service"]), str(request["listen"]),
                                 list(request["backends"]), timeouts=request.get("timeouts"),
                                 tls=request.get("tls"))
        return None
    if op == "remove_service":
        table.remove_service(str(request["service"]))
        return None
    if op in ("shutdown", "ping"):
        return {"pid": os.getpid()}
    service = table.services.get(str(request.get("service")))
    if op == "backends":
        return service.backends_json() if service else []
    if op == "in_flight":
        return service.in_flight() if service else {}
    if op == "stats":
        return {r: c.to_json() for r, c in service.stats.items()} if service else {}
    raise ControlError("unknown_op", f"unknown control operation {op!r}")
