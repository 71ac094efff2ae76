"""How the Swarm driver reads a swarm: each instance's service and its newest task as one
view, and which node a new instance goes to. Plain functions over the Engine API's JSON, so
they are tested with recorded answers, no swarm needed."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from corral.drivers.docker_engine import OWN
from corral.errors import DriverError

INSTANCE = OWN + "instance"
NODE = OWN + "node"  # the node the instance is pinned to
ENDED = frozenset({"complete", "failed", "shutdown", "rejected", "orphaned", "remove"})


@dataclass(frozen=True)
class Node:
    id: str
    address: str
    ready: bool  # reported ready by Swarm and accepting tasks
    name: str  # the `corral.node` label, else the hostname (the same on every node here)


@dataclass(frozen=True)
class Placement:
    """The swarm's nodes, and the choice of one for a new instance."""

    nodes: Mapping[str, Node]

    @classmethod
    def of(cls, answer: Iterable[Mapping[str, Any]]) -> Placement:
        nodes = {}
        for node in answer:
            spec, status = node.get("Spec", {}), node.get("Status", {})
            name = spec.get("Labels", {}).get("corral.node") \
                or node.get("Description", {}).get("Hostname", "")
            nodes[node["ID"]] = Node(
                id=node["ID"], address=status.get("Addr", ""), name=name,
                ready=status.get("State") == "ready" and spec.get("Availability") == "active")
        return cls(nodes)

    def choose(self, labels: Mapping[str, str], views: Sequence[TaskView],
               avoid: Collection[str] = ()) -> str:
        """The ready node with the fewest live instances of the new instance's release,
        then of its service, then at all, then by name, leaving out the nodes in `avoid`:
        each fleet spreads over the nodes, so losing one node costs a fleet one instance at
        most (while it has no more instances than there are nodes).

        >>> p = Placement({"a": Node("a", "10.0.0.1", True, "n1"),
        ...                "b": Node("b", "10.0.0.2", True, "n2"),
        ...                "c": Node("c", "10.0.0.3", False, "n3")})
        >>> v1 = {"corral.service": "web", "corral.release": "1"}
        >>> on_a = TaskView("x", "web-1", v1, {}, "running", "a")
        >>> p.choose(v1, [on_a])
        'b'
        >>> v2 = {"corral.service": "web", "corral.release": "2"}
        >>> on_b = TaskView("y", "web-2", v1, {}, "running", "b")
        >>> p.choose(v2, [on_a, on_b, TaskView("z", "web-3", v2, {}, "running", "b")])
        'a'
        """
        ready = [n for n in self.nodes.values() if n.ready and n.id not in avoid]
        if not ready:
            raise DriverError("no node of the swarm is ready to run an instance"
                              + (f" ({len(avoid)} did not take a task lately)" if avoid else ""),
                              hint="`docker node ls` on the manager shows the nodes")
        service, release = labels.get("corral.service"), labels.get("corral.release")

        def load(node: Node) -> tuple[int, int, int, str]:
            mine = [v for v in views if v.node == node.id and not v.ended]
            same = [v for v in mine if v.labels.get("corral.service") == service]
            fleet = sum(1 for v in same if v.labels.get("corral.release") == release)
            return fleet, len(same), len(mine), node.name
        return min(ready, key=load).id

    def address(self, node_id: str) -> str:
        node = self.nodes.get(node_id)
        return node.address if node else ""

    def is_ready(self, node_id: str) -> bool:
        node = self.nodes.get(node_id)
        return node is not None and node.ready


@dataclass(frozen=True)
class TaskView:
    """One instance: its service (labels, container spec) and its newest task."""

    service_name: str
    instance: str
    labels: Mapping[str, str]
    container_spec: Mapping[str, Any]
    state: str  # the task's state ("new", "pending", "running", "failed", …)
    node: str
    address: str = ""  # node address : published port, once running
    node_ready: bool = True
    exit_code: int | None = None
    error: str = ""
    started: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ended(self) -> bool:
        return self.state in ENDED

    @property
    def running(self) -> bool:
        """Running on a node Swarm still counts as ready (a lost node's tasks are not)."""
        return self.state == "running" and self.node_ready

    @property
    def failed(self) -> bool:
        return self.ended


def current_tasks(services: Iterable[Mapping[str, Any]], tasks: Iterable[Mapping[str, Any]],
                  placement: Placement | None) -> list[TaskView]:
    """One view per corral service: its newest task (a service without a task yet is
    "new")."""
    newest: dict[str, Mapping[str, Any]] = {}
    for task in tasks:
        kept = newest.get(task["ServiceID"])
        if kept is None or _order(task) > _order(kept):
            newest[task["ServiceID"]] = task
    return [_view(s, newest.get(s["ID"]), placement) for s in services
            if INSTANCE in s.get("Spec", {}).get("Labels", {})]


def describe_failure(view: TaskView) -> str:
    """Why a task ended, in Swarm's words, with the node it was on."""
    said = view.error or f"its task is {view.state}"
    return f"{said} (node {view.node[:12] or 'none'})"


def _order(task: Mapping[str, Any]) -> tuple[int, str]:
    return int(task.get("Version", {}).get("Index", 0)), str(task.get("CreatedAt", ""))


def _view(service: Mapping[str, Any], task: Mapping[str, Any] | None,
          placement: Placement | None) -> TaskView:
    spec = service.get("Spec", {})
    labels = spec.get("Labels", {})
    container = spec.get("TaskTemplate", {}).get("ContainerSpec", {})
    if task is None:
        return TaskView(spec.get("Name", ""), labels[INSTANCE], labels, container, "new",
                        labels.get(NODE, ""))
    status = task.get("Status", {})
    node = task.get("NodeID") or labels.get(NODE, "")
    ports = (status.get("PortStatus") or {}).get("Ports") or []
    host = placement.address(node) if placement else ""
    address = f"{host}:{ports[0]['PublishedPort']}" if ports and host else ""
    code = (status.get("ContainerStatus") or {}).get("ExitCode")
    return TaskView(
        service_name=spec.get("Name", ""), instance=labels[INSTANCE], labels=labels,
        container_spec=container, state=status.get("State", ""), node=node, address=address,
        node_ready=placement.is_ready(node) if placement else True,
        exit_code=code if isinstance(code, int) else None, error=status.get("Err", ""),
        started=status.get("Timestamp") if status.get("State") == "running" else None)
