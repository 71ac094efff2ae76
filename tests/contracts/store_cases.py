"""Records the store contract suites write: events, releases, instances, deployments."""

from __future__ import annotations

from corral.ports.records import Deployment, Event, Instance, InstanceState
from corral.ports.store import DeploymentStore, ReleaseStore


def event(action: str = "test", subject: str = "web", at: float = 100.0,
          **detail: object) -> Event:
    return Event(at=at, actor="tester", action=action, subject=subject, detail=dict(detail))


def add(store: ReleaseStore, service: str = "web", image: str = "sha256:aaa",
        config: str = "sha256:c1", at: float = 100.0) -> int:
    return store.add_release(service, image, config, {"replicas": 1}, at,
                             event("release.created", service)).version


def instance(id: str, state: InstanceState = InstanceState.READY, service: str = "web",
             created_at: float = 100.0) -> Instance:
    return Instance(id=id, service=service, release=1, image_digest="sha256:aaa",
                    address="127.0.0.1:9000", state=state, created_at=created_at)


def deploy(store: DeploymentStore, service: str = "web", started_at: float = 100.0) -> Deployment:
    return store.create_deployment(service, "rolling", 1, 2, 3, started_at,
                                   event("deployment.started", service))


