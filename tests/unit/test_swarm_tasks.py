"""How the Swarm driver reads the Engine API's answers: recorded JSON in, views out."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

from corral.drivers.docker_archive import config_digest, write_archive
from corral.drivers.docker_engine import parse_time
from corral.drivers.swarm_tasks import INSTANCE, NODE, Placement, current_tasks

NODES = [
    {"ID": "n1", "Spec": {"Labels": {"corral.node": "n1"}, "Availability": "active"},
     "Status": {"State": "ready", "Addr": "10.0.0.11"}},
    {"ID": "n2", "Spec": {"Labels": {"corral.node": "n2"}, "Availability": "active"},
     "Status": {"State": "down", "Addr": "10.0.0.12"}},
]


def service(sid: str, instance: str, node: str) -> dict[str, object]:
    return {"ID": sid, "Spec": {"Name": f"shop-{instance}", "Labels": {
        INSTANCE: instance, NODE: node, "corral.service": "web", "corral.release": "1"},
        "TaskTemplate": {"ContainerSpec": {"Image": "r/shop-web@sha256:ab"}}}}


def task(sid: str, index: int, state: str, node: str, port: int | None = None,
         err: str = "") -> dict[str, object]:
    status: dict[str, object] = {"State": state, "Err": err,
                                 "Timestamp": "2026-12-07T00:28:30.5Z"}
    if port:
        status["PortStatus"] = {"Ports": [{"PublishedPort": port, "TargetPort": 8000}]}
    return {"ServiceID": sid, "NodeID": node, "Version": {"Index": index}, "Status": status}


def test_each_instance_is_its_service_and_its_newest_task_at_node_address_and_port() -> None:
    views = current_tasks(
        [service("s1", "web-v1-a", "n1")],
        [task("s1", 10, "failed", "n1", err="old"), task("s1", 12, "running", "n1", 30001)],
        Placement.of(NODES))
    (view,) = views
    assert (view.instance, view.state, view.address, view.running) == (
        "web-v1-a", "running", "10.0.0.11:30001", True)


def test_a_task_on_a_node_swarm_reports_down_is_not_running() -> None:
    (view,) = current_tasks([service("s2", "web-v1-b", "n2")],
                            [task("s2", 3, "running", "n2", 30002)], Placement.of(NODES))
    assert view.state == "running" and not view.running


def test_a_rejected_task_is_failed_with_swarms_words() -> None:
    (view,) = current_tasks([service("s3", "web-v1-c", "n1")],
                            [task("s3", 4, "rejected", "n1", err="No such image: r/x")],
                            Placement.of(NODES))
    assert view.failed and view.error == "No such image: r/x"


def test_a_service_without_a_task_yet_counts_on_the_node_it_is_pinned_to() -> None:
    placement = Placement.of([{**NODES[0]}, {**NODES[1], "Status": {
        "State": "ready", "Addr": "10.0.0.12"}}])
    views = current_tasks([service("s4", "web-v1-d", "n1")], [], placement)
    assert views[0].state == "new" and views[0].node == "n1"
    assert placement.choose({"corral.service": "web", "corral.release": "1"}, views) == "n2"


def test_engine_timestamps_read_with_any_fraction_and_zone() -> None:
    assert parse_time("2026-12-07T00:28:30.002190181Z") == parse_time(
        "2026-12-07T00:28:30.00219+00:00")
    assert parse_time("0001-01-01T00:00:00Z") is None


def test_a_docker_load_archive_carries_the_layouts_own_blobs(tmp_path: Path) -> None:
    import hashlib

    blobs = tmp_path / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return f"sha256:{digest}"
    layer = put(b"layer-bytes")
    config = put(b'{"rootfs": {"type": "layers"}}')
    manifest = put(json.dumps({"config": {"digest": config},
                               "layers": [{"digest": layer}]}).encode())
    out = io.BytesIO()
    write_archive(tmp_path, manifest, out)  # type: ignore[arg-type]
    with tarfile.open(fileobj=out) as archive:
        entry = json.load(archive.extractfile("manifest.json"))  # type: ignore[arg-type]
        names = archive.getnames()
    assert config_digest(tmp_path, manifest) == config
    assert entry == [{"Config": f"blobs/sha256/{config[7:]}", "RepoTags": None,
                      "Layers": [f"blobs/sha256/{layer[7:]}"]}]
    assert set(names) == {"manifest.json", entry[0]["Config"], *entry[0]["Layers"]}


def test_the_engine_drivers_refuse_an_instance_with_secrets_rather_than_leak_or_drop_them(
        tmp_path: Path) -> None:
    import pytest

    from corral.drivers.container import ContainerDriver
    from corral.drivers.swarm import SwarmDriver
    from corral.errors import DriverError
    from corral.ports.records import InstanceSpec

    spec = InstanceSpec(id="web-v1-a", service="web", release=1, image_digest="sha256:ab",
                        rootfs="", argv=("app",), env={}, secret_env={"TOKEN": "s3cret"})
    for driver in (ContainerDriver(tmp_path, layout=tmp_path, docker_host="unix:///none"),
                   SwarmDriver(tmp_path, registry="r:5000", project="p",
                               docker_host="unix:///none")):
        with pytest.raises(DriverError, match="needs secrets") as raised:
            driver.start(spec)
        assert "s3cret" not in str(raised.value)
