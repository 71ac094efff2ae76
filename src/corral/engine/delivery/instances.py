"""Starting and stopping instances of a release (`Instances`: the driver, router, image store,
fleets and clock that takes, held once and handed to whoever starts or stops one).

Turns a release into an InstanceSpec (image root, argv, env, volumes), starts it and
registers it; stops instances after draining their traffic. Which instances to start or
stop is decided elsewhere (core strategies).
"""

from __future__ import annotations

import logging
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path

from corral.core.capacity import limits_of
from corral.core.release import instance_argv, instance_env
from corral.engine.fleet import Clock, Fleets
from corral.errors import DeployError
from corral.ports.driver import Driver
from corral.ports.images import ImageStore
from corral.ports.records import Instance, InstanceSpec, InstanceState, Release
from corral.ports.router import Router

log = logging.getLogger(__name__)


@dataclass
class Instances:
    """The controller's means to start and stop instances; callers read its fleets and clock
    from it rather than being handed them again."""

    driver: Driver
    router: Router | None
    images: ImageStore
    fleets: Fleets
    clock: Clock
    volumes_dir: Path
    _draining: set[threading.Thread] = field(default_factory=set)

    def start(self, release: Release) -> Instance:
        service = release.spec
        image = self.images.config(release.image_digest)
        argv = instance_argv(service, image)
        if not argv:
            raise DeployError(f"release {release.service} {release.label} has nothing to run",
                              hint="set entrypoint in the image or command in the service")
        instance_id = f"{release.service}-{release.label}-{secrets.token_hex(3)}"
        volumes = {}
        for name, inside in service.volumes.items():
            host = self.volumes_dir / release.service / name
            host.mkdir(parents=True, exist_ok=True)
            volumes[str(host)] = inside
        spec = InstanceSpec(
            id=instance_id, service=release.service, release=release.version,
            image_digest=release.image_digest, rootfs=str(self.images.unpack(release.image_digest)),
            argv=argv, env=instance_env(release.service, service, image, release.label,
                                        instance_id),
            workdir=image.workdir or "/", user=image.user, port=service.port, volumes=volumes,
            labels={"corral.service": release.service, "corral.release": str(release.version),
                    "corral.image": release.image_digest},
            limits=limits_of(service), allow_syscalls=service.allow_syscalls)
        observed = self.driver.start(spec)
        instance = Instance(id=instance_id, service=release.service, release=release.version,
                            image_digest=release.image_digest, address=observed.address,
                            state=InstanceState.STARTING, created_at=self.clock(),
                            pid=observed.pid)
        self.fleets.add(instance)
        return instance

    def drain_and_stop(self, instance_id: str, reason: str, drain_timeout: float,
                       grace: float) -> None:
        """Take the instance out of traffic, wait for its requests, then stop it."""
        instance = self.fleets.move(instance_id, InstanceState.DRAINING, reason)
        if instance is not None:
            self._finish_drain(instance, reason, drain_timeout, grace)

    def drain_in_background(self, instance_id: str, reason: str, drain_timeout: float,
                            grace: float) -> None:
        """Take the instance out of traffic now; wait for its requests and stop it in a
        background thread, so the rollout does not wait on a slow request or shutdown."""
        instance = self.fleets.move(instance_id, InstanceState.DRAINING, reason)
        if instance is None:
            return

        def finish() -> None:
            try:
                self._finish_drain(instance, reason, drain_timeout, grace)
            finally:
                self._draining.discard(threading.current_thread())

        thread = threading.Thread(target=finish, name=f"drain-{instance_id}", daemon=True)
        self._draining.add(thread)
        thread.start()

    def wait_for_drains(self) -> None:
        """Block until every background drain has stopped its instance."""
        for thread in list(self._draining):
            thread.join()

    def _finish_drain(self, draining: Instance, reason: str, drain_timeout: float,
                      grace: float) -> None:
        """Wait for the draining instance's requests (up to the timeout), then stop it."""
        routed = self.router is not None and self.fleets.listen_of(draining.service)
        if routed and not self.router.wait_drained(  # type: ignore[union-attr]
                draining.service, draining.address, drain_timeout):
            log.warning("instance %s still had requests in flight after %.0fs; stopping it",
                        draining.id, drain_timeout)
        self.driver.stop(draining.id, grace)
        self.fleets.move(draining.id, InstanceState.STOPPED, reason)
