"""Health probes for many instances without a thread per probe: http and tcp checks run as
small state machines over non-blocking sockets on one thread's epoll, each http check over a
kept-alive connection to its instance when the instance keeps it (a fresh one only when it
closed the last); exec checks, a process each anyway, run on a small pool. A probe's result
goes to the caller's callback; nothing here decides what a result means (health.py and
core.health do).

Why not asyncio streams: at rest most of the controller's CPU was spent here, 60 probes a
second against apps (busybox httpd) that close every connection, and a task, a stream
reader and writer, a transport and a timeout context per probe cost more than the TCP
exchange itself. Here a probe is one object, its request bytes are made once per address,
the thread sleeps in epoll until a socket, a new probe or the nearest timeout needs it, and
probes submitted together wake it once.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import socket
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httptools

from corral.engine.loop import name_os_thread
from corral.ports.driver import Driver
from corral.ports.records import Instance
from corral.spec.model import HealthSpec

log = logging.getLogger(__name__)

Done = Callable[[str | None], None]  # None: passed; else what went wrong
ExecCheck = Callable[[Driver, Instance, tuple[str, ...], float], str | None]
SockAddr = tuple[int, tuple[Any, ...]]  # (family, address as socket.connect takes it)
_READ = select.EPOLLIN | select.EPOLLRDHUP
_WRITE = select.EPOLLOUT
_CONNECTING = (errno.EINPROGRESS, errno.EAGAIN)


def sockaddr_of(address: str) -> SockAddr:
    """(family, socket address) of "host:port" ("[v6]:port" too), resolved by the system
    resolver (numeric hosts are not looked up). Raises OSError (socket.gaierror) if the
    name does not resolve."""
    host, _, port = address.rpartition(":")
    family, _, _, _, found = socket.getaddrinfo(host.strip("[]"), int(port),
                                                type=socket.SOCK_STREAM)[0]
    return family, found


def is_numeric(address: str) -> bool:
    """Whether `address`'s host is an IP literal (resolving it asks no resolver)."""
    host = address.rpartition(":")[0].strip("[]")
    try:
        socket.getaddrinfo(host, None, flags=socket.AI_NUMERICHOST)
    except OSError:
        return False
    return True


def described(what: str, exc: BaseException) -> str:
    """The words of a failed probe, as the one-shot checks (health.py) say them."""
    return f"{what}: {exc.__class__.__name__}: {exc}".rstrip(": ")


class _Probe:
    """One http or tcp check in flight: its socket, where the exchange is, its deadline.

    http: connect (or take the kept connection), send the request, feed the answer to
    httptools until it is whole; tcp: connect, let go. `step` runs on each socket event.
    """

    __slots__ = ("address", "deadline", "done", "head", "keep", "over", "parser", "path",
                 "prober", "request", "reused", "sock", "target", "whole")

    def __init__(self, prober: Prober, address: str, target: SockAddr, health: HealthSpec,
                 done: Done) -> None:
        self.prober = prober
        self.address = address
        self.target = target
        self.path = health.path if health.kind == "http" else None  # None: a tcp check
        self.request = prober.request_of(address, health.path) if self.path else b""
        self.done = done
        self.deadline = time.monotonic() + health.timeout
        self.sock: socket.socket | None = None
        self.reused = self.head = self.whole = self.keep = self.over = False
        self.parser: httptools.HttpResponseParser | None = None

    # -- httptools callbacks ---------------------------------------------------------
    def on_headers_complete(self) -> None:
        self.head = True

    def on_message_complete(self) -> None:
        self.whole = True
        assert self.parser is not None  # asked while the parser holds the answer's flags
        self.keep = self.parser.should_keep_alive()

    # -- the exchange ----------------------------------------------------------------
    def begin(self) -> None:
        kept = self.prober.take_kept(self.address) if self.path else None
        if kept is not None:
            self.reused = True
            self._send(kept)
            return
        sock = socket.socket(self.target[0], socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
        self.sock = sock
        code = sock.connect_ex(self.target[1])
        if code == 0 or code in _CONNECTING:
            # On loopback the handshake is over when connect returns: go on at once (one
            # wake and two epoll changes fewer a probe); else `_go_on` waits until writable.
            self._go_on()
        else:
            self._failed(OSError(code, os.strerror(code)))

    def step(self) -> None:
        """The socket is ready: connected (or refused), or an answer's bytes have come."""
        assert self.sock is not None
        if self.parser is None:  # connecting
            code = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                self._failed(OSError(code, os.strerror(code)))
            else:
                self._go_on()
            return
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError as exc:
            self._failed(exc)
            return
        if not data:
            if self.head:  # a body that ends with the connection
                self._answered(False)
            else:
                self._failed(EOFError("the connection closed before an answer"))
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._failed(exc)
            return
        if self.whole:
            self._answered(self.keep)

    def expire(self) -> None:
        self._failed(TimeoutError())

    def _go_on(self) -> None:
        """Connected, or maybe still connecting: an http check sends its request, a tcp
        check is over; if the connection is not made yet, wait until it is."""
        assert self.sock is not None
        if self.path is not None:
            self._send(self.sock)
            return
        code = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            self._failed(OSError(code, os.strerror(code)))
            return
        try:
            self.sock.getpeername()
        except OSError:  # not connected yet
            self.prober.watch(self, _WRITE)
            return
        self._finish(None, keep=False)

    def _send(self, sock: socket.socket) -> None:
        self.sock = sock
        try:  # a few dozen bytes: the socket's buffer takes them whole
            sock.send(self.request)
        except (BlockingIOError, InterruptedError):  # still connecting
            self.prober.watch(self, _WRITE)
            return
        except OSError as exc:
            if exc.errno == errno.ENOTCONN:
                self.prober.watch(self, _WRITE)
            else:
                self._failed(exc)
            return
        self.parser = httptools.HttpResponseParser(self)
        self.prober.watch(self, _READ)

    def _answered(self, keep: bool) -> None:
        assert self.parser is not None
        status = self.parser.get_status_code()
        error = None if 200 <= status < 400 else f"GET {self.path} answered {status}"
        self._finish(error, keep)

    def _failed(self, exc: BaseException) -> None:
        if self.reused and not isinstance(exc, TimeoutError):
            # The instance closed the kept connection meanwhile: once more, on a fresh one.
            self.prober.unwatch(self, close=True)
            self.reused = False
            self.parser = None
            self.head = self.whole = False
            self.begin()
            return
        what = f"GET {self.path}" if self.path else f"connect {self.address}"
        self._finish(described(what, exc), keep=False)

    def _finish(self, error: str | None, keep: bool) -> None:
        if self.over:
            return
        self.over = True
        self.prober.unwatch(self, close=not keep)
        if error is not None:  # a name may resolve elsewhere now: look it up again
            self.prober.forget_target(self.address)
        if keep and self.sock is not None:
            self.prober.keep(self.address, self.sock)
        _report(self.done, error)


class Prober:
    """Runs probes on its own thread (started at the first probe); `submit` is thread-safe."""

    def __init__(self, driver: Driver, check_exec: ExecCheck, exec_workers: int = 4) -> None:
        self._driver = driver
        self._check_exec = check_exec
        self._exec = ThreadPoolExecutor(max_workers=exec_workers,
                                        thread_name_prefix="health-exec")
        self._epoll = select.epoll()
        self._wakeup = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._epoll.register(self._wakeup, select.EPOLLIN)
        self._thread = threading.Thread(target=self._run, name="health-probes", daemon=True)
        self._lock = threading.Lock()  # guards the three below, handed from other threads
        self._incoming: list[tuple[str, SockAddr, HealthSpec, Done]] = []
        self._wanted: set[str] | None = None  # keep_only's last word, not yet applied
        self._stopping = False
        # Only the probe thread touches these:
        self._open: dict[int, _Probe] = {}  # fd -> probe waiting on it
        self._kept: dict[str, socket.socket] = {}  # address -> an idle kept-alive connection
        self._requests: dict[tuple[str, str], bytes] = {}
        self._targets: dict[str, SockAddr] = {}  # address -> resolved socket address

    def submit(self, instance: Instance, health: HealthSpec, done: Done) -> None:
        if health.kind == "exec":
            self._exec.submit(self._exec_probe, instance, health, done)
            return
        target = self._targets.get(instance.address)
        if target is None and not is_numeric(instance.address):
            # A host name: resolved off the probe thread, so a slow resolver stalls no probe.
            self._exec.submit(self._resolve_then_probe, instance.address, health, done)
            return
        self._enqueue(instance.address, target or sockaddr_of(instance.address), health, done)

    def keep_only(self, addresses: Iterable[str]) -> None:
        """Close kept connections to addresses no longer checked (instances gone)."""
        with self._lock:
            self._wanted = set(addresses)
        if self._thread.is_alive():
            os.eventfd_write(self._wakeup, 1)

    def stop(self, timeout: float = 5.0) -> None:
        self._exec.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            self._stopping = True
        if self._thread.is_alive():
            os.eventfd_write(self._wakeup, 1)
            self._thread.join(timeout)
        if not self._thread.is_alive():
            self._epoll.close()
            os.close(self._wakeup)

    # -- called by probes, on the probe thread -----------------------------------------
    def request_of(self, address: str, path: str) -> bytes:
        request = self._requests.get((address, path))
        if request is None:
            request = (f"GET {path} HTTP/1.1\r\nHost: {address}\r\n"
                       "User-Agent: corral-health\r\n\r\n").encode()
            self._requests[(address, path)] = request
        return request

    def take_kept(self, address: str) -> socket.socket | None:
        return self._kept.pop(address, None)

    def keep(self, address: str, sock: socket.socket) -> None:
        self._kept[address] = sock

    def forget_target(self, address: str) -> None:
        self._targets.pop(address, None)

    def watch(self, probe: _Probe, events: int) -> None:
        assert probe.sock is not None
        fd = probe.sock.fileno()
        if fd in self._open:
            self._epoll.modify(fd, events)
        else:
            self._epoll.register(fd, events)
        self._open[fd] = probe

    def unwatch(self, probe: _Probe, close: bool) -> None:
        if probe.sock is None:
            return
        fd = probe.sock.fileno()
        if self._open.pop(fd, None) is not None and not close:
            self._epoll.unregister(fd)  # (closing the socket leaves the epoll by itself)
        if close:
            probe.sock.close()
            probe.sock = None

    # -- the probe thread --------------------------------------------------------------
    def _enqueue(self, address: str, target: SockAddr, health: HealthSpec,
                 done: Done) -> None:
        with self._lock:
            if self._stopping:
                return  # nobody waits for results any more
            self._incoming.append((address, target, health, done))
            first = len(self._incoming) == 1
            if not self._thread.is_alive():
                self._thread.start()
                name_os_thread(self._thread)
        if first:  # the thread takes every probe queued by then: one wake for a batch
            os.eventfd_write(self._wakeup, 1)

    def _run(self) -> None:
        try:
            while self._turn():
                pass
        except Exception:  # pragma: no cover - a bug: say so; the monitor sees no results
            log.exception("the health probe thread failed")
        finally:
            for probe in list(self._open.values()):
                self.unwatch(probe, close=True)
            for sock in self._kept.values():
                sock.close()
            self._kept.clear()

    def _turn(self) -> bool:
        """Wait for sockets, new probes or the nearest deadline, and handle them; False
        once stopping."""
        events = self._epoll.poll(self._timeout())
        for fd, _ in events:
            if fd == self._wakeup:
                if not self._take_incoming():
                    return False
                continue
            probe = self._open.get(fd)
            if probe is not None:
                self._guarded(probe, probe.step)
        self._expire()
        return True

    def _timeout(self) -> float:
        """Seconds until the nearest deadline of a probe in flight; -1 (no limit) if none."""
        if not self._open:
            return -1
        nearest = min(probe.deadline for probe in self._open.values())
        return max(0.0, nearest - time.monotonic())

    def _take_incoming(self) -> bool:
        with contextlib.suppress(BlockingIOError):
            os.eventfd_read(self._wakeup)
        with self._lock:
            incoming, self._incoming = self._incoming, []
            wanted, self._wanted = self._wanted, None
            stopping = self._stopping
        if stopping:
            return False
        if wanted is not None:
            self._forget_others(wanted)
        for address, target, health, done in incoming:
            self._targets[address] = target
            probe = _Probe(self, address, target, health, done)
            self._guarded(probe, probe.begin)
        return True

    def _expire(self) -> None:
        if not self._open:
            return
        now = time.monotonic()
        for probe in [p for p in self._open.values() if p.deadline <= now]:
            self._guarded(probe, probe.expire)

    def _guarded(self, probe: _Probe, act: Callable[[], None]) -> None:
        """Run one step of a probe; whatever goes wrong, its result comes back."""
        try:
            act()
        except Exception as exc:
            log.exception("health probe of %s failed", probe.address)
            self.unwatch(probe, close=True)
            if not probe.over:
                probe.over = True
                _report(probe.done, f"probe failed: {exc.__class__.__name__}: {exc}")

    def _forget_others(self, wanted: set[str]) -> None:
        for address in [a for a in self._kept if a not in wanted]:
            self._kept.pop(address).close()
        self._targets = {a: t for a, t in self._targets.items() if a in wanted}
        self._requests = {k: r for k, r in self._requests.items() if k[0] in wanted}

    def _exec_probe(self, instance: Instance, health: HealthSpec, done: Done) -> None:
        _report(done, self._check_exec(self._driver, instance, health.command, health.timeout))

    def _resolve_then_probe(self, address: str, health: HealthSpec, done: Done) -> None:
        try:
            target = sockaddr_of(address)
        except (OSError, ValueError) as exc:
            what = f"GET {health.path}" if health.kind == "http" else f"connect {address}"
            _report(done, described(what, exc))
            return
        self._enqueue(address, target, health, done)


def _report(done: Done, error: str | None) -> None:
    try:
        done(error)
    except Exception:  # the probe thread must outlive a failing callback
        log.exception("recording a health check result failed")
