"""Canary analysis: compare the canary's router stats with the stable fleet's, over a window.

Pure arithmetic over `ReleaseStats` snapshots: the window's numbers are the difference of
two cumulative reads. A verdict is never silent: too little traffic waits up to a deadline
and then fails or passes as the policy says, and the reason names the numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from corral.ports.records import ReleaseStats

Result = Literal["pass", "fail", "wait"]


@dataclass(frozen=True)
class AnalysisPolicy:
    max_error_rate: float  # 0.01 = 1% of requests (5xx and failed connections)
    max_p99_latency: float  # seconds
    min_requests: int  # canary requests needed in a window before any verdict
    insufficient_traffic: Literal["fail", "pass"]  # what the deadline does with thin traffic
    deadline: float  # seconds a window may wait for min_requests


@dataclass(frozen=True)
class Verdict:
    result: Result
    reason: str
    numbers: dict[str, float | int | None]


def stats_delta(now: ReleaseStats, base: ReleaseStats | None) -> ReleaseStats:
    """What happened between two cumulative reads (a router restart resets: take `now`)."""
    if base is None or now.requests < base.requests:
        return now
    before = dict(base.latency_buckets)
    return ReleaseStats(
        requests=now.requests - base.requests, errors=now.errors - base.errors,
        failed_connections=now.failed_connections - base.failed_connections,
        latency_buckets=tuple((b, c - before.get(b, 0)) for b, c in now.latency_buckets),
        latency_sum=now.latency_sum - base.latency_sum)


def error_rate(stats: ReleaseStats) -> float:
    """Share of requests that failed: 5xx answers plus failed connections.

    >>> error_rate(ReleaseStats(requests=200, errors=3, failed_connections=1))
    0.02
    """
    if stats.requests == 0:
        return 0.0
    return (stats.errors + stats.failed_connections) / stats.requests


def p99(stats: ReleaseStats) -> float | None:
    """The 99th percentile latency from the cumulative histogram, interpolated linearly
    inside its bucket as Prometheus' histogram_quantile does; None without requests.

    Worked example: 100 requests, 98 under 0.1s and 2 between 0.1s and 0.25s: the 99th
    request is halfway into the (0.1, 0.25] bucket, so p99 = 0.175s.

    >>> p99(ReleaseStats(requests=100, latency_buckets=((0.1, 98), (0.25, 100), (math.inf, 100))))
    0.175
    """
    total = stats.latency_buckets[-1][1] if stats.latency_buckets else 0
    if total <= 0:
        return None
    rank = 0.99 * total
    lower, below = 0.0, 0
    for bound, count in stats.latency_buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower  # beyond the last finite bucket: its bound is all we know
            inside = count - below
            return round(lower + (bound - lower) * (rank - below) / inside, 6) if inside else bound
        lower, below = bound, count
    return lower


def stats_numbers(canary: ReleaseStats, stable: ReleaseStats) -> dict[str, Any]:
    return {"requests": canary.requests, "errors": canary.errors,
            "failed_connections": canary.failed_connections,
            "error_rate": round(error_rate(canary), 5), "p99": p99(canary),
            "stable_requests": stable.requests, "stable_error_rate": round(error_rate(stable), 5),
            "stable_p99": p99(stable)}


def analyse(policy: AnalysisPolicy, canary: ReleaseStats, stable: ReleaseStats,
            waited: float) -> Verdict:
    """The verdict on one window of `waited` seconds.

    The canary fails when it is over a limit *and* worse than the stable fleet over the same
    window: errors the stable fleet shows too are not the canary's doing.

    >>> policy = AnalysisPolicy(0.01, 0.5, 100, "fail", 60)
    >>> analyse(policy, ReleaseStats(requests=40), ReleaseStats(requests=400), 10).result
    'wait'
    >>> analyse(policy, ReleaseStats(requests=40), ReleaseStats(requests=400), 60).reason
    'insufficient traffic: 40 of 100 requests within 60s'
    >>> bad = ReleaseStats(requests=200, errors=40)
    >>> analyse(policy, bad, ReleaseStats(requests=900), 10).reason
    'error rate 20.00% > 1.00% (stable 0.00%)'
    """
    numbers = stats_numbers(canary, stable)
    if canary.requests < policy.min_requests:
        thin = (f"insufficient traffic: {canary.requests} of {policy.min_requests} requests"
                f" within {policy.deadline:g}s")
        if waited < policy.deadline:
            return Verdict("wait", thin.replace("within", "after").replace(
                f"{policy.deadline:g}s", f"{waited:.0f}s"), numbers)
        return Verdict(policy.insufficient_traffic, thin, numbers)
    rate, stable_rate = error_rate(canary), error_rate(stable)
    if rate > policy.max_error_rate and rate > stable_rate:
        return Verdict("fail", f"error rate {rate:.2%} > {policy.max_error_rate:.2%} "
                               f"(stable {stable_rate:.2%})", numbers)
    latency, stable_latency = p99(canary), p99(stable)
    if latency is not None and latency > policy.max_p99_latency and (
            stable_latency is None or latency > stable_latency):
        return Verdict("fail", f"p99 latency {latency * 1000:.0f}ms > "
                               f"{policy.max_p99_latency * 1000:.0f}ms", numbers)
    return Verdict("pass", f"error rate {rate:.2%}, p99 "
                           f"{'-' if latency is None else f'{latency * 1000:.0f}ms'} "
                           f"over {canary.requests} requests", numbers)


def stats_to_json(stats: ReleaseStats) -> dict[str, Any]:
    return {"requests": stats.requests, "errors": stats.errors,
            "failed_connections": stats.failed_connections, "latency_sum": stats.latency_sum,
            "latency_buckets": [["+Inf" if math.isinf(b) else b, c]
                                for b, c in stats.latency_buckets]}


def stats_from_json(data: dict[str, Any]) -> ReleaseStats:
    return ReleaseStats(
        requests=int(data["requests"]), errors=int(data["errors"]),
        failed_connections=int(data["failed_connections"]),
        latency_sum=float(data["latency_sum"]),
        latency_buckets=tuple((math.inf if b == "+Inf" else float(b), int(c))
                              for b, c in data["latency_buckets"]))
