"""The client connection as a Request and an Exchange see it: what they read of it and
what they ask of it (write, pause its body, answer, close, hand it back).

A Protocol, so request.py and exchange.py depend on this contract and not on proxy.py,
whose ClientConnection implements it and creates them. No behaviour here.
"""

from __future__ import annotations

from typing import Any, Protocol

from corral.routers.builtin.services import Service, Timeouts


class Downstream(Protocol):
    service: Service
    timeouts: Timeouts
    loop: Any
    scheme: bytes
    client_ip: bytes
    closing: bool  # finish the current request, then close
    tunnel_early: bytes  # bytes after an upgrade request, before the backend's 101

    def write(self, data: bytes) -> None: ...
    def pause_body(self, paused: bool) -> None: ...
    def answer(self, status: int, detail: str, request_id: bytes, *, close: bool,
               head_only: bool = False) -> None: ...
    def exchange_done(self, keep: bool) -> None: ...
    def start_tunnel(self) -> None: ...
    def touch_tunnel(self) -> None: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...
