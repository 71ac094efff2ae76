"""`make bench-swarm`: corral's swarm driver against Docker Swarm's own rollout, on one real
3-node Swarm (three dockerd in network namespaces, tests/swarm_cluster.py), in the same run.

1. deploy v1 -> v2 of 3 replicas under load: corral (blue-green through its router) against
   `docker service update --update-order start-first` (parallelism 1, no delay, 1 s monitor),
   whose tasks are reached through a router that follows Swarm's task list every 0.2 s (no
   routing mesh here: the kernel has no IPVS). Seconds from the command to the last answer
   not from v2, and failed requests.
2. rollback: corral's switch to the warm v1 fleet (the controller API call `corral rollback`
   makes) against `docker service rollback`.
3. node loss: kill -9 one node's dockerd and containers under load: seconds until corral's
   router gives that node's instances no traffic, against Swarm marking the node down.
4. start-to-ready of one instance: container driver (dockerd) against the process driver
   and a plain `docker run` (docker-py) of the same image.
Ends with one RESULT line.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the real swarm and load helpers the tests use

from cli_project import BUSYBOX_HTTPD_IMAGE, CliProject, write_busybox_root  # noqa: E402
from corral.api.client import ControllerClient  # noqa: E402
from corral.drivers.container import ContainerDriver  # noqa: E402
from corral.drivers.process import ProcessDriver  # noqa: E402
from corral.images.store import LocalImageStore  # noqa: E402
from corral.ports.records import Backend, InstanceSpec  # noqa: E402
from corral.routers.builtin.client import BuiltinRouter  # noqa: E402
from docker_engines import BUSYBOX_HTTPD, local_dockerd  # noqa: E402
from load import Load  # noqa: E402
from loopback import free_port, poll  # noqa: E402
from swarm_cluster import Cluster  # noqa: E402

SPEC = """\
[project]
name = "bench"

{image}
[services.web]
image = "web"
driver = "swarm"
replicas = 3
strategy = "blue-green"
blue_green = {{ auto_promote = true, preview = false, rollback_window = "1h" }}
router = {{ listen = "127.0.0.1:{port}" }}
health = {{ path = "/", interval = "200ms", timeout = "1s", unhealthy_after = 2 }}
drain_timeout = "2s"

[drivers.swarm]
docker_host = "{manager}"
registry = "{registry}/corral"
insecure_registry = true
start_timeout = "20s"
"""


def say(message: str) -> None:
    print(f"bench[swarm]: {message}", flush=True)


def switch_time(load: Load, started: float, want: str) -> float:
    """Seconds from `started` to the last answer that was not `want` (0 if none)."""
    last = max((at for at, status, body in load.answers if at >= started
                and (status != 200 or body != want)), default=started)
    return last - started


def measured(address: str, action: Callable[[], None], want: str,
             settle: Callable[[Load], bool]) -> tuple[float, int, int]:
    """(seconds to all answers being `want`, failed, requests) of `action` under load."""
    with Load(address) as load:
        poll(lambda: load.count() >= 50, 30, "the load to flow")
        started = time.monotonic()
        action()
        poll(lambda: settle(load), 180, f"all answers {want.strip()}")
        seen = load.count()
        poll(lambda: load.count() >= seen + 100, 30, "answers after")
    return switch_time(load, started, want), len(load.failed()), load.count()


def last_are(want: str) -> Callable[[Load], bool]:
    def check(load: Load) -> bool:
        tail = load.answers[-60:]
        return len(tail) == 60 and all(s == 200 and b == want for _, s, b in tail)
    return check


# -- corral on the swarm ---------------------------------------------------------------

def corral_side(cluster: Cluster, folder: Path) -> dict[str, Any]:
    project = CliProject(folder)
    write_busybox_root(folder, "v1\n")
    (folder / "corral.toml").write_text(SPEC.format(
        image=BUSYBOX_HTTPD_IMAGE, port=project.port, manager=cluster.manager.host,
        registry=cluster.registry_address))
    project.corral("build")
    digests = {"v1": image_digest(folder)}
    project.corral("up", "-d")
    project.corral("deploy", "web")
    (folder / "rootfs/www/index.html").write_text("v2\n")
    project.corral("build")
    digests["v2"] = image_digest(folder)
    address = f"127.0.0.1:{project.port}"
    deploy = measured(address, lambda: project.corral("deploy", "web"), "v2\n",
                      last_are("v2\n"))
    say(f"corral deploy: {deploy[0]:.2f} s to all on v2, {deploy[1]} failed of {deploy[2]}")
    controller = ControllerClient(folder / ".corral" / "run" / "controller.sock")
    # What `corral rollback` sends, without the CLI's interpreter start-up (~0.4 s here): the
    # docker side's CLI is a Go binary that starts in milliseconds.
    rollback = measured(address, lambda: list(controller.stream(
        "/v1/rollback", {"service": "web"})), "v1\n", last_are("v1\n"))
    say(f"corral rollback: {rollback[0]:.3f} s, {rollback[1]} failed of {rollback[2]}")
    return {"project": project, "deploy": deploy, "rollback": rollback, "digests": digests}


def image_digest(folder: Path) -> str:
    return LocalImageStore(folder / ".corral").resolve("web")


# -- Swarm's own rollout ---------------------------------------------------------------

class TaskRouter:
    """A builtin router in front of a Swarm service's running tasks, told every 0.2 s."""

    def __init__(self, cluster: Cluster, service: str, run_dir: Path) -> None:
        self.cluster, self.service = cluster, service
        self.port = free_port()
        self.router = BuiltinRouter(run_dir)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, daemon=True)

    def __enter__(self) -> TaskRouter:
        self.router.ensure_running()
        self._sync()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.router.stop()

    def _follow(self) -> None:
        while not self._stop.wait(0.2):
            try:
                self._sync()
            except Exception as error:  # a manager busy with the update: next round
                say(f"task list: {error}")

    def _sync(self) -> None:
        api = self.cluster.manager.client().api
        nodes = {n["ID"]: n["Status"]["Addr"] for n in api.nodes()}
        backends = []
        for task in api.tasks(filters={"service": self.service, "desired-state": "running"}):
            ports = (task["Status"].get("PortStatus") or {}).get("Ports") or []
            if task["Status"]["State"] == "running" and ports:
                address = f"{nodes[task['NodeID']]}:{ports[0]['PublishedPort']}"
                backends.append(Backend(address, 1, "swarm", task["ID"][:12]))
        self.router.set_backends(self.service, f"127.0.0.1:{self.port}", backends)


def swarm_side(cluster: Cluster, digests: dict[str, str], run_dir: Path) -> dict[str, Any]:
    from docker.types import EndpointSpec, UpdateConfig

    client = cluster.manager.client()
    reference = f"{cluster.registry_address}/corral/bench-web@"  # pushed by corral already
    update = UpdateConfig(parallelism=1, delay=0, order="start-first", monitor=1_000_000_000,
                          failure_action="pause")
    service = client.services.create(
        reference + digests["v1"], name="peer-web", env=["PORT=8000"], mode={
            "Replicated": {"Replicas": 3}}, update_config=update, rollback_config=update,
        endpoint_spec=EndpointSpec(mode="dnsrr", ports=[{
            "TargetPort": 8000, "Protocol": "tcp", "PublishMode": "host"}]))
    with TaskRouter(cluster, "peer-web", run_dir) as router:
        address = f"127.0.0.1:{router.port}"
        poll(lambda: last_are("v1\n")(probe(address)), 120, "the peer serving v1")

        def update_image() -> None:
            service.reload()
            service.update(image=reference + digests["v2"], update_config=update)
        deploy = measured(address, update_image, "v2\n", last_are("v2\n"))
        say(f"swarm update: {deploy[0]:.2f} s to all on v2, {deploy[1]} failed of {deploy[2]}")

        def rollback() -> None:
            subprocess.run(["/usr/bin/docker", "-H", cluster.manager.host, "service",
                            "rollback", "--detach", "peer-web"], check=True, capture_output=True)
        back = measured(address, rollback, "v1\n", last_are("v1\n"))
        say(f"swarm rollback: {back[0]:.2f} s, {back[1]} failed of {back[2]}")
    service.remove()
    return {"deploy": deploy, "rollback": back}


def probe(address: str) -> Load:
    with Load(address) as load:
        poll(lambda: load.count() >= 60, 30, "answers")
    return load


# -- node loss -------------------------------------------------------------------------

def node_loss(cluster: Cluster, project: CliProject) -> tuple[float, float, int, int]:
    """(s until corral routes nothing to the dead node, s until Swarm says it is down,
    failed, requests)."""
    api = ControllerClient(project.folder / ".corral" / "run" / "controller.sock")
    dead = cluster.node_ips[2]
    manager = cluster.manager.client().api

    def routed_to_dead() -> bool:
        status = api.get("/v1/status")
        return any(i["state"] == "ready" and i["address"].startswith(dead + ":")
                   for s in status["services"] for i in s["instances"])
    assert routed_to_dead(), "an instance runs on the node to kill"
    with Load(f"127.0.0.1:{project.port}") as load:
        poll(lambda: load.count() >= 50, 30, "the load to flow")
        killed = time.monotonic()
        cluster.kill_node(2)
        poll(lambda: not routed_to_dead(), 60, "corral to stop routing to the dead node")
        corral_s = time.monotonic() - killed
        poll(lambda: any(n["Status"]["Addr"] == dead and n["Status"]["State"] == "down"
                         for n in manager.nodes()), 120, "Swarm to mark the node down")
        swarm_s = time.monotonic() - killed
    say(f"node loss: corral {corral_s:.2f} s, Swarm {swarm_s:.2f} s, "
        f"{len(load.failed())} failed of {load.count()}")
    return corral_s, swarm_s, len(load.failed()), load.count()


# -- start to ready --------------------------------------------------------------------

def start_to_ready(folder: Path, runs: int = 5) -> dict[str, float]:
    """Median ms from start to the first HTTP answer of one instance, per way to run it."""
    store = LocalImageStore(folder / ".corral")
    digest = image_digest(folder)
    layout, rootfs = folder / ".corral" / "images", str(store.unpack(digest))
    engine = local_dockerd(Path(tempfile.mkdtemp(prefix="corral-bench-dockerd-")))
    try:
        container = ContainerDriver(folder / "c", layout=layout, docker_host=engine.host)
        process = ProcessDriver(folder / "p")
        container.start(spec("warm", digest, rootfs))  # the image load, once, not measured
        times = {"container": [], "process": [], "docker_run": []}  # type: dict[str, list[float]]
        for n in range(runs):
            for name, driver in (("container", container), ("process", process)):
                began = time.monotonic()
                observed = driver.start(spec(f"{name}-{n}", digest, rootfs))
                poll(lambda a=observed.address: answers(a), 30, "the instance")
                times[name].append((time.monotonic() - began) * 1000)
                driver.stop(observed.id, grace=0)
            times["docker_run"].append(docker_run(engine.client(), container, digest))
        return {k: statistics.median(v) for k, v in times.items()}
    finally:
        engine.stop()
        shutil.rmtree(engine.folder, ignore_errors=True)


def spec(instance_id: str, digest: str, rootfs: str) -> InstanceSpec:
    return InstanceSpec(id=instance_id, service="web", release=1, image_digest=digest,
                        rootfs=rootfs, argv=BUSYBOX_HTTPD, env={}, labels={})


def docker_run(client: Any, driver: ContainerDriver, digest: str) -> float:
    from corral.drivers.docker_archive import config_digest

    image = config_digest(Path(driver._layout), digest)  # loaded by the driver's warm start
    port = free_port()
    began = time.monotonic()
    run = client.containers.run(image, detach=True, network_mode="host",
                                environment={"PORT": str(port)})
    poll(lambda: answers(f"127.0.0.1:{port}"), 30, "docker run's container")
    elapsed = (time.monotonic() - began) * 1000
    run.remove(force=True)
    return elapsed


def answers(address: str) -> bool:
    import http.client

    host, _, port = address.rpartition(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=1)
    try:
        connection.request("GET", "/")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="corral-bench-swarm-"))
    cluster = Cluster(work / "cluster", net=2).start()
    say(f"3-node swarm up: {', '.join(cluster.node_ips)}")
    project = None
    try:
        corral = corral_side(cluster, work / "project")
        project = corral["project"]
        swarm = swarm_side(cluster, corral["digests"], work / "peer-router")
        loss = node_loss(cluster, project)
    finally:
        if project is not None:
            project.corral("down", check=False)
        cluster.stop()
    try:
        ready = start_to_ready(work / "project")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows = [
        ("deploy v1->v2, s to all on v2", corral["deploy"][0], swarm["deploy"][0]),
        ("deploy, failed requests", corral["deploy"][1], swarm["deploy"][1]),
        ("rollback, s to all on v1", corral["rollback"][0], swarm["rollback"][0]),
        ("rollback, failed requests", corral["rollback"][1], swarm["rollback"][1]),
        ("node loss, s to no traffic / node down", loss[0], loss[1]),
    ]
    print(f"\n{'measure':42} {'corral':>10} {'swarm':>10}")
    for name, ours, theirs in rows:
        print(f"{name:42} {ours:>10.3f} {theirs:>10.3f}")
    print(f"node loss: {loss[2]} failed of {loss[3]} requests through corral's router")
    print(f"\n{'start to ready (median ms)':42} {'container':>10} {'process':>10} "
          f"{'docker run':>10}")
    print(f"{'one instance of the busybox image':42} {ready['container']:>10.0f} "
          f"{ready['process']:>10.0f} {ready['docker_run']:>10.0f}")
    ratio = lambda a, b: a / b if b else float("inf")  # noqa: E731
    print("RESULT " + " ".join(f"{k}={v}" for k, v in {
        "corral_deploy_s": round(corral["deploy"][0], 3),
        "swarm_deploy_s": round(swarm["deploy"][0], 3),
        "deploy_ratio": round(ratio(corral["deploy"][0], swarm["deploy"][0]), 3),
        "corral_deploy_failed": corral["deploy"][1], "swarm_deploy_failed": swarm["deploy"][1],
        "corral_rollback_s": round(corral["rollback"][0], 3),
        "swarm_rollback_s": round(swarm["rollback"][0], 3),
        "rollback_ratio": round(ratio(corral["rollback"][0], swarm["rollback"][0]), 3),
        "corral_rollback_failed": corral["rollback"][1],
        "swarm_rollback_failed": swarm["rollback"][1],
        "corral_node_loss_s": round(loss[0], 2), "swarm_node_down_s": round(loss[1], 2),
        "node_loss_failed": loss[2],
        "container_ready_ms": round(ready["container"]),
        "process_ready_ms": round(ready["process"]),
        "docker_run_ready_ms": round(ready["docker_run"]),
        "container_vs_docker_run": round(ratio(ready["container"], ready["docker_run"]), 2),
    }.items()))


if __name__ == "__main__":
    main()
