"""Per-release counters of the builtin router and their trip through the control socket."""

from __future__ import annotations

import json
import math

from corral.routers.builtin.stats import BUCKETS, ReleaseCounters, release_stats_from_json


def test_latency_buckets_are_cumulative_and_end_with_infinity() -> None:
    counters = ReleaseCounters()
    for seconds in (0.001, 0.02, 0.02, 3.0, 42.0):
        counters.observe(200, seconds)
    stats = release_stats_from_json(json.loads(json.dumps(counters.to_json())))
    buckets = dict(stats.latency_buckets)
    assert [b for b, _ in stats.latency_buckets] == [*BUCKETS, math.inf]
    assert buckets[0.005] == 1 and buckets[0.025] == 3 and buckets[5.0] == 4
    assert buckets[math.inf] == 5 == stats.requests
    assert math.isclose(stats.latency_sum, 45.041)


def test_a_bound_counts_observations_equal_to_it() -> None:
    counters = ReleaseCounters()
    counters.observe(200, 0.1)
    assert dict(release_stats_from_json(counters.to_json()).latency_buckets)[0.1] == 1


def test_errors_and_failed_connections_are_counted_apart() -> None:
    counters = ReleaseCounters()
    counters.observe(200, 0.01)
    counters.observe(500, 0.01)
    counters.observe(502, 0.01, failed_connection=True)
    stats = release_stats_from_json(counters.to_json())
    assert (stats.requests, stats.errors, stats.failed_connections) == (3, 1, 1)
