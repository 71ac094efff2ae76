"""The `swarm` driver: instances are tasks of Docker Swarm services, on the swarm whose
manager is `docker_host`, pulled by digest from `registry`.

Each instance is one single-replica service `PROJECT-INSTANCE` (labelled with its service,
release and image), pinned to the ready node that runs the fewest instances of its service,
so a release's fleet spreads over the nodes; corral decides which instance starts or stops,
which a scaled multi-replica service would not let it do (ADR 0014). Ports are host-mode and
chosen by the node (no routing mesh: it needs IPVS); the address is node:published port, and
corral's router on the controller's machine sends traffic there. Swarm never restarts a
task (restart condition none): a dead task is answered by corral's replacement. It never
decides what should run.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from corral.drivers.container_logs import LogCopies
from corral.drivers.docker_engine import (
    OWN,
    STATE,
    Engine,
    instance_labels,
    parse_time,
    resolve_host,
    with_label_keys,
)
from corral.drivers.engine_limits import task_resources
from corral.drivers.host import refuse_secrets
from corral.drivers.sandbox import SANDBOX_GID, SANDBOX_UID
from corral.drivers.swarm_tasks import (
    INSTANCE,
    NODE,
    Placement,
    TaskView,
    current_tasks,
    describe_failure,
)
from corral.errors import DriverError
from corral.ports.records import InstanceSpec, Observed
from corral.ports.runtime import Credentials, LaunchSnapshot, Mount, RuntimeFacts, SandboxProcess

LAUNCHED = OWN + "launched"  # the mounts and user it was created with (drift is measured)
KEY = "[drivers.swarm] docker_host"
UNACKNOWLEDGED = frozenset({"new", "pending", "assigned"})  # the node's agent has not taken it
SUSPECT_FOR = 60.0  # seconds a node that did not take a task gets no new instance


class _NodeSilent(Exception):
    """The node a task was pinned to never acknowledged it."""


class SwarmDriver:
    """Runs instances as Swarm services on the swarm managed at `docker_host`."""

    name = "swarm"

    def __init__(self, state_dir: Path, *, registry: str, project: str,
                 docker_host: str | None = None, insecure_registry: bool = True,
                 start_timeout: float = 60.0, stop_grace: float = 10.0,
                 accept_timeout: float = 3.0) -> None:
        self._state = str(Path(state_dir).resolve())
        self._registry = registry.rstrip("/")
        self._project = project
        self.insecure_registry = insecure_registry
        self.engine = Engine(resolve_host(docker_host), KEY)
        self._start_timeout = start_timeout
        self._stop_grace = stop_grace
        self._logs = LogCopies(Path(state_dir) / "swarm-logs")
        self._placing = threading.Lock()
        self._accept_timeout = accept_timeout
        self._suspects: dict[str, float] = {}  # node -> until when no instance goes there

    # -- the Driver port ---------------------------------------------------------------

    def start(self, spec: InstanceSpec) -> Observed:
        refuse_secrets(self.name, spec)
        name = self._service_name(spec.id)
        deadline = time.monotonic() + self._start_timeout
        while True:
            node = self._create(spec, name)
            try:
                view = self._await_running(spec, name, deadline)
            except _NodeSilent:
                # Swarm still calls the node ready (it notices a lost node after 12-20 s):
                # try another, and keep new instances off this one for a while.
                self._remove(name)
                self._suspects[node] = time.monotonic() + SUSPECT_FOR
                continue
            except BaseException:
                self._remove(name)  # nothing half-created: the service goes with its failure
                raise
            self._logs.follow(spec.id, self._stream_of(name))
            return self._observe(view)

    def list(self) -> list[Observed]:
        views = self._list_views()
        for view in views:
            if view.running:
                self._logs.follow(view.instance, self._stream_of(view.service_name))
        return sorted((self._observe(v) for v in views), key=lambda o: o.id)

    def inspect(self, instance_id: str) -> Observed | None:
        found = [v for v in self._list_views() if v.instance == instance_id]
        return self._observe(found[0]) if found else None

    def stop(self, instance_id: str, grace: float) -> None:
        """Remove the instance's service: Swarm sends SIGTERM, then SIGKILL after the
        service's stop grace (set when it was created)."""
        if any(v.instance == instance_id for v in self._list_views()):
            self._remove(self._service_name(instance_id))
            self._logs.wait(instance_id, timeout=min(grace, 2.0))

    # -- abilities beyond the port -----------------------------------------------------

    def image_reference(self, service: str, digest: str) -> str:
        """`REGISTRY/PROJECT-SERVICE@DIGEST`: where every node pulls the release's image."""
        return f"{self._registry}/{self._project}-{service}@{digest}"

    def log_paths(self, instance_id: str) -> tuple[Path, Path]:
        """(stdout, stderr) of the task, copied from the manager's service logs."""
        return self._logs.paths(instance_id)

    def runtime(self, instance_id: str) -> RuntimeFacts | None:
        """The instance as its service is specified now, against what it was created as:
        another image, mounts or user (a `docker service update` from outside) is drift."""
        found = [v for v in self._list_views() if v.instance == instance_id and v.running]
        if not found:
            return None
        view = found[0]
        launched = json.loads(view.labels.get(LAUNCHED, "{}"))
        now = _spec_facts(view.container_spec)
        # What runs now is what drift compares with the release: the task's image now.
        was = _snapshot(launched.get("mounts", []), launched.get("user", ""),
                        _digest_of(now["image"]) or launched.get("image", ""))
        app = SandboxProcess(pid=0, argv=tuple(view.container_spec.get("Args") or ()),
                             credentials=_credentials(now["user"]), in_user_namespace=True,
                             from_init=True, session_inside=True)
        return RuntimeFacts(
            instance_id=instance_id, pid=0, argv=app.argv, env={}, uid=app.credentials.uid,
            gid=app.credentials.gids[0], root=now["image"], mounts=tuple(
                _mount(m) for m in now["mounts"]),
            launched=was, processes=(app,))

    # -- the swarm ---------------------------------------------------------------------

    def _service_name(self, instance_id: str) -> str:
        return f"{self._project}-{instance_id}"

    def _labels(self, spec: InstanceSpec) -> dict[str, str]:
        facts = _spec_facts(_container_spec(spec, self.image_reference(spec.service,
                                                                          spec.image_digest)))
        return {**with_label_keys(spec.labels), STATE: self._state, INSTANCE: spec.id,
                LAUNCHED: json.dumps({**facts, "image": spec.image_digest})}

    def _placement(self) -> Placement:
        nodes = self.engine.call("cannot list the swarm's nodes", lambda c: c.api.nodes())
        return Placement.of(nodes)

    def _list_views(self) -> builtins.list[TaskView]:
        def read(client: Any) -> tuple[builtins.list[Any], builtins.list[Any]]:
            import docker.errors

            for _ in range(5):  # a service removed between the two reads: read again
                services = client.api.services(filters={"label": f"{STATE}={self._state}"})
                ids = [s["ID"] for s in services]
                try:
                    return services, client.api.tasks(filters={"service": ids}) if ids else []
                except docker.errors.NotFound:
                    continue
            return services, client.api.tasks()
        services, tasks = self.engine.call("cannot list instances", read)
        return current_tasks(services, tasks, self._placement() if services else None)

    def _create(self, spec: InstanceSpec, name: str) -> str:
        """Create the instance's service on the node `Placement.choose` gives (not a suspect
        one); the node's id."""
        reference = self.image_reference(spec.service, spec.image_digest)
        with self._placing:  # side-by-side starts: each sees where the others went
            now = time.monotonic()
            avoid = {node for node, until in self._suspects.items() if until > now}
            node = self._placement().choose(spec.labels, self._list_views(), avoid)
            labels = {**self._labels(spec), NODE: node}
            self.engine.call(f"cannot create instance {spec.id}", lambda c: c.api.create_service(
                **_service_args(spec, name, reference, node, labels, self._stop_grace)))
        return node

    def _await_running(self, spec: InstanceSpec, name: str, deadline: float) -> TaskView:
        """Wait until the instance's task runs with its port published; raise DriverError if
        it is rejected or fails (an image the node cannot pull) or the time runs out, and
        _NodeSilent if its node never takes the task (a node gone, not yet known to Swarm)."""
        created = time.monotonic()
        delay = 0.05
        while True:
            view = next((v for v in self._list_views() if v.service_name == name), None)
            if view is not None and view.running and view.address:
                return view
            if view is not None and view.failed:
                raise DriverError(f"cannot start instance {spec.id} on the swarm: "
                                  f"{describe_failure(view)}",
                                  hint=f"every node must reach the registry {self._registry} "
                                  "([drivers.swarm] registry) and pull the image by digest")
            now = time.monotonic()
            if view is not None and view.state in UNACKNOWLEDGED \
                    and now - created > self._accept_timeout and now < deadline:
                raise _NodeSilent(view.node)
            if now > deadline:
                state = view.state if view else "not scheduled"
                raise DriverError(f"instance {spec.id} did not start on the swarm within "
                                  f"{self._start_timeout:g} s (its task is {state})",
                                  hint="`docker service ps` on the manager shows why; a "
                                  "node that left keeps its tasks pending")
            time.sleep(delay)
            delay = min(delay * 2, 0.25)

    def _remove(self, name: str) -> None:
        import docker.errors

        def remove(client: Any) -> None:
            with contextlib.suppress(docker.errors.NotFound):  # removed meanwhile: fine
                client.api.remove_service(name)
        self.engine.call(f"cannot remove service {name}", remove)

    def _stream_of(self, name: str) -> Any:
        def open_stream(stream: str, since: int | None) -> Any:
            return self.engine.client.api.service_logs(
                name, follow=True, timestamps=True, since=since or 0,
                stdout=stream == "stdout", stderr=stream == "stderr")
        return open_stream

    def _observe(self, view: TaskView) -> Observed:
        return Observed(id=view.instance, pid=None, address=view.address, running=view.running,
                        exit_code=None if view.running else view.exit_code,
                        labels=instance_labels(view.labels),
                        started_at=parse_time(view.started))


def _container_spec(spec: InstanceSpec, reference: str) -> dict[str, Any]:
    """The task's container: the sandbox the process driver gives, as Swarm allows it."""
    from docker.types import ContainerSpec
    from docker.types import Mount as DockerMount

    mounts = [DockerMount(target="/tmp", source=None, type="tmpfs")]
    mounts += [DockerMount(target=inside, source=f"corral-{spec.service}-{Path(host).name}",
                           type="volume") for host, inside in sorted(spec.volumes.items())]
    container = ContainerSpec(
        image=reference, command=list(spec.argv[:1]), args=list(spec.argv[1:]),
        env={**spec.env, "PORT": str(spec.port)}, workdir=spec.workdir or "/",
        user=f"{SANDBOX_UID}:{SANDBOX_GID}", read_only=True, mounts=mounts, cap_drop=["ALL"],
        labels=dict(spec.labels))
    return dict(container)


def _service_args(spec: InstanceSpec, name: str, reference: str, node: str,
                  labels: dict[str, str], grace: float) -> dict[str, Any]:
    from docker.types import EndpointSpec, RestartPolicy, ServiceMode, TaskTemplate

    container = _container_spec(spec, reference)
    container["StopGracePeriod"] = int(grace * 1e9)
    template = TaskTemplate(container_spec=container, restart_policy=RestartPolicy(
        condition="none"), placement={"Constraints": [f"node.id=={node}"]},
        resources=task_resources(spec.limits) or None)
    return {"task_template": template, "name": name, "labels": labels,
            "mode": ServiceMode("replicated", replicas=1),
            "endpoint_spec": EndpointSpec(mode="dnsrr", ports=[{
                "TargetPort": spec.port, "Protocol": "tcp", "PublishMode": "host"}])}


def _spec_facts(container: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of a task's container spec drift is measured on: mounts, user, image."""
    mounts = sorted(({"target": m.get("Target", ""), "source": m.get("Source") or "",
                      "type": m.get("Type", ""), "ro": bool(m.get("ReadOnly"))}
                     for m in container.get("Mounts") or []), key=lambda m: m["target"])
    root = {"target": "/", "source": "image", "type": "image",
            "ro": bool(container.get("ReadOnly"))}
    return {"mounts": [root, *mounts], "user": container.get("User") or "",
            "image": container.get("Image", "")}


def _mount(entry: dict[str, Any]) -> Mount:
    return Mount(entry["target"], entry["source"], entry["type"], entry["ro"])


def _credentials(user: str) -> Credentials:
    uid, _, gid = user.partition(":")
    uid_n = int(uid) if uid.isdigit() else 0
    gid_n = int(gid) if gid.isdigit() else uid_n
    return Credentials(uids=(uid_n,) * 4, gids=(gid_n,) * 4, capabilities=0)


def _snapshot(mounts: list[dict[str, Any]], user: str, image: str) -> LaunchSnapshot:
    return LaunchSnapshot(namespaces={}, mounts=tuple(_mount(m) for m in mounts),
                          credentials=_credentials(user), image_digest=image)


def _digest_of(reference: str) -> str:
    return reference.rpartition("@")[2] if "@" in reference else ""
