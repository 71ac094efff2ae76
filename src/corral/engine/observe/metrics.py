"""The controller's Prometheus metrics, computed at scrape time from what already exists.

Router stats give requests, errors and latency per service and release; the fleets give
instances by state; the deployments table gives deployments by strategy and outcome; the
ledger (read incrementally, from the last entry seen) gives rollbacks, drift, replacements
and builds (the CLI records an `image.build` entry per build that changed what an image name
points at; a no-change rebuild writes nothing, so it is not counted). Nothing is counted
twice and nothing is kept that the store does not already hold. Serving is MetricsServer's job.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from corral.engine.fleet import Fleets
from corral.ports.records import Event, Usage
from corral.ports.router import Router
from corral.ports.store import Store

log = logging.getLogger(__name__)

BUILD_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, math.inf)


class LedgerCounts:
    """Counters folded from ledger entries, one pass per new entry.

    >>> counts = LedgerCounts()
    >>> counts.fold([Event(at=1, actor="a", action="deployment.rolled_back", subject="web",
    ...                    seq=1)])
    >>> counts.rollbacks["web"], counts.last_seq
    (1, 1)
    """

    def __init__(self) -> None:
        self.last_seq = 0
        self.rollbacks: Counter[str] = Counter()
        self.drift: Counter[str] = Counter()
        self.replacements: Counter[tuple[str, str]] = Counter()
        self.builds: Counter[tuple[str, str]] = Counter()  # (image, "true"/"false" cached)
        self.build_seconds: dict[str, list[float]] = {}

    def fold(self, events: list[Event]) -> None:
        for event in events:
            self.last_seq = max(self.last_seq, event.seq)
            service = event.subject.split("/", 1)[0]
            detail = event.detail
            if event.action == "deployment.rolled_back" or event.action.startswith("rollback"):
                self.rollbacks[service] += 1
            if event.action.startswith("drift") or detail.get("cause") == "drift":
                self.drift[service] += 1
            if event.action == "reconcile.replace":
                self.replacements[(service, str(detail.get("cause", "unknown")))] += 1
            if event.action == "image.build":
                image = str(detail.get("image", event.subject))
                self.builds[(image, "true" if detail.get("cached") else "false")] += 1
                self.build_seconds.setdefault(image, []).append(float(detail.get("seconds", 0)))


class CorralCollector:
    """A prometheus_client collector over the controller's ports (register it once)."""

    def __init__(self, store: Store, router: Router | None, fleets: Fleets,
                 log_counts: Callable[[], dict[str, int]] | None = None,
                 usage: Callable[[str], Usage | None] | None = None) -> None:
        self._store = store
        self._usage = usage  # the driver's, when it can measure instances
        self._router = router
        self._fleets = fleets
        self._log_counts = log_counts
        self._ledger = LedgerCounts()
        self._guard = threading.Lock()

    def collect(self) -> Iterator[Metric]:
        with self._guard:
            self._ledger.fold(self._store.events(since_seq=self._ledger.last_seq))
            yield from self._router_metrics()
            yield from self._state_metrics()
            yield from self._usage_metrics()
            yield from self._ledger_metrics()

    def _router_metrics(self) -> Iterator[Metric]:
        labels = ["service", "release"]
        requests = CounterMetricFamily("corral_requests", "Requests the router answered",
                                       labels=labels)
        errors = CounterMetricFamily("corral_request_errors",
                                     "5xx answers and failed connections", labels=labels)
        latency = HistogramMetricFamily("corral_request_duration_seconds",
                                        "Time from request to answer, at the router",
                                        labels=labels)
        if self._router is not None:
            for service in self._store.services():
                try:
                    stats = self._router.stats(service)
                except Exception as exc:  # a scrape must not fail because the router is away
                    log.debug("no router stats for %s: %s", service, exc)
                    continue
                for release, seen in sorted(stats.items()):
                    values = [service, release]
                    requests.add_metric(values, seen.requests)
                    errors.add_metric(values, seen.errors + seen.failed_connections)
                    buckets = [("+Inf" if math.isinf(le) else _bound(le), count)
                               for le, count in seen.latency_buckets]
                    if buckets and buckets[-1][0] != "+Inf":
                        buckets.append(("+Inf", seen.requests))
                    if buckets:
                        latency.add_metric(values, buckets, seen.latency_sum)
        yield from (requests, errors, latency)

    def _state_metrics(self) -> Iterator[Metric]:
        instances = GaugeMetricFamily("corral_instances", "Live instances by state",
                                      labels=["service", "release", "state"])
        counted = Counter((i.service, f"v{i.release}", i.state.value) for i in self._fleets.all())
        for (service, release, state), number in sorted(counted.items()):
            instances.add_metric([service, release, state], number)
        deployments = CounterMetricFamily("corral_deployments", "Deployments by outcome",
                                          labels=["service", "strategy", "outcome"])
        by_kind = Counter((d.service, d.strategy, d.outcome.value)
                          for d in self._store.list_deployments())
        for (service, strategy, outcome), number in sorted(by_kind.items()):
            deployments.add_metric([service, strategy, outcome], number)
        yield from (instances, deployments)

    def _usage_metrics(self) -> Iterator[Metric]:
        """Each live instance's use against its limits (cgroups), labelled by release."""
        if self._usage is None:
            return
        labels = ["service", "release", "instance"]
        families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {
            "memory": GaugeMetricFamily("corral_instance_memory_bytes",
                                        "Memory an instance uses (page cache excluded)",
                                        labels=labels),
            "memory_limit": GaugeMetricFamily("corral_instance_memory_limit_bytes",
                                              "An instance's hard memory limit", labels=labels),
            "cpu_seconds": CounterMetricFamily("corral_instance_cpu_seconds",
                                               "CPU time an instance used", labels=labels),
            "cpus": GaugeMetricFamily("corral_instance_cpu_limit_cores",
                                      "An instance's CPU limit in cores", labels=labels),
            "pids": GaugeMetricFamily("corral_instance_pids",
                                      "Processes and threads of an instance", labels=labels),
        }
        for instance in sorted(self._fleets.all(), key=lambda i: i.id):
            usage = self._usage(instance.id) if instance.state.is_live else None
            if usage is None:
                continue
            values = [instance.service, f"v{instance.release}", instance.id]
            for field, family in families.items():
                value = getattr(usage, field)
                if value is not None:
                    family.add_metric(values, value)
        yield from families.values()

    def _ledger_metrics(self) -> Iterator[Metric]:
        counts = self._ledger
        yield _counter("corral_rollbacks", "Deployments rolled back", ["service"],
                       {(k,): v for k, v in counts.rollbacks.items()})
        yield _counter("corral_drift_events", "Instances found drifted", ["service"],
                       {(k,): v for k, v in counts.drift.items()})
        yield _counter("corral_replacements", "Instances replaced by the reconciler",
                       ["service", "cause"], counts.replacements)
        yield _counter("corral_builds", "Image builds that changed the image a name points "
                       "at (cached: that image already existed); no-change rebuilds are not "
                       "counted", ["image", "cached"], counts.builds)
        durations = HistogramMetricFamily("corral_build_duration_seconds",
                                          "Wall time of image builds", labels=["image"])
        for image, seconds in sorted(counts.build_seconds.items()):
            buckets = [("+Inf" if math.isinf(b) else _bound(b), sum(s <= b for s in seconds))
                       for b in BUILD_BUCKETS]
            durations.add_metric([image], buckets, sum(seconds))
        yield durations
        entries = GaugeMetricFamily("corral_ledger_entries", "Entries in the ledger")
        entries.add_metric([], counts.last_seq)
        yield entries
        if self._log_counts is not None:
            for name, value in sorted(self._log_counts().items()):
                yield _counter(f"corral_{name}", f"Log collector: {name}", [], {(): value})


def _counter(name: str, doc: str, labels: list[str],
             values: Mapping[Any, int]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=labels)
    for key, value in sorted(values.items()):
        family.add_metric(list(key), value)
    return family


def _bound(value: float) -> str:
    return repr(float(value))


def metrics_registry(collector: Any) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def metrics_text(registry: CollectorRegistry) -> tuple[str, bytes]:
    """(content type, body) of a scrape, for the API's raw /metrics route."""
    return CONTENT_TYPE_LATEST, generate_latest(registry)
