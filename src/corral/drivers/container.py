"""The `container` driver: each instance is a container on one Docker engine (dockerd, or
podman's Docker-compatible socket), through the Engine API.

Gives the process driver's guarantees where the engine allows: read-only root, every
capability dropped, no new privileges, the unprivileged uid 65534, a private /tmp, declared
volumes bound read-write, the host's network with the instance's own port in `PORT` (as the
process driver does: the router reaches 127.0.0.1:PORT, no NAT, no bridge). The image is
loaded from corral's OCI layout as it is (its engine id is its config digest). The engine
remembers every container, labelled with the state folder it belongs to, so a new controller
re-adopts them. It never decides what should run.
"""

from __future__ import annotations

import resource
import tempfile
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

from corral.drivers.container_logs import LogCopies
from corral.drivers.docker_archive import config_digest, write_archive
from corral.drivers.docker_engine import (
    OWN,
    STATE,
    Engine,
    instance_labels,
    parse_time,
    resolve_host,
    with_label_keys,
)
from corral.drivers.engine_limits import container_limits
from corral.drivers.host import pick_free_port, prepare_volumes, refuse_secrets
from corral.drivers.sandbox import SANDBOX_GID, SANDBOX_UID
from corral.errors import DriverError
from corral.ports.records import InstanceSpec, Observed

ADDRESS = OWN + "address"
KEY = "[drivers.container] docker_host"


class ContainerDriver:
    """Runs instances as containers of the engine at `docker_host`; `layout` is the OCI
    image layout images are loaded from, `state_dir` keeps the copied logs."""

    name = "container"

    def __init__(self, state_dir: Path, *, layout: Path, docker_host: str | None = None,
                 start_timeout: float = 10.0) -> None:
        self._state = str(Path(state_dir).resolve())
        self._layout = layout
        self.engine = Engine(resolve_host(docker_host), KEY)
        self._start_timeout = start_timeout
        self._logs = LogCopies(Path(state_dir) / "container-logs")
        self._lock = threading.Lock()  # image loads and port choice, for concurrent starts
        self._ports_given: set[int] = set()
        self._exec = ThreadPoolExecutor(max_workers=4, thread_name_prefix="container-exec")

    # -- the Driver port ---------------------------------------------------------------

    def start(self, spec: InstanceSpec) -> Observed:
        refuse_secrets(self.name, spec)
        image = self._image_id(spec.image_digest)
        prepare_volumes(spec.id, spec.volumes)
        with self._lock:
            port = pick_free_port(self._ports_given | self._ports_listed())
            self._ports_given.add(port)
        try:
            container = self.engine.call(f"cannot create instance {spec.id}",
                                         lambda c: c.containers.create(
                                             image, **_create_args(spec, port, self._state)))
            try:
                self.engine.call(f"cannot start instance {spec.id} "
                                 f"({' '.join(spec.argv)})", lambda _: container.start())
            except DriverError:
                self._remove(spec.id)
                raise
            self._logs.follow(spec.id, self._stream_of(container))
            return self._observe(self._reload(container))
        finally:
            with self._lock:
                self._ports_given.discard(port)  # from now on the container holds it

    def list(self) -> list[Observed]:
        containers = self.engine.call("cannot list instances", lambda c: c.containers.list(
            all=True, filters={"label": f"{STATE}={self._state}"}))
        observed = [self._observe(c) for c in containers]
        for container, seen in zip(containers, observed, strict=True):
            if seen.running:  # re-adopted after a controller restart: copy its logs again
                self._logs.follow(seen.id, self._stream_of(container))
        return sorted(observed, key=lambda o: o.id)

    def inspect(self, instance_id: str) -> Observed | None:
        container = self._find(instance_id)
        return self._observe(container) if container is not None else None

    def stop(self, instance_id: str, grace: float) -> None:
        container = self._find(instance_id)
        if container is None:
            return
        if container.status == "running":
            self.engine.call(f"cannot stop instance {instance_id}",
                             lambda _: container.stop(timeout=max(0, round(grace))))
        self._logs.wait(instance_id, timeout=2.0)
        self._remove(instance_id)

    # -- abilities beyond the port -----------------------------------------------------

    def log_paths(self, instance_id: str) -> tuple[Path, Path]:
        """(stdout, stderr) copied from the engine; kept after the container is removed."""
        return self._logs.paths(instance_id)

    def exec_in(self, instance_id: str, argv: Sequence[str],
                timeout: float) -> tuple[int, str]:
        """Run `argv` in the running container as its user; (exit code, output tail). A
        timeout is exit code 124, like timeout(1) (the engine cannot cancel an exec)."""
        container = self._find(instance_id)
        if container is None or container.status != "running":
            raise DriverError(f"instance {instance_id} is not running: cannot exec in it")
        future = self._exec.submit(lambda: self.engine.call(
            f"cannot exec in instance {instance_id}",
            lambda _: container.exec_run(list(argv), user=f"{SANDBOX_UID}:{SANDBOX_GID}")))
        try:
            result = future.result(timeout)
        except FutureTimeout:
            return 124, f"timed out after {timeout:g} s"
        output = (result.output or b"").decode(errors="replace")
        return int(result.exit_code or 0), output[-2000:]

    def kill(self, instance_id: str) -> bool:
        """SIGKILL the container (chaos): it stays listed, as exited. False if not running."""
        container = self._find(instance_id)
        if container is None or container.status != "running":
            return False
        self.engine.call(f"cannot kill instance {instance_id}", lambda _: container.kill())
        return True

    # -- the engine --------------------------------------------------------------------

    def _image_id(self, digest: str) -> str:
        """The engine's id of image `digest`, loaded from the layout the first time."""
        image = config_digest(self._layout, digest)
        with self._lock:
            if not self._has_image(image):
                self._load(digest)
        return image

    def _has_image(self, image: str) -> bool:
        return self.engine.call("cannot look up an image", lambda c: _has_image(c, image))

    def _load(self, digest: str) -> None:
        with tempfile.TemporaryFile(dir=self._layout) as archive:
            write_archive(self._layout, digest, archive)
            answer = self.engine.call(f"cannot load image {digest}",
                                      lambda c: list(c.api.load_image(archive)))
        errors = [a.get("error") or a.get("errorDetail") for a in answer if isinstance(a, dict)]
        if any(errors):
            raise DriverError(f"the Docker engine at {self.engine.host} could not load image "
                              f"{digest}: {errors}", hint="check the engine's storage")

    def _find(self, instance_id: str) -> Any | None:
        """The container of this state folder named `instance_id`, or None."""
        found = self.engine.call(f"cannot look up instance {instance_id}",
                                 lambda c: c.containers.list(all=True, filters={
                                     "label": f"{STATE}={self._state}", "name": instance_id}))
        return next((c for c in found if c.name == instance_id), None)

    def _reload(self, container: Any) -> Any:
        self.engine.call("cannot inspect an instance", lambda _: container.reload())
        return container

    def _remove(self, instance_id: str) -> None:
        container = self._find(instance_id)
        if container is not None:
            self.engine.call(f"cannot remove instance {instance_id}",
                             lambda _: container.remove(force=True))

    def _ports_listed(self) -> set[int]:
        return {int(o.address.rpartition(":")[2]) for o in self.list()}

    def _stream_of(self, container: Any) -> Any:
        def open_stream(stream: str, since: int | None) -> Any:
            return container.logs(stream=True, follow=True, timestamps=True, since=since,
                                  stdout=stream == "stdout", stderr=stream == "stderr")
        return open_stream

    def _observe(self, container: Any) -> Observed:
        state = container.attrs.get("State", {})
        labels = container.labels or {}
        running = bool(state.get("Running"))
        return Observed(
            id=container.name, pid=state.get("Pid") or None, address=labels.get(ADDRESS, ""),
            running=running, exit_code=None if running else state.get("ExitCode"),
            labels=instance_labels(labels),
            started_at=parse_time(state.get("StartedAt")))


def _has_image(client: Any, image: str) -> bool:
    import docker.errors

    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        return False
    return True


def _host_limits() -> list[Any]:
    """The controller's own open-file and process limits, as a process-driver instance would
    inherit them; processes at most kernel.pid_max (podman lowers its own limit to it, and a
    container may not raise a limit above its runtime's: the start would fail)."""
    from docker.types import Ulimit

    limits = []
    for name, which in (("nofile", resource.RLIMIT_NOFILE), ("nproc", resource.RLIMIT_NPROC)):
        hard = resource.getrlimit(which)[1]
        if name == "nproc":
            hard = min(hard, _pid_max()) if hard != resource.RLIM_INFINITY else _pid_max()
        if hard != resource.RLIM_INFINITY:
            limits.append(Ulimit(name=name, soft=hard, hard=hard))
    return limits


def _pid_max() -> int:
    try:
        return int(Path("/proc/sys/kernel/pid_max").read_text())
    except (OSError, ValueError):
        return 32768


def _create_args(spec: InstanceSpec, port: int, state: str) -> dict[str, Any]:
    """The engine's create options for one instance: the sandbox and the limits (spec
    `resources`) the process driver gives."""
    address = f"127.0.0.1:{port}"
    return {
        "name": spec.id, "entrypoint": list(spec.argv), "command": [],
        "environment": {**spec.env, "PORT": str(port)}, "working_dir": spec.workdir or "/",
        "user": f"{SANDBOX_UID}:{SANDBOX_GID}", "read_only": True, "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"], "tmpfs": {"/tmp": "rw,nosuid,nodev"},
        "network_mode": "host", "ulimits": _host_limits(), **container_limits(spec.limits),
        "volumes": {host: {"bind": inside, "mode": "rw"} for host, inside in spec.volumes.items()},
        "labels": {**with_label_keys(spec.labels), STATE: state, ADDRESS: address},
    }
