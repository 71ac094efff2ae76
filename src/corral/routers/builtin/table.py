"""The router process's routing table: services, their listeners, and the state file.

Every change is applied in memory in one step, then written to the state file (tmp + rename)
so a restarted router serves its last backends. This never talks to the controller: the
router must keep serving whether or not anything is driving it.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
from pathlib import Path
from typing import Any

from corral.routers.builtin.server import ClientSession
from corral.routers.builtin.services import Service, Timeouts

log = logging.getLogger("corral.router")


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


class RoutingTable:
    def __init__(self, state_path: Path, timeouts: Timeouts | None = None) -> None:
        self.state_path = state_path
        self.timeouts = timeouts or Timeouts()
        self.services: dict[str, Service] = {}

    async def set_backends(self, name: str, listen: str,
                           backends: list[dict[str, Any]]) -> None:
        for b in backends:
            parse_listen(str(b["address"]))  # a backend address must be HOST:PORT too
        service = self.services.get(name)
        if service is None or service.listen != listen:
            self._check_listen_free(name, listen)
            server = await self._bind(name, listen)
            if service is None:
                service = Service(name=name, listen=listen)
                self.services[name] = service
            elif service.server is not None:
                service.server.close()  # open connections keep going on the old socket
            service.server, service.listen = server, listen
        service.apply(backends)
        self.save_state()

    def _check_listen_free(self, name: str, listen: str) -> None:
        for other in self.services.values():
            if other.name != name and other.listen == listen:
                raise ControlError("address_in_use",
                                   f"{listen} is already the listen address of service "
                                   f"{other.name}",
                                   hint=f"give service {name} its own router.listen address")

    async def _bind(self, name: str, listen: str) -> asyncio.Server:
        host, port = parse_listen(listen)

        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            service = self.services.get(name)
            if service is None or service.closed:  # removed while this connection queued
                writer.close()
                return
            await ClientSession(service, self.timeouts, reader, writer).run()

        try:
            # One worker today; SO_REUSEPORT workers would each bind here with reuse_port=True.
            return await asyncio.start_server(accept, host, port, backlog=1024, limit=2**16)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ControlError(
                    "address_in_use", f"{listen} is already in use by another program",
                    hint=f"stop the program listening on {listen} (see `ss -ltnp`) or set "
                         f"another router.listen for service {name}") from exc
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
        for session in list(service.sessions):
            session.stop()
        for upstream in service.upstreams.values():
            upstream.close_idle()
        self.save_state()

    def save_state(self) -> None:
        try:
            self._write_state()
        except OSError as exc:
            # The change is live; only a restart would lose it. Say so loudly, keep serving.
            log.error("cannot write state file %s: %s", self.state_path, exc)

    def _write_state(self) -> None:
        state = {"services": {name: {"listen": s.listen, "backends": s.backends_json()}
                              for name, s in sorted(self.services.items())}}
        tmp = self.state_path.with_name(self.state_path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(state, f, indent=2, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.state_path)

    async def load_state(self) -> None:
        """Serve what the state file says; a service that cannot listen is logged, not fatal."""
        try:
            state = json.loads(self.state_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.error("ignoring unreadable state file %s: %s", self.state_path, exc)
            return
        for name, entry in state.get("services", {}).items():
            try:
                await self.set_backends(name, entry["listen"], entry["backends"])
                log.info("restored service %s on %s", name, entry["listen"])
            except (ControlError, KeyError, TypeError, ValueError) as exc:
                log.error("cannot restore service %s: %s", name, exc)

    def expire_idle(self) -> None:
        for service in self.services.values():
            service.expire_idle(self.timeouts.pool_idle)

    def total_in_flight(self) -> int:
        return sum(sum(s.in_flight().values()) for s in self.services.values())

    async def shutdown(self) -> None:
        """Stop accepting, let in-flight requests finish (up to the grace), then close."""
        services = list(self.services.values())
        for service in services:
            if service.server is not None:
                service.server.close()
            for session in list(service.sessions):
                session.stop()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeouts.shutdown_grace
        while any(s.sessions for s in services) and loop.time() < deadline:
            await asyncio.sleep(0.05)
        for service in services:
            for session in list(service.sessions):
                session.abort()
