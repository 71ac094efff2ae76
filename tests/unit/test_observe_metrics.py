"""The controller's metrics, computed from the store, the fleets, the router and the ledger,
read back through prometheus_client's own parser."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from corral.engine.fleet import Fleets
from corral.engine.observe.metrics import CorralCollector, metrics_registry, metrics_text
from corral.ports.records import Event, Instance, InstanceState, ReleaseStats, Usage
from corral.stores import MemoryStore


class StatsRouter:
    def stats(self, service: str) -> dict[str, ReleaseStats]:
        return {"v1": ReleaseStats(requests=10, errors=1, failed_connections=1,
                                   latency_buckets=((0.1, 6), (1.0, 9), (float("inf"), 10)),
                                   latency_sum=2.5)}


def event(action: str, subject: str = "web", **detail: object) -> Event:
    return Event(at=1.0, actor="ann", action=action, subject=subject, detail=dict(detail))


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_a_scrape_reports_router_state_deployment_and_ledger_figures() -> None:
    store = MemoryStore()
    store.add_release("web", "sha256:a", "sha256:c", {}, 1.0, event("release.create"))
    deployment = store.create_deployment("web", "rolling", None, 1, 1, 1.0,
                                         event("deployment.start"))
    store.finish_deployment(deployment.id, "rolled back", 2.0, "boom",  # type: ignore[arg-type]
                            event("deployment.rolled_back", deployment=deployment.id))
    store.append_event(event("reconcile.replace", "web/web-2", cause="drift", replaces="web-1"))
    store.append_event(event("image.build", "web", image="web", seconds=3.0, cached=True))
    fleets = Fleets(store, None, lambda: 1.0, "ann")
    fleets.add(Instance("web-2", "web", 1, "sha256:a", "127.0.0.1:1", InstanceState.READY, 1.0))
    registry = metrics_registry(CorralCollector(store, StatsRouter(), fleets,  # type: ignore[arg-type]
                                                lambda: {"log_lines_stored": 42}))
    content_type, body = metrics_text(registry)
    got = samples(body)
    web_v1 = (("release", "v1"), ("service", "web"))
    assert content_type.startswith("text/plain")
    assert got[("corral_requests_total", web_v1)] == 10
    assert got[("corral_request_errors_total", web_v1)] == 2
    assert got[("corral_request_duration_seconds_bucket", (("le", "0.1"), *web_v1))] == 6
    assert got[("corral_request_duration_seconds_count", web_v1)] == 10
    assert got[("corral_instances", (("release", "v1"), ("service", "web"),
                                     ("state", "ready")))] == 1
    assert got[("corral_deployments_total", (("outcome", "rolled back"), ("service", "web"),
                                             ("strategy", "rolling")))] == 1
    assert got[("corral_rollbacks_total", (("service", "web"),))] == 1
    assert got[("corral_drift_events_total", (("service", "web"),))] == 1
    assert got[("corral_replacements_total", (("cause", "drift"), ("service", "web")))] == 1
    assert got[("corral_builds_total", (("cached", "true"), ("image", "web")))] == 1
    assert got[("corral_build_duration_seconds_sum", (("image", "web"),))] == 3.0
    assert got[("corral_log_lines_stored_total", ())] == 42
    store.append_event(event("deployment.rolled_back"))
    again = samples(metrics_text(registry)[1])  # the ledger is read on from where it stopped
    assert again[("corral_rollbacks_total", (("service", "web"),))] == 2


def test_a_scrape_reports_each_live_instance_use_against_its_limits() -> None:
    store = MemoryStore()
    fleets = Fleets(store, None, lambda: 1.0, "ann")
    fleets.add(Instance("web-2", "web", 3, "sha256:a", "127.0.0.1:1", InstanceState.READY, 1.0))
    fleets.add(Instance("web-9", "web", 3, "sha256:a", "127.0.0.1:2", InstanceState.READY, 1.0))
    measured = {"web-2": Usage(memory=30 << 20, memory_limit=64 << 20, cpu_seconds=1.5,
                               cpus=0.5, pids=4)}
    registry = metrics_registry(CorralCollector(store, None, fleets, usage=measured.get))

    got = samples(metrics_text(registry)[1])

    web_2 = (("instance", "web-2"), ("release", "v3"), ("service", "web"))
    assert got[("corral_instance_memory_bytes", web_2)] == 30 << 20
    assert got[("corral_instance_memory_limit_bytes", web_2)] == 64 << 20
    assert got[("corral_instance_cpu_seconds_total", web_2)] == 1.5
    assert got[("corral_instance_cpu_limit_cores", web_2)] == 0.5
    assert got[("corral_instance_pids", web_2)] == 4
    assert not any(("instance", "web-9") in labels for _, labels in got)
