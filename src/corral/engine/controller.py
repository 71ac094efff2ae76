"""The controller: the long-running control plane behind `corral up`.

At start it makes sure the router runs, re-adopts the instances an earlier controller
left running, and re-routes every service; then it checks health and runs deployments
on request. It never restarts an instance in place.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any, Protocol

from corral.core.reconcile import exit_reason
from corral.core.strategies import is_previewable
from corral.engine.delivery.deploy import Deployer, Emit
from corral.engine.delivery.instances import Instances
from corral.engine.delivery.request import DeployRequest
from corral.engine.fleet import Fleets
from corral.engine.images.registry import publisher
from corral.engine.observe.profiler import ThreadProfiler, profiler_from_env
from corral.engine.operate.health import HealthMonitor
from corral.engine.operate.status import instance_view, router_view, service_view
from corral.engine.workspace import Workspace, current_actor
from corral.errors import NotFound, RouterError
from corral.ports.driver import Measurable
from corral.ports.records import Deployment, Event, Instance, InstanceState
from corral.spec.model import HealthSpec, ServiceSpec

log = logging.getLogger(__name__)


class Loop(Protocol):
    """A background activity of the controller."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


class Controller:
    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.clock = time.time
        self.actor = current_actor()
        self.stopping = threading.Event()
        self.fleets = Fleets(ws.store, ws.router, self.clock, self.actor)
        from corral.engine.secrets import secret_opener
        self.instances = Instances(ws.driver, ws.router, ws.images, self.fleets, self.clock,
                                   ws.state_dir / "volumes", secret_opener(ws),
                                   publish=publisher(ws.image_dir, ws.driver))
        self.deployer = Deployer(ws.store, self.instances, self.stopping)
        self.monitor = HealthMonitor(self.fleets, ws.driver, self._health_of, self.clock,
                                     liveness_of=lambda i: self._spec_of(
                                         i.service, i.release).liveness)
        # Background loops, started in this order and stopped in reverse. Each area adds
        # its own (reconcile, log collection, …) here.
        self.loops: list[Loop] = [self.monitor]
        # progressive delivery: resume interrupted deployments, retire warm fleets, rollback
        from corral.engine.delivery.resume import Resumer
        from corral.engine.delivery.rollback import Rollback
        from corral.engine.delivery.traffic import WarmKeeper
        self.resumer = Resumer(ws.store, self.instances, self.deployer, self.actor)
        self.rollback = Rollback(ws.store, self.instances, self.deployer, ws.state_dir)
        self.loops += [WarmKeeper(self.deployer.traffic, ws.store, self.instances, self.actor),
                       self.resumer]
        # operate: self-healing by replacement (engine/operate/reconcile.py)
        from corral.engine.operate.reconcile import Reconciler
        self.reconciler = Reconciler(ws.store, self.instances, self.actor)
        from corral.engine.operate.drift import DriftWatch, runtime_drift_period
        self.drift = DriftWatch(ws.store, self.fleets, ws.images, ws.driver,
                                self.reconciler.condemn, self.clock, self.actor,
                                runtime_period=runtime_drift_period())
        self.loops += [self.reconciler, self.drift]
        # liveness failures are replaced by the reconciler, never restarted in place
        self.monitor.on_liveness_failure.append(
            lambda instance, why: self.reconciler.condemn(instance.id, why))
        # observe: logs, retention, Loki, metrics; first in, last out, so it collects the
        # lines every other loop's instances write until they stop (observe/telemetry.py)
        from corral.engine.observe.telemetry import Telemetry
        self.telemetry = Telemetry(ws, self.fleets, self.clock)
        self.loops.insert(0, self.telemetry)
        # observe: usage sampled per instance and hour, for `corral cost`'s used hours
        if isinstance(ws.driver, Measurable):
            from corral.engine.observe.usage import UsageSampler
            self.loops.append(UsageSampler(ws.store, self.fleets, ws.driver.usage, self.clock))
        # recovery: scheduled backups with retention, when the spec asks for them
        if ws.loaded.spec.project.backup is not None:
            from corral.engine.recovery.schedule import ScheduledBackups
            self.loops.append(ScheduledBackups(ws, ws.loaded.spec.project.backup))
        # pipeline: signed pushes (POST /v1/pipeline/push) run it at once, in a child
        from corral.engine.pipeline.pushes import PushTrigger
        self.pushes = PushTrigger.of(ws)
        if self.pushes is not None:
            self.loops.append(self.pushes)
        self.profiler: ThreadProfiler | None = None

    # -- life --------------------------------------------------------------------------
    def start(self) -> None:
        self.profiler = profiler_from_env()  # CORRAL_PROFILE=path: off unless asked
        self.ws.router.ensure_running()
        try:
            self._route_all()
        except Exception:
            # An address another router or program holds, or a driver that cannot reach its
            # engine, stops the start here, before any loop may start an instance; leave
            # nothing of this project running (the router too, when it serves nothing).
            if not self.fleets.all() and not self.ws.router.listening():
                self.ws.router.stop()
            raise
        for loop in self.loops:
            loop.start()
        self._event("controller.start", "controller", {"pid": os.getpid()})

    def _route_all(self) -> None:
        """Re-adopt instances and route every service at its live (or resumed) release."""
        self.fleets.load()
        self._adopt()
        self.resumer.prepare()  # saved fleet weights before the first router sync
        resuming = {d.service: d.to_release for d in self.resumer.interrupted()}
        services = sorted(self.ws.store.services())
        for service in services:  # preview first: it syncs once a listen is known
            target = resuming.get(service, self.ws.store.live_release(service))
            if target is not None:  # a resumed deployment's, else the live release's
                self.fleets.set_preview(service, is_previewable(self._spec_of(service, target)))
        for service in services:
            live = self.ws.store.live_release(service)
            if live is None:
                continue
            spec = self._spec_of(service, live)
            listen = spec.router.listen if spec.router else None
            self.fleets.set_listen(service, listen)
            try:
                self.fleets.resync(service)
            except RouterError as exc:
                raise RouterError(exc.message, hint=(
                    f"live v{live} of service {service} listens on {listen}, so this project "
                    "cannot start while something else holds it: stop that first (then, to "
                    f"move {service}, set another router.listen and run `corral deploy "
                    f"{service}`)")) from exc

    def shutdown(self, keep_instances: bool) -> None:
        self.stopping.set()
        for loop in reversed(self.loops):
            loop.stop()
        if not keep_instances:
            for instance in self.fleets.all():
                spec = self._spec_of(instance.service, instance.release)
                self.instances.drain_and_stop(instance.id, "corral down", 5.0, spec.stop_grace)
            for service in self.ws.store.services():
                self.ws.router.remove_service(service)
            self.ws.router.stop()
        self._event("controller.stop", "controller", {"keep_instances": keep_instances})
        if self.profiler is not None:
            self.profiler.dump()

    def _adopt(self) -> None:
        observed = {o.id: o for o in self.ws.driver.list()}
        for instance in self.fleets.all():
            seen = observed.pop(instance.id, None)
            if seen is None or not seen.running:
                self.fleets.move(instance.id, InstanceState.FAILED,
                                 f"{exit_reason(seen)} while the controller was away")
                self.ws.driver.stop(instance.id, grace=0)
            else:
                log.info("adopted %s (%s) at %s", instance.id, instance.state, instance.address)
        for unknown in observed.values():
            log.warning("stopping unknown instance %s", unknown.id)
            self.ws.driver.stop(unknown.id, grace=1.0)
            self._event("instance.destroy", unknown.id, {"reason": "unknown to the store"})

    # -- requests ----------------------------------------------------------------------
    def deploy(self, request: DeployRequest, emit: Emit) -> Deployment | None:
        return self.deployer.deploy(request, emit)

    def status(self, service: str | None = None) -> dict[str, Any]:
        store = self.ws.store
        names = sorted(set(store.services()) | {i.service for i in self.fleets.all()})
        if service is not None:
            if service not in names:
                raise NotFound(f"service {service!r} has never been deployed",
                               hint=f"deploy it: corral deploy {service}")
            names = [service]
        router = router_view(self.ws.router)
        enforced, how = self.ws.driver.enforcement() \
            if isinstance(self.ws.driver, Measurable) else (False, "the driver sets no limits")
        return {"controller": {"pid": os.getpid(), "running": True,
                               "limits": {"enforced": enforced, "how": how}},
                "router": router,
                "services": [service_view(name, store, self.ws.router, router["listen"], [
                    instance_view(i, self.ws.driver) for i in sorted(self.fleets.of_service(name),
                                                     key=lambda i: i.created_at)])
                             for name in names]}

    # -- lookups -------------------------------------------------------------------
    def _spec_of(self, service: str, version: int) -> ServiceSpec:
        release = self.fleets.release(service, version)
        if release is None:
            raise NotFound(f"release {service} v{version} is not in the store")
        return release.spec

    def _health_of(self, instance: Instance) -> HealthSpec | None:
        return self._spec_of(instance.service, instance.release).health

    def _event(self, action: str, subject: str, detail: dict[str, Any]) -> None:
        self.ws.store.append_event(Event(at=self.clock(), actor=self.actor, action=action,
                                         subject=subject, detail=detail))
