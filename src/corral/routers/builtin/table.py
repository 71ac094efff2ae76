"""A router worker's routing table: services, their listeners, and the deadline sweep.

Each worker binds every listen address with SO_REUSEPORT, so the kernel spreads new
connections over the workers (its supervisor claimed the address first: no other router
joins). Every change is applied in memory in one synchronous step.
This holds no state file and never talks to the controller: the supervisor does both.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import ssl
from typing import Any

from corral.routers.builtin.proxy import ClientConnection
from corral.routers.builtin.services import Service, Timeouts
from corral.routers.listen import holder_of

log = logging.getLogger("corral.router")
SWEEP_SECONDS = 0.1


class ControlError(Exception):
    """A control request that cannot be applied; `kind` is stable for clients to match."""

    def __init__(self, kind: str, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.kind, self.message, self.hint = kind, message, hint


def parse_listen(listen: str) -> tuple[str, int]:
    """'127.0.0.1:8080' -> ('127.0.0.1', 8080); '[::1]:8080' and ':8080' (all) work too."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ControlError("invalid_listen", f"listen address {listen!r} is not HOST:PORT",
                           hint='write it like "127.0.0.1:8080"')
    return (host.strip("[]") or "0.0.0.0"), int(port)


def tls_context(tls: dict[str, str], service: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(tls["cert"], tls["key"])
    except (OSError, ssl.SSLError, KeyError) as exc:
        raise ControlError("bad_tls", f"cannot load the TLS certificate of service {service}: "
                                      f"{exc}",
                           hint="check router.tls.cert and router.tls.key (PEM files)") from exc
    return context


class RoutingTable:
    def __init__(self, timeouts: Timeouts | None = None, *, reuse_port: bool = True) -> None:
        self.timeouts = timeouts or Timeouts()
        self.reuse_port = reuse_port
        self.services: dict[str, Service] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._activity = asyncio.Event()  # a client connected: the sweep has work again

    async def set_backends(self, name: str, listen: str, backends: list[dict[str, Any]], *,
                           timeouts: dict[str, Any] | None = None,
                           tls: dict[str, str] | None = None) -> None:
        for b in backends:
            parse_listen(str(b["address"]))  # a backend address must be HOST:PORT too
        limits = Timeouts.from_json(timeouts) if timeouts else self.timeouts
        service = self.services.get(name)
        if service is None or service.listen != listen or service.tls != tls:
            self._check_listen_free(name, listen)
            server = await self._bind(name, listen, tls)
            if service is None:
                service = Service(name=name, listen=listen, activity=self._activity)
                self.services[name] = service
            elif service.server is not None:
                service.server.close()  # open connections keep going on the old socket
            service.server, service.listen, service.tls = server, listen, tls
        service.timeouts = limits
        service.apply(backends)
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    def _check_listen_free(self, name: str, listen: str) -> None:
        for other in self.services.values():
            if other.name != name and other.listen == listen:
                raise ControlError("address_in_use",
                                   f"{listen} is already the listen address of service "
                                   f"{other.name}",
                                   hint=f"give service {name} its own router.listen address")

    async def _bind(self, name: str, listen: str, tls: dict[str, str] | None) -> asyncio.Server:
        host, port = parse_listen(listen)
        context = tls_context(tls, name) if tls else None
        scheme = b"https" if context else b"http"
        loop = asyncio.get_running_loop()

        def accept() -> Any:
            service = self.services.get(name)
            if service is None or service.closed:  # removed while this connection queued
                return _Refuse()
            return ClientConnection(service, loop, scheme)

        try:
            return await loop.create_server(accept, host, port, backlog=1024,
                                            reuse_port=self.reuse_port, ssl=context)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ControlError(
                    "address_in_use", f"{listen} is already in use by {holder_of(listen)}",
                    hint=f"stop what listens on {listen} (see `ss -ltnp`) or set another "
                         f"router.listen for service {name}") from exc
            raise ControlError("cannot_listen", f"cannot listen on {listen}: {exc.strerror}",
                               hint="check the router.listen address of service "
                                    f"{name}") from exc

    def remove_service(self, name: str) -> None:
        service = self.services.pop(name, None)
        if service is None:
            return
        service.closed = True
        if service.server is not None:
            service.server.close()
        for client in list(service.clients):
            client.stop()
        for upstream in service.upstreams.values():
            upstream.close_idle()

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        ticks = 0
        while True:
            if not self._has_deadlines():
                # At rest no client and no pooled connection has a deadline: sleep until a
                # client connects rather than wake every worker 10 times a second.
                self._activity.clear()
                await self._activity.wait()
            await asyncio.sleep(SWEEP_SECONDS)
            now = loop.time()
            ticks += 1
            for service in list(self.services.values()):
                service.sweep(now)
                if ticks % 10 == 0:
                    service.expire_idle(now)

    def _has_deadlines(self) -> bool:
        return any(service.clients or any(u.idle for u in service.upstreams.values())
                   for service in self.services.values())

    async def shutdown(self, grace: float | None = None) -> None:
        """Stop accepting, let in-flight requests finish (up to the grace), then close."""
        services = list(self.services.values())
        for service in services:
            if service.server is not None:
                service.server.close()
            for client in list(service.clients):
                client.stop()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self.timeouts.shutdown_grace if grace is None else grace)
        while any(s.clients for s in services) and loop.time() < deadline:
            await asyncio.sleep(0.05)
        for service in services:
            for client in list(service.clients):
                client.abort()
            for upstream in service.upstreams.values():
                upstream.close_idle()
        if self._sweeper is not None:
            self._sweeper.cancel()


class _Refuse:
    """Protocol for a connection that arrives after its service was removed: close it."""

    def connection_made(self, transport: Any) -> None:
        transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        pass

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> bool:
        return False
