"""The log collector: tails every instance's stdout and stderr files into the log store.

Each tick reads the complete new lines of every watched file and stores them with the file
cursors in one write, so a restart neither loses nor repeats a line. When an instance leaves
the watch list (stopped, failed) its files are read to the very end, through the descriptor
already open (the driver moves the files, it does not copy them), then closed; one listed
for a single pass (it ended at once) is read the same way. It never decides which
instances run; it is told (`watched`).

The files of a long-lived instance would grow without end, so once what is stored passes
KEEP_ON_DISK, the part of a file already stored (all but its last KEEP_ON_DISK bytes) is
freed by punching a hole in it: the file keeps its size and offsets, its disk use stays
bounded, and no line that is not in the store yet is ever touched.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from corral.engine.loop import WALL, BackgroundLoop, Timer
from corral.ports.logs import Cursor, LogLine, LogSink, LogSource, LogStore

log = logging.getLogger(__name__)

STREAMS = ("stdout", "stderr")
READ_LIMIT = 8 << 20  # bytes read from one file per tick, so one chatty app cannot stall all
MAX_LINE = 64 << 10  # longer lines are cut into pieces of this size
KEEP_ON_DISK = 8 << 20  # stored bytes of a file kept on disk before they are freed
FREE_STEP = 4 << 20  # free in steps of at least this much (and of whole 4 KiB blocks)
MISSING_GRACE = 2.0  # seconds a gone instance's missing file is looked for before giving up


@dataclass(frozen=True)
class Watched:
    """An instance whose files the collector must read."""

    source: LogSource
    ended_at: float | None = None  # set for an instance that already ended (a backlog)


PathsOf = Callable[[str], tuple[Path, Path]]
"""Where an instance's (stdout, stderr) files are now (the driver's log_paths)."""


@dataclass
class _Tail:
    source: LogSource
    stream: str
    file: BinaryIO | None
    offset: int
    ended_at: float | None
    partial: bytes = b""
    gone_since: float | None = None
    freed: int = 0  # the file's first `freed` bytes are a hole (stored, then released)


@dataclass
class _Batch:
    lines: list[LogLine] = field(default_factory=list)
    cursors: list[Cursor] = field(default_factory=list)


def parse_fields(message: str) -> dict[str, Any] | None:
    """The fields of a JSON-object log line, else None.

    >>> parse_fields('{"level": "error", "msg": "boom"}')
    {'level': 'error', 'msg': 'boom'}
    >>> parse_fields('plain text') is None, parse_fields('[1, 2]') is None
    (True, True)
    """
    text = message.strip()
    if not (text.startswith("{") and text.endswith("}")):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


class LogCollector:
    """Reads the files of `watched()` every `interval` seconds (up to `idle_interval` while
    nothing new comes) into `store` (a controller Loop).

    `settle` is how long an instance that left the watch list is still read before its
    final drain, for a process that writes while it is being stopped.
    """

    def __init__(self, store: LogStore, watched: Callable[[], Sequence[Watched]],
                 paths_of: PathsOf, clock: Callable[[], float], *, interval: float = 0.2,
                 settle: float = 1.0,
                 backlog: Callable[[], Sequence[Watched]] | None = None,
                 sinks: Sequence[LogSink] = (),
                 on_tick: Callable[[], None] | None = None, timer: Timer = WALL,
                 idle_interval: float | None = None, keep_on_disk: int = KEEP_ON_DISK,
                 free_step: int = FREE_STEP) -> None:
        self.store = store
        self._watched = watched
        self._paths_of = paths_of
        self._backlog = backlog
        self._clock = clock
        self._interval = interval
        # Files with nothing new are read less often, up to every `idle_interval` (5 times
        # `interval` by default); any new line brings the pace back to `interval`.
        self._idle_interval = interval * 5 if idle_interval is None else idle_interval
        self._pause = interval
        self._settle = settle
        self._sinks = list(sinks)
        self._on_tick = on_tick
        self._timer = timer
        self._tails: dict[tuple[str, str], _Tail] = {}
        self._keep_on_disk, self._free_step = keep_on_disk, free_step
        self._loop: BackgroundLoop | None = None
        self.lines_stored = 0
        self.ship_failures = 0

    # -- Loop ---------------------------------------------------------------------------
    def start(self) -> None:
        self._loop = BackgroundLoop("log-collector", self._pass, self._interval,
                                    timer=self._timer, what="log collection",
                                    immediately=True)
        self._loop.start()

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.stop(timeout=30)
        self.tick()  # the last lines written before the stop
        for tail in self._tails.values():
            if tail.file is not None:
                tail.file.close()
        self._tails.clear()

    def _pass(self) -> float:
        """The first pass drains the backlog; every later one reads what is new. An error
        (a bad file, a full disk) is logged by the loop and retried at the next pass.
        Returns the pause before the next pass: doubled after a pass that read nothing."""
        if self._backlog is not None:
            backlog, self._backlog = self._backlog, None
            self.drain(backlog())
            stored = 1
        else:
            stored = self.tick()
        if self._on_tick is not None:
            self._on_tick()
        self._pause = self._interval if stored else min(self._pause * 2, self._idle_interval)
        return self._pause

    # -- one pass ------------------------------------------------------------------------
    def tick(self) -> int:
        """Read what is new in every watched file; returns the lines stored."""
        now = self._clock()
        current = {w.source.instance: w for w in self._watched()}
        for watched in current.values():
            for stream in STREAMS:
                if (watched.source.instance, stream) not in self._tails:
                    self._open(watched, stream)
        batch = _Batch()
        for key, tail in list(self._tails.items()):
            if tail.source.instance not in current and tail.gone_since is None:
                tail.gone_since = now
            final = tail.gone_since is not None and now - tail.gone_since >= self._settle
            self._read(tail, batch, now, final=final)
            # A file not found may be in the middle of a move (the driver retiring the
            # instance): look again for a while before calling it done unread.
            if final and (tail.file is not None
                          or now - (tail.gone_since or now) >= self._settle + MISSING_GRACE):
                self._close(key, tail, batch)
        return self._store(batch)

    def drain(self, ended: Sequence[Watched]) -> int:
        """Read instances that already ended to the end of their files (a controller that
        was away when they stopped), timestamping their lines with their end."""
        batch = _Batch()
        for watched in ended:
            for stream in STREAMS:
                key = (watched.source.instance, stream)
                if key in self._tails:
                    continue
                tail = self._open(watched, stream)
                if tail is not None:
                    self._read(tail, batch, watched.ended_at or self._clock(), final=True)
                    self._close(key, tail, batch)
        return self._store(batch)

    def _open(self, watched: Watched, stream: str) -> _Tail | None:
        source = watched.source
        cursor = self.store.cursor(source.instance, stream)
        if cursor is not None and cursor.done:
            return None
        tail = _Tail(source, stream, None, cursor.offset if cursor else 0, watched.ended_at)
        self._tails[(source.instance, stream)] = tail
        return tail

    def _reopen(self, tail: _Tail) -> None:
        """Open the file if it exists by now; the driver may be moving it, so look twice."""
        for _ in range(2):
            path = self._paths_of(tail.source.instance)[STREAMS.index(tail.stream)]
            try:
                tail.file = open(path, "rb")  # noqa: SIM115 (kept open across ticks)
            except FileNotFoundError:
                continue
            tail.file.seek(tail.offset)
            return

    def _read(self, tail: _Tail, batch: _Batch, now: float, *, final: bool) -> None:
        if tail.file is None:
            self._reopen(tail)
            if tail.file is None:
                return
        data = tail.partial + tail.file.read(-1 if final else READ_LIMIT)
        pieces = data.split(b"\n")
        tail.partial = b"" if final else pieces.pop()
        if final and pieces and pieces[-1] == b"":
            pieces.pop()
        at = min(now, tail.ended_at) if tail.ended_at else now
        source, stream, lines = tail.source, tail.stream, batch.lines
        for raw in pieces:  # the hot loop of ingest: checks inlined before calls
            for chunk in (raw,) if len(raw) <= MAX_LINE else _cut(raw):
                message = chunk.decode("utf-8", "replace")
                if message.endswith("\r"):
                    message = message[:-1]
                fields = parse_fields(message) if message[:1] == "{" else None
                lines.append(LogLine(at, source, stream, message, fields))
        tail.offset = tail.file.tell() - len(tail.partial)
        if pieces or final:
            batch.cursors.append(Cursor(tail.source.instance, tail.stream, tail.offset, final))

    def _close(self, key: tuple[str, str], tail: _Tail, batch: _Batch) -> None:
        if tail.file is not None:
            tail.file.close()
        else:
            batch.cursors.append(Cursor(tail.source.instance, tail.stream, tail.offset, True))
        del self._tails[key]

    def _store(self, batch: _Batch) -> int:
        if not batch.lines and not batch.cursors:
            return 0
        self.store.append(batch.lines, batch.cursors)
        self.lines_stored += len(batch.lines)
        for tail in self._tails.values():  # only now: what is freed is in the store
            if tail.file is not None:
                self._free_stored(tail)
        for sink in self._sinks:
            try:
                sink.ship(batch.lines)
            except Exception as exc:  # a copy elsewhere may fail; the store has the lines
                self.ship_failures += 1
                log.warning("log shipping failed (%d lines): %s", len(batch.lines), exc)
        return len(batch.lines)


    def _free_stored(self, tail: _Tail) -> None:
        upto = (tail.offset - self._keep_on_disk) // 4096 * 4096
        if tail.file is None or upto - tail.freed < self._free_step:
            return
        try:
            punch_hole(Path(f"/proc/self/fd/{tail.file.fileno()}"), tail.freed,
                       upto - tail.freed)
        except OSError as exc:  # a file system without holes: the file just keeps growing
            log.debug("cannot free the stored part of %s: %s", tail.file.name, exc)
            tail.freed = upto  # no retry every tick
            return
        tail.freed = upto


_libc = ctypes.CDLL(None, use_errno=True)
_libc.fallocate.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64)
_PUNCH_HOLE = 0x01 | 0x02  # FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE


def punch_hole(path: Path, offset: int, length: int) -> None:
    """Free the disk blocks of `length` bytes of `path` from `offset`; they read as zeros,
    and the file's size does not change (fallocate(2) PUNCH_HOLE)."""
    fd = os.open(path, os.O_WRONLY)
    try:
        if _libc.fallocate(fd, _PUNCH_HOLE, offset, length) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, os.strerror(errno), str(path))
    finally:
        os.close(fd)


def _cut(raw: bytes) -> list[bytes]:
    if len(raw) <= MAX_LINE:
        return [raw]
    return [raw[i:i + MAX_LINE] for i in range(0, len(raw), MAX_LINE)]
