"""Per-release request counters and latency histograms kept by the router process.

Counts what the router saw; it never resets on configuration changes (only when a service
is removed) so the controller can diff two reads. Buckets are Prometheus' defaults.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Any

from corral.ports.records import ReleaseStats

# Prometheus client default buckets; +Inf is implicit and reported last.
BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75,
                              1.0, 2.5, 5.0, 7.5, 10.0)


@dataclass
class ReleaseCounters:
    """Mutable counters for one release of one service."""

    requests: int = 0
    errors: int = 0
    failed_connections: int = 0
    latency_sum: float = 0.0
    # per-bucket (non-cumulative) counts; the extra last slot is +Inf
    bucket_counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))

    def observe(self, status: int, seconds: float, *, failed_connection: bool = False) -> None:
        self.requests += 1
        if failed_connection:
            self.failed_connections += 1
        elif status >= 500:
            self.errors += 1
        self.latency_sum += seconds
        self.bucket_counts[bisect_left(BUCKETS, seconds)] += 1

    def to_json(self) -> dict[str, Any]:
        cumulative: list[list[Any]] = []
        running = 0
        for bound, count in zip((*BUCKETS, math.inf), self.bucket_counts, strict=True):
            running += count
            cumulative.append(["+Inf" if math.isinf(bound) else bound, running])
        return {"requests": self.requests, "errors": self.errors,
                "failed_connections": self.failed_connections,
                "latency_buckets": cumulative, "latency_sum": self.latency_sum}


def release_stats_from_json(data: dict[str, Any]) -> ReleaseStats:
    """The port record from the JSON the control socket carries."""
    buckets = tuple((math.inf if bound == "+Inf" else float(bound), int(count))
                    for bound, count in data.get("latency_buckets", ()))
    return ReleaseStats(requests=int(data["requests"]), errors=int(data["errors"]),
                        failed_connections=int(data["failed_connections"]),
                        latency_buckets=buckets, latency_sum=float(data["latency_sum"]))


def merge_stats_json(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Add up per-release stats JSON from several workers (same buckets everywhere)."""
    total: dict[str, dict[str, Any]] = {}
    for part in parts:
        for release, data in part.items():
            into = total.get(release)
            if into is None:
                total[release] = {**data, "latency_buckets": [list(b) for b in
                                                              data["latency_buckets"]]}
                continue
            for key in ("requests", "errors", "failed_connections", "latency_sum"):
                into[key] += data[key]
            for mine, theirs in zip(into["latency_buckets"], data["latency_buckets"],
                                    strict=True):
                mine[1] += theirs[1]
    return total
