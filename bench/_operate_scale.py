"""The control plane's scale figures for bench/operate.py: a reconcile sweep over 1,000
instances on the fake driver, and `corral plan` over 200 services on a SQLite store.
Each returns the median seconds of several runs; nothing here asserts a goal."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from corral.core.release import config_digest, release_config
from corral.drivers.fake import FakeDriver
from corral.engine.delivery.instances import Instances
from corral.engine.fleet import Fleets
from corral.engine.operate.changes import plan_workspace
from corral.engine.operate.reconcile import Reconciler
from corral.engine.workspace import Workspace
from corral.images.fake import FakeImageStore
from corral.ports.records import Event, Instance, InstanceState
from corral.ports.store import Store
from corral.routers.fake import FakeRouter
from corral.spec.model import ImageSpec, ServiceSpec
from corral.stores.memory import MemoryStore

DIGEST = "sha256:" + "ab" * 32


def _event(subject: str) -> Event:
    return Event(at=time.time(), actor="bench", action="bench", subject=subject)


def sweep_1000_instances(services: int = 100, replicas: int = 10, runs: int = 30,
                         store: Store | None = None) -> float:
    """Median seconds of one reconcile sweep; `store` (default in memory) holds the state."""
    store = store if store is not None else MemoryStore()
    router, driver, images = FakeRouter(), FakeDriver(), FakeImageStore()
    router.ensure_running()
    with tempfile.TemporaryDirectory() as tmp:
        digest = images.build("web", ImageSpec(entrypoint=("app",)), Path(tmp))
        fleets = Fleets(store, router, time.time, "bench")
        instances = Instances(driver, router, images, fleets, time.time, Path(tmp))
        for n in range(services):
            name = f"svc{n}"
            spec = ServiceSpec.model_validate({"image": digest, "replicas": replicas})
            config = release_config(spec, digest)
            release = store.add_release(name, digest, config_digest(config), config,
                                        time.time(), _event(name))
            store.set_live_release(name, release.version, _event(name))
            for _ in range(replicas):
                instance = instances.start(release)
                fleets.record_check(instance.id, True, None, 1, 3)
        reconciler = Reconciler(store, instances, "bench")
        assert reconciler.sweep().is_empty, "the steady state needs no action"
        times = []
        for _ in range(runs):
            began = time.perf_counter()
            reconciler.sweep()
            times.append(time.perf_counter() - began)
        return statistics.median(times)


def plan_200_services(services: int = 200, runs: int = 5) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        lines = ['[project]\nname = "scale"\n']
        for n in range(services):
            lines.append(f'[services.svc{n}]\nimage = "{DIGEST}"\nreplicas = 3\n'
                         f'env = {{ N = "{n}" }}\n')
        (folder / "corral.toml").write_text("\n".join(lines))
        ws = Workspace.open(folder / "corral.toml")
        store = ws.store
        for name, spec in ws.loaded.spec.services.items():
            config = release_config(spec, DIGEST)
            release = store.add_release(name, DIGEST, config_digest(config), config,
                                        time.time(), _event(name))
            store.set_live_release(name, release.version, _event(name))
            for k in range(3):
                store.put_instance(Instance(f"{name}-v1-{k}", name, 1, DIGEST,
                                            f"127.0.0.1:{20000 + k}", InstanceState.READY,
                                            time.time()))
        times = []
        for _ in range(runs):
            began = time.perf_counter()
            plan = plan_workspace(ws)
            times.append(time.perf_counter() - began)
        assert plan.count("~") == services * 3, "every instance is dead: none runs"
        store.close()
        return statistics.median(times)


if __name__ == "__main__":
    print(f"sweep over 1,000 instances: {sweep_1000_instances() * 1000:.1f} ms")
    print(f"plan over 200 services: {plan_200_services() * 1000:.0f} ms")
