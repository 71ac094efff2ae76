"""Reading central logs: `corral logs` and the API, straight from .corral/logs.db.

No controller is needed to read (instances that are gone are still there); following polls
the store for lines stored after the last one shown. It validates user filters and turns
them into a LogQuery; it never writes.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from corral.engine.adapters import log_store
from corral.errors import CorralError
from corral.ports.logs import LogLine, LogQuery, LogStore
from corral.spec.duration import parse_duration

LOGS_DB = "logs.db"


def open_log_store(state_dir: Path) -> LogStore:
    return log_store(state_dir / LOGS_DB)


def parse_since(since: str | None, now: float) -> float | None:
    """Unix time from "10m", "2h", "7d" before `now` (None stays None).

    >>> parse_since("10m", 1000.0), parse_since(None, 1.0)
    (400.0, None)
    """
    if since is None:
        return None
    try:
        return now - parse_duration(since)
    except ValueError:
        raise CorralError(f"--since {since!r} is not a duration",
                          hint='write it like "30s", "10m", "2h" or "7d"') from None


def parse_release(release: str | None) -> int | None:
    """7 from "v7" or "7"."""
    if release is None:
        return None
    match = re.fullmatch(r"v?(\d+)", release.strip())
    if not match:
        raise CorralError(f"--release {release!r} is not a release", hint='write it like "v7"')
    return int(match.group(1))


def log_query(service: str | None = None, *, release: str | None = None,
              instance: str | None = None, since: str | None = None, grep: str | None = None,
              stream: str | None = None, limit: int = 100, now: float | None = None) -> LogQuery:
    """A LogQuery from command-line style filters; raises CorralError on a bad one."""
    if grep is not None:
        try:
            re.compile(grep)
        except re.error as exc:
            raise CorralError(f"--grep {grep!r} is not a regular expression: {exc}",
                              hint="it is a Python regular expression, e.g. 'error|timeout'"
                              ) from None
    if stream not in (None, "stdout", "stderr"):
        raise CorralError(f"stream {stream!r} is neither stdout nor stderr")
    return LogQuery(service=service, release=parse_release(release), instance=instance,
                    stream=stream, since=parse_since(since, now or time.time()), grep=grep,
                    limit=max(0, limit))


def follow(store: LogStore, query: LogQuery, *, interval: float = 0.5,
           stop: Callable[[], bool] = lambda: False) -> Iterator[LogLine]:
    """The matching lines already stored (query.limit newest), then each new one as it is
    stored, until `stop()` is true."""
    last = store.last_id()
    if query.limit:
        yield from store.query(query)
    following = LogQuery(**{**asdict(query), "since": None, "limit": 1000, "after_id": last})
    while not stop():
        newest = store.last_id()  # read first: every line up to it is visible to the query
        lines = store.query(following)
        yield from lines
        if lines:
            following = LogQuery(**{**asdict(following), "after_id": lines[-1].id})
        else:
            following = LogQuery(**{**asdict(following),
                                    "after_id": max(following.after_id, newest)})
            time.sleep(interval)


def line_view(line: LogLine) -> dict[str, Any]:
    source = line.source
    return {"id": line.id, "at": line.at, "service": source.service,
            "release": f"v{source.release}", "instance": source.instance,
            "image": source.image_digest, "git_commit": source.git_commit,
            "stream": line.stream, "message": line.message, "fields": line.fields}
