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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from corral.core.capacity import limits_of
from corral.core.release import instance_argv, instance_env, secret_refs
from corral.engine.fleet import Clock, Fleets
from corral.errors import DeployError
from corral.ports.driver import Driver, PullsFromRegistry
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
    # secrets: (name, version) -> value, opened at each start (engine/secrets.py); None
    # where no secret can be opened (a release that references one then fails to start).
    open_secret: Callable[[str, int], str] | None = None
    # Pushes an image (reference, digest) where a PullsFromRegistry driver's nodes pull it.
    publish: Callable[[str, str], None] | None = None
    _draining: set[threading.Thread] = field(default_factory=set)
    _published: set[str] = field(default_factory=set)
    _publishing: threading.Lock = field(default_factory=threading.Lock)

    def start(self, release: Release) -> Instance:
        service = release.spec
        image = self.images.config(release.image_digest)
        self._publish(release)
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
            stop_signal=image.stop_signal,
            labels={"corral.service": release.service, "corral.release": str(release.version),
                    "corral.image": release.image_digest},
            limits=limits_of(service), allow_syscalls=service.allow_syscalls,
            **self._secrets_of(release))
        observed = self.driver.start(spec)
        instance = Instance(id=instance_id, service=release.service, release=release.version,
                            image_digest=release.image_digest, address=observed.address,
                            state=InstanceState.STARTING, created_at=self.clock(),
                            pid=observed.pid)
        self.fleets.add(instance)
        return instance

    def _publish(self, release: Release) -> None:
        """Push the release's image where the driver's nodes pull it, once per process (a
        push of what the registry has is a few HEAD requests, but not one per instance)."""
        if not isinstance(self.driver, PullsFromRegistry) or self.publish is None:
            return
        reference = self.driver.image_reference(release.service, release.image_digest)
        with self._publishing:  # side-by-side starts push once
            if reference not in self._published:
                self.publish(reference, release.image_digest)
                self._published.add(reference)

    def _secrets_of(self, release: Release) -> dict[str, dict[str, str]]:
        """The values of the secrets `release` pinned (env and files); only its own."""
        refs = secret_refs(release.spec)
        if not refs:
            return {}
        if self.open_secret is None:
            raise DeployError(f"release {release.service} {release.label} needs secrets and "
                              "this controller cannot open any", hint="start it with `corral "
                              "up` where the secret key is (CORRAL_SECRET_KEY or its file)")
        values: dict[str, dict[str, str]] = {"secret_env": {}, "secret_files": {}}
        for (kind, key), ref in refs.items():
            if ref.version is None:
                raise DeployError(f"release {release.service} {release.label}: secret "
                                  f"{ref.secret!r} has no pinned version", hint="deploy again")
            value = self.open_secret(ref.secret, ref.version)
            values["secret_env" if kind == "env" else "secret_files"][key] = value
        return values

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
