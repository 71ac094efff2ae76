"""Copies each container's stdout and stderr from the engine into two files on this machine,
where corral's log collector reads them as it reads the process driver's (HasLogPaths).

One thread per running container and stream follows the engine's log stream until the
container ends. Each copied line's engine timestamp is remembered beside the file, so a
follower started again (a new controller re-adopting the container) skips what was copied.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

STREAMS = ("stdout", "stderr")


def stamp_key(stamp: str) -> tuple[str, str]:
    """An engine timestamp as a key that sorts in time order, whatever digits it kept.

    >>> stamp_key("2026-12-07T00:28:30.5Z") > stamp_key("2026-12-07T00:28:30.25Z")
    True
    """
    main, _, rest = stamp.rstrip("Z").partition(".")
    digits = len(rest) - len(rest.lstrip("0123456789"))
    return main, rest[:digits].ljust(9, "0")


class LogCopies:
    """The files of every container's streams under `folder`/ID/, and their followers."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._followers: dict[tuple[str, str], threading.Thread] = {}
        self._lock = threading.Lock()

    def paths(self, instance_id: str) -> tuple[Path, Path]:
        base = self.folder / instance_id
        return base / "stdout.log", base / "stderr.log"

    def follow(self, instance_id: str, open_stream: Callable[[str, int | None], Any]) -> None:
        """Copy both streams of the container in background threads, unless they already are.
        `open_stream(stream, since)` gives the engine's follow iterator of timestamped lines."""
        self.paths(instance_id)[0].parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            for stream in STREAMS:
                running = self._followers.get((instance_id, stream))
                if running is not None and running.is_alive():
                    continue
                thread = threading.Thread(target=self._copy, args=(instance_id, stream,
                                                                   open_stream),
                                          name=f"logs-{instance_id}-{stream}", daemon=True)
                self._followers[(instance_id, stream)] = thread
                thread.start()

    def wait(self, instance_id: str, timeout: float) -> None:
        """Give the followers of a stopped container up to `timeout` s to copy its last lines."""
        with self._lock:
            threads = [self._followers.pop((instance_id, s), None) for s in STREAMS]
        for thread in threads:
            if thread is not None:
                thread.join(timeout)

    def _copy(self, instance_id: str, stream: str,
              open_stream: Callable[[str, int | None], Any]) -> None:
        target = self.paths(instance_id)[STREAMS.index(stream)]
        mark = target.with_suffix(".since")
        last = mark.read_text().strip() if mark.exists() else ""
        since = _whole_seconds(last)
        try:
            with target.open("ab") as out:
                for stamp, line in _lines(open_stream(stream, since)):
                    if last and stamp_key(stamp) <= stamp_key(last):
                        continue  # copied by an earlier follower
                    out.write(line)
                    out.flush()
                    last = stamp
                    mark.write_text(stamp)
        except Exception as error:  # the engine went away: the next listing follows again
            log.debug("log copy of %s %s ended: %s", instance_id, stream, error)


def _whole_seconds(stamp: str) -> int | None:
    from corral.drivers.docker_engine import parse_time

    seconds = parse_time(stamp) if stamp else None
    return int(seconds) if seconds is not None else None


def _lines(chunks: Iterator[bytes]) -> Iterator[tuple[str, bytes]]:
    """(timestamp, line with its newline) from the engine's chunks, which may split lines."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        *whole, pending = pending.split(b"\n")
        for line in whole:
            stamp, _, text = line.partition(b" ")
            yield stamp.decode(errors="replace"), text + b"\n"
    if pending:
        stamp, _, text = pending.partition(b" ")
        yield stamp.decode(errors="replace"), text + b"\n"
    with contextlib.suppress(Exception):
        chunks.close()  # type: ignore[attr-defined]
