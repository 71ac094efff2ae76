"""Health probes for many instances without a thread per probe: http and tcp checks run on
one asyncio loop in one thread, each http check over a kept-alive connection to its instance
(a fresh one only when the instance closed the last); exec checks, a process each anyway, run
on a small pool. A probe's result goes to the caller's callback; nothing here decides what
a result means (health.py and core.health do).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

import httptools
import uvloop

from corral.ports.driver import Driver
from corral.ports.records import Instance
from corral.spec.model import HealthSpec

log = logging.getLogger(__name__)

Done = Callable[[str | None], None]  # None: passed; else what went wrong
ExecCheck = Callable[[Driver, Instance, tuple[str, ...], float], str | None]
Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]
_ERRORS = (OSError, TimeoutError, EOFError, httptools.HttpParserError)


class _Answer:
    """httptools callbacks: whether the head and the whole answer have come, and whether
    the connection may be kept (asked while the parser still holds the answer's flags)."""

    def __init__(self) -> None:
        self.head = self.done = self.keep = False
        self.parser = httptools.HttpResponseParser(self)

    def on_headers_complete(self) -> None:
        self.head = True

    def on_message_complete(self) -> None:
        self.done = True
        self.keep = self.parser.should_keep_alive()


async def exchange(connection: Connection, request: bytes) -> tuple[int, bool]:
    """Send `request`, read one answer: (status, whether the connection may be kept)."""
    reader, writer = connection
    writer.write(request)
    answer = _Answer()
    while not answer.done:
        data = await reader.read(65536)
        if not data:
            if answer.head:  # a body that ends with the connection
                return answer.parser.get_status_code(), False
            raise EOFError("the connection closed before an answer")
        answer.parser.feed_data(data)
    return answer.parser.get_status_code(), answer.keep


class Prober:
    """Runs probes on its own thread (started at the first probe); `submit` is thread-safe."""

    def __init__(self, driver: Driver, check_exec: ExecCheck, exec_workers: int = 4) -> None:
        self._driver = driver
        self._check_exec = check_exec
        self._exec = ThreadPoolExecutor(max_workers=exec_workers,
                                        thread_name_prefix="health-exec")
        self._loop = uvloop.new_event_loop()  # its transports cost a fraction of asyncio's
        self._thread = threading.Thread(target=self._run, name="health-probes", daemon=True)
        self._lock = threading.Lock()
        self._kept: dict[str, Connection] = {}  # address -> an idle kept-alive connection
        self._tasks: set[asyncio.Task[None]] = set()  # referenced until done: none is lost

    def submit(self, instance: Instance, health: HealthSpec, done: Done) -> None:
        if health.kind == "exec":
            self._exec.submit(self._exec_probe, instance, health, done)
            return
        with self._lock:
            if not self._thread.is_alive():
                self._thread.start()
        self._loop.call_soon_threadsafe(self._start, instance.address, health, done)

    def keep_only(self, addresses: Iterable[str]) -> None:
        """Close kept connections to addresses no longer checked (instances gone)."""
        wanted = set(addresses)
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._forget_others, wanted)

    def stop(self, timeout: float = 5.0) -> None:
        self._exec.shutdown(wait=False, cancel_futures=True)
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_forever()
        finally:
            self._forget_others(set())

    def _forget_others(self, wanted: set[str]) -> None:
        for address in [a for a in self._kept if a not in wanted]:
            self._kept.pop(address)[1].close()

    def _start(self, address: str, health: HealthSpec, done: Done) -> None:
        task = self._loop.create_task(self._probe(address, health, done))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _exec_probe(self, instance: Instance, health: HealthSpec, done: Done) -> None:
        _report(done, self._check_exec(self._driver, instance, health.command, health.timeout))

    async def _probe(self, address: str, health: HealthSpec, done: Done) -> None:
        try:
            if health.kind == "tcp":
                error = await _tcp(address, health.timeout)
            else:
                error = await self._http(address, health.path, health.timeout)
        except Exception as exc:  # a result must come back whatever happened
            log.exception("health probe of %s failed", address)
            error = f"probe failed: {exc.__class__.__name__}: {exc}"
        _report(done, error)

    async def _http(self, address: str, path: str, timeout: float) -> str | None:
        host, _, port = address.rpartition(":")
        request = (f"GET {path} HTTP/1.1\r\nHost: {address}\r\nUser-Agent: corral-health\r\n"
                   "\r\n").encode()
        for attempt in range(2):
            connection = self._kept.pop(address, None)
            reused = connection is not None
            try:
                async with asyncio.timeout(timeout):
                    if connection is None:
                        connection = await asyncio.open_connection(host.strip("[]"), int(port))
                    status, keep = await exchange(connection, request)
            except _ERRORS as exc:
                if connection is not None:
                    connection[1].close()
                if reused and attempt == 0 and not isinstance(exc, TimeoutError):
                    continue  # the instance closed the kept connection meanwhile: a fresh one
                return f"GET {path}: {exc.__class__.__name__}: {exc}".rstrip(": ")
            if keep:
                self._kept[address] = connection
            else:
                connection[1].close()
            return None if 200 <= status < 400 else f"GET {path} answered {status}"
        return None  # not reached: the second attempt always returns


async def _tcp(address: str, timeout: float) -> str | None:
    host, _, port = address.rpartition(":")
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(host.strip("[]"), int(port))
    except (OSError, TimeoutError) as exc:
        return f"connect {address}: {exc.__class__.__name__}: {exc}".rstrip(": ")
    writer.close()
    return None


def _report(done: Done, error: str | None) -> None:
    try:
        done(error)
    except Exception:  # the probe thread must outlive a failing callback
        log.exception("recording a health check result failed")
