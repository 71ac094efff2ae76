"""The router's supervisor: N worker processes, the desired routing, and the state file.

A change goes to every worker and returns only once every worker applied it; if one refuses,
the others are put back as they were, so all workers always route alike. Reads add up the
workers' counters. A worker that dies is restarted and given the whole routing again. A
restored service that cannot listen stays in the state file and is retried, never dropped.
The supervisor claims each listen address before its workers bind it (routers/listen.py),
so SO_REUSEPORT shares a port among this router's workers only, never with another router.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any

from corral.routers.builtin.stats import merge_stats_json
from corral.routers.builtin.table import ControlError, parse_listen
from corral.routers.listen import ListenClaims

log = logging.getLogger("corral.router")
RETRY_BIND_SECONDS = 2.0
CALL_TIMEOUT = 30.0


class WorkerLink:
    """One worker process and the socket its supervisor drives it through."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()

    async def spawn(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "corral.routers.builtin", "--worker-fd", str(theirs.fileno()),
            pass_fds=(theirs.fileno(),), stdin=asyncio.subprocess.DEVNULL)
        theirs.close()
        self._reader, self._writer = await asyncio.open_unix_connection(sock=ours,
                                                                        limit=4 << 20)

    async def call(self, request: dict[str, Any]) -> Any:
        """The worker's result; raises ControlError when it refuses or does not answer."""
        async with self._lock:
            if self._writer is None or self._reader is None:
                raise ControlError("worker_down", f"router worker {self.index} is not running")
            try:
                self._writer.write(json.dumps(request).encode() + b"\n")
                async with asyncio.timeout(CALL_TIMEOUT):
                    await self._writer.drain()
                    line = await self._reader.readline()
            except (OSError, TimeoutError) as exc:
                raise ControlError("worker_down", f"router worker {self.index}: {exc}") from exc
        if not line:
            raise ControlError("worker_down", f"router worker {self.index} went away")
        reply = json.loads(line)
        if reply.get("ok"):
            return reply.get("result")
        error = reply.get("error") or {}
        raise ControlError(str(error.get("kind")), str(error.get("message")), error.get("hint"))

    def forget(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


class Supervisor:
    def __init__(self, state_path: Path, workers: int) -> None:
        self.state_path = state_path
        self.links = [WorkerLink(i) for i in range(max(1, workers))]
        self.desired: dict[str, dict[str, Any]] = {}  # service -> its set_backends request
        self.unbound: set[str] = set()  # restored, but could not listen yet
        self.claims = ListenClaims()
        self._lock = asyncio.Lock()
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self.desired = self._load_state()
        for name, request in self.desired.items():
            try:
                self._claim(name, str(request["listen"]))
            except ControlError as exc:
                self.unbound.add(name)
                log.error("cannot restore service %s: %s", name, exc.message)
        await asyncio.gather(*(link.spawn() for link in self.links))
        for link in self.links:
            await self._replay(link)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._watch(link)) for link in self.links]
        self._tasks.append(loop.create_task(self._retry_unbound()))

    async def _replay(self, link: WorkerLink) -> None:
        for name, request in self.desired.items():
            if str(request["listen"]) not in self.claims.held():
                continue  # not ours yet: _retry_unbound claims it first
            try:
                await link.call(request)
                self.unbound.discard(name)
            except ControlError as exc:
                self.unbound.add(name)
                log.error("cannot restore service %s on worker %d: %s", name, link.index,
                          exc.message)

    # changes
    async def set_backends(self, request: dict[str, Any]) -> None:
        name = str(request["service"])
        async with self._lock:
            self._claim(name, str(request["listen"]))
            try:
                await self._everywhere(request, undo=self.desired.get(name)
                                       or {"op": "remove_service", "service": name})
            except ControlError:
                self.claims.keep_only(self._served_addresses())  # what still serves, no more
                raise
            self.desired[name] = request
            self.unbound.discard(name)
            self.claims.keep_only(self._served_addresses())
            self._save_state()

    async def remove_service(self, name: str) -> None:
        async with self._lock:
            await self._everywhere({"op": "remove_service", "service": name}, undo=None)
            self.desired.pop(name, None)
            self.unbound.discard(name)
            self.claims.keep_only(self._served_addresses())
            self._save_state()

    def _claim(self, name: str, listen: str) -> None:
        """Make `listen` this router's before a worker binds it; raises ControlError naming
        who has it when another router or program does."""
        parse_listen(listen)
        for other, request in self.desired.items():
            if other != name and request["listen"] == listen:
                raise ControlError("address_in_use",
                                   f"{listen} is already the listen address of service {other}",
                                   hint=f"give service {name} its own router.listen address")
        holder = self.claims.take(listen)
        if holder is not None:
            raise ControlError(
                "address_in_use", f"{listen} is already in use by {holder}",
                hint=f"each router needs its own listen address: set another router.listen "
                     f"for service {name}, or stop what listens on {listen}")

    def _served_addresses(self) -> set[str]:
        return {str(r["listen"]) for n, r in self.desired.items() if n not in self.unbound}

    async def _everywhere(self, request: dict[str, Any], undo: dict[str, Any] | None) -> None:
        results = await asyncio.gather(*(link.call(request) for link in self.links),
                                       return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        if not failures:
            return
        if undo is not None:  # all workers route alike: put back the ones that applied it
            for link, result in zip(self.links, results, strict=True):
                if not isinstance(result, BaseException):
                    try:
                        await link.call(undo)
                    except ControlError as exc:
                        log.error("worker %d: cannot undo a refused change: %s", link.index,
                                  exc.message)
        first = failures[0]
        if isinstance(first, ControlError):
            raise first
        raise ControlError("worker_down", f"a router worker failed: {first!r}")

    # reads
    async def read(self, op: str, service: str) -> Any:
        results = await asyncio.gather(*(link.call({"op": op, "service": service})
                                         for link in self.links))
        if op == "backends":
            entry = self.desired.get(service)
            return entry["backends"] if entry else results[0]
        if op == "in_flight":
            total: dict[str, int] = {}
            for counts in results:
                for address, n in counts.items():
                    total[address] = total.get(address, 0) + int(n)
            return total
        return merge_stats_json(results)

    def status(self) -> dict[str, Any]:
        """`listen`: the address each service is served on now (not one that was refused)."""
        return {"pid": os.getpid(), "services": sorted(self.desired),
                "workers": [link.process.pid if link.process else None for link in self.links],
                "unbound": sorted(self.unbound),
                "listen": {n: r["listen"] for n, r in sorted(self.desired.items())
                           if n not in self.unbound}}

    # worker lives
    async def _watch(self, link: WorkerLink) -> None:
        while not self._stopping:
            assert link.process is not None
            code = await link.process.wait()
            link.forget()
            if self._stopping:
                return
            log.error("router worker %d (pid %d) exited with %s; restarting it", link.index,
                      link.process.pid, code)
            await asyncio.sleep(0.2)
            async with self._lock:
                await link.spawn()
                await self._replay(link)

    async def _retry_unbound(self) -> None:
        while not self._stopping:
            await asyncio.sleep(RETRY_BIND_SECONDS)
            for name in sorted(self.unbound):
                request = self.desired.get(name)
                if request is None:
                    self.unbound.discard(name)
                    continue
                async with self._lock:
                    try:
                        self._claim(name, str(request["listen"]))
                        await self._everywhere(request, undo=None)
                        self.unbound.discard(name)
                        log.info("service %s now listens on %s", name, request["listen"])
                    except ControlError:
                        self.claims.keep_only(self._served_addresses())  # still taken

    async def shutdown(self) -> None:
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*(link.call({"op": "shutdown"}) for link in self.links),
                             return_exceptions=True)
        for link in self.links:
            if link.process is not None:
                try:
                    async with asyncio.timeout(15):
                        await link.process.wait()
                except TimeoutError:
                    link.process.kill()
            link.forget()

    # the state file
    def _save_state(self) -> None:
        state = {"services": {name: {k: v for k, v in request.items() if k != "op"}
                              for name, request in sorted(self.desired.items())}}
        tmp = self.state_path.with_name(self.state_path.name + ".tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(state, f, indent=2, sort_keys=True)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.state_path)
        except OSError as exc:
            # The change is live; only a restart would lose it. Say so loudly, keep serving.
            log.error("cannot write state file %s: %s", self.state_path, exc)

    def _load_state(self) -> dict[str, dict[str, Any]]:
        try:
            state = json.loads(self.state_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.error("ignoring unreadable state file %s: %s", self.state_path, exc)
            return {}
        desired = {}
        for name, entry in state.get("services", {}).items():
            if isinstance(entry, dict) and "listen" in entry and "backends" in entry:
                desired[name] = {**entry, "op": "set_backends", "service": name}
        return desired
