"""The router's control socket: one JSON object per line, each way, over a unix socket.

Request:  {"op": "set_backends", "service": "web", "listen": "127.0.0.1:8080",
           "backends": [{"address": "127.0.0.1:9001", "weight": 3, "release": "v7",
                         "instance": "web-7-a"}],
           "timeouts": {"connect": 3, ...},               (optional, see services.Timeouts)
           "tls": {"cert": "/abs/cert.pem", "key": "/abs/key.pem"}}          (optional)
Reply:    {"ok": true, "result": ...}  or
          {"ok": false, "error": {"kind": "address_in_use", "message": "...", "hint": "..."}}
Ops: ping, set_backends(service, listen, backends), backends(service), in_flight(service),
stats(service), remove_service(service), shutdown. A connection may carry many requests.
A change returns once every worker applied it; reads add up all workers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from typing import Any

from corral.routers.builtin.supervisor import Supervisor
from corral.routers.builtin.table import ControlError

log = logging.getLogger("corral.router")
MAX_LINE = 4 << 20


class ControlServer:
    def __init__(self, supervisor: Supervisor, shutdown: asyncio.Event) -> None:
        self._supervisor = supervisor
        self._shutdown = shutdown

    async def start(self, path: str) -> asyncio.Server:
        server = await asyncio.start_unix_server(self._handle, path, limit=MAX_LINE)
        os.chmod(path, 0o600)
        return server

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                reply = await self._reply(line)
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, OSError, ValueError):
            pass  # a client that hangs up mid-conversation is not the router's problem
        finally:
            writer.close()

    async def _reply(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ControlError("bad_request", "a control request is a JSON object")
            return {"ok": True, "result": await self._dispatch(request)}
        except ControlError as exc:
            return {"ok": False, "error": {"kind": exc.kind, "message": exc.message,
                                           "hint": exc.hint}}
        except (ValueError, KeyError, TypeError) as exc:
            return {"ok": False, "error": {"kind": "bad_request", "message": repr(exc),
                                           "hint": None}}

    async def _dispatch(self, request: dict[str, Any]) -> Any:
        op = request.get("op")
        supervisor = self._supervisor
        if op == "ping":
            return supervisor.status()
        if op == "set_backends":
            await supervisor.set_backends({
                "op": "set_backends", "service": str(request["service"]),
                "listen": str(request["listen"]), "backends": list(request["backends"]),
                "timeouts": request.get("timeouts"), "tls": request.get("tls")})
            log.info("service %s on %s: %s", request["service"], request["listen"],
                     request["backends"])
            return None
        if op == "remove_service":
            await supervisor.remove_service(str(request["service"]))
            return None
        if op == "shutdown":
            self._shutdown.set()
            return None
        if op in ("backends", "in_flight", "stats"):
            return await supervisor.read(op, str(request.get("service")))
        raise ControlError("unknown_op", f"unknown control operation {op!r}")


def call(path: str, request: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
    """Send one request and return the raw reply (blocking; used by the controller side).

    Raises OSError if nothing answers on `path`.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(json.dumps(request).encode() + b"\n")
        buf = bytearray()
        while not buf.endswith(b"\n"):
            part = sock.recv(65536)
            if not part:
                raise ConnectionError(f"router closed the control socket {path} mid-reply")
            buf += part
    reply = json.loads(buf)
    if not isinstance(reply, dict):
        raise ConnectionError(f"router sent a malformed reply on {path}")
    return reply
