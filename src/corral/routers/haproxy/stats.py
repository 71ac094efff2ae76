"""Per-release stats from HAProxy's per-server `show stat` counters.

HAProxy keeps counters per server, not per release, and no latency histogram at all: only
`ttime`, the average total time of the server's last 1024 requests. So each read adds the
requests a slot served since the previous read to its release, and puts them all in the
histogram bucket of that slot's current `ttime` (an approximation, see docs/router.md).
Counters restart at 0 when HAProxy reloads; a raw value below the last one seen means that.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any

from corral.routers.builtin.stats import BUCKETS, ReleaseCounters

_RESPONSES = ("hrsp_1xx", "hrsp_2xx", "hrsp_3xx", "hrsp_4xx", "hrsp_5xx", "hrsp_other")


def _int(row: dict[str, str], key: str) -> int:
    value = row.get(key) or "0"
    return int(value) if value.isdigit() else 0


def raw_counters(row: dict[str, str]) -> dict[str, int]:
    """The counters of one server row that stats are made of.

    >>> raw_counters({"hrsp_2xx": "7", "hrsp_5xx": "1", "econ": "2", "eresp": "", "ttime": "3"})
    {'requests': 8, 'errors': 1, 'failed_connections': 2, 'ttime_ms': 3}
    """
    return {"requests": sum(_int(row, k) for k in _RESPONSES),
            "errors": _int(row, "hrsp_5xx"),
            "failed_connections": _int(row, "econ") + _int(row, "eresp"),
            "ttime_ms": _int(row, "ttime")}


def add_delta(counters: ReleaseCounters, now: dict[str, int], seen: dict[str, int]) -> None:
    """Add what a slot served between two reads (`seen`, then `now`) to its release."""
    def delta(key: str) -> int:
        before = seen.get(key, 0)
        return now[key] - before if now[key] >= before else now[key]  # a reload reset it

    requests = delta("requests")
    counters.requests += requests
    counters.errors += delta("errors")
    counters.failed_connections += delta("failed_connections")
    if requests:
        seconds = now["ttime_ms"] / 1000
        counters.latency_sum += requests * seconds
        counters.bucket_counts[bisect_left(BUCKETS, seconds)] += requests


def counters_from_json(data: dict[str, Any]) -> ReleaseCounters:
    return ReleaseCounters(requests=data["requests"], errors=data["errors"],
                           failed_connections=data["failed_connections"],
                           latency_sum=data["latency_sum"],
                           bucket_counts=list(data["bucket_counts"]))


def counters_to_json(counters: ReleaseCounters) -> dict[str, Any]:
    return {"requests": counters.requests, "errors": counters.errors,
            "failed_connections": counters.failed_connections,
            "latency_sum": counters.latency_sum, "bucket_counts": counters.bucket_counts}
