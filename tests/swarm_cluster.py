"""A real 3-node Docker Swarm on one machine, for the Swarm driver's tests and bench/swarm.py.

Three dockerd, each in a network namespace made here (entered with `nsenter --net`: `ip netns
exec` remounts /sys and hides the cgroup v1 mounts dockerd needs), joined by a bridge on the
host; each with its own data root, exec root, pid file and socket. A docker-registry listens
on the bridge's host address, so every node pulls from it. Swarm's routing mesh needs IPVS,
which this kernel lacks: services publish host-mode ports only. Every node reports the same
hostname, so each gets a node label `corral.node=nN`. Everything is removed by `stop`:
containers, daemons (by pid), the registry, the namespaces and the bridge. Each node's
containers live under the cgroup parent `/NAME`, so a killed node's containers are found.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import time
from pathlib import Path

import httpx

from docker_engines import Engine, start_dockerd
from loopback import poll

SUBNET = "10.213.{net}"


def _ip(*args: str, check: bool = True) -> None:
    subprocess.run(["ip", *args], check=check, capture_output=True)


class Cluster:
    """Bridge `br`, namespaces `names`, one dockerd per namespace, a registry on the host."""

    def __init__(self, folder: Path, net: int = 0) -> None:
        tag = secrets.token_hex(2)
        self.folder = folder
        self.bridge = f"c13b{tag}"
        self.names = [f"c13n{tag}{i}" for i in range(1, 4)]
        self.prefix = SUBNET.format(net=net)
        self.host_ip = f"{self.prefix}.1"
        self.node_ips = [f"{self.prefix}.{10 + i}" for i in range(1, 4)]
        self.registry_address = f"{self.host_ip}:5000"
        self.engines: list[Engine] = []
        self.registry: subprocess.Popen[bytes] | None = None

    # -- set up ------------------------------------------------------------------------

    def start(self) -> Cluster:
        try:
            self._network()
            self._start_registry()
            for name, ip in zip(self.names, self.node_ips, strict=True):
                self.engines.append(start_dockerd(
                    self.folder / name, "--insecure-registry", self.registry_address,
                    "--ip", ip, "--cgroup-parent", f"/{name}", netns=name))
            self._join()
        except BaseException:
            self.stop()
            raise
        return self

    def _network(self) -> None:
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.host_ip}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        # Bridged frames pass the host's iptables here (br_netfilter), whose FORWARD policy
        # a host dockerd sets to DROP: accept what stays on this bridge, and only that.
        subprocess.run(["iptables", "-I", "FORWARD", "1", *self._forward_rule()], check=True,
                       capture_output=True)
        for index, (name, ip) in enumerate(zip(self.names, self.node_ips, strict=True)):
            outer, inner = f"{self.bridge}v{index}", f"{self.bridge}p{index}"
            _ip("netns", "add", name)
            _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
            _ip("link", "set", outer, "master", self.bridge)
            _ip("link", "set", outer, "up")
            _ip("link", "set", inner, "netns", name)
            _ip("-n", name, "link", "set", "lo", "up")
            _ip("-n", name, "link", "set", inner, "name", "eth0")
            _ip("-n", name, "addr", "add", f"{ip}/24", "dev", "eth0")
            _ip("-n", name, "link", "set", "eth0", "up")
            _ip("-n", name, "route", "add", "default", "via", self.host_ip)

    def _start_registry(self) -> None:
        folder = self.folder / "registry"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.yml").write_text(
            "version: 0.1\nlog:\n  level: warn\n"
            f"storage:\n  filesystem:\n    rootdirectory: {folder / 'storage'}\n"
            f"http:\n  addr: {self.registry_address}\n")
        with (folder / "registry.log").open("wb") as out:
            self.registry = subprocess.Popen(["docker-registry", "serve",
                                              str(folder / "config.yml")],
                                             stdout=out, stderr=subprocess.STDOUT)
        poll(lambda: _answers(f"http://{self.registry_address}/v2/"), 30, "the registry")

    def _join(self) -> None:
        manager = self.engines[0].client()
        manager.swarm.init(advertise_addr=self.node_ips[0], listen_addr=f"{self.node_ips[0]}:2377",
                           task_history_retention_limit=2)
        token = manager.swarm.attrs["JoinTokens"]["Worker"]
        for engine, ip in zip(self.engines[1:], self.node_ips[1:], strict=True):
            engine.client().swarm.join(remote_addrs=[f"{self.node_ips[0]}:2377"],
                                       join_token=token, advertise_addr=ip,
                                       listen_addr=f"{ip}:2377")
        poll(lambda: len([n for n in manager.nodes.list()
                          if n.attrs["Status"]["State"] == "ready"]) == 3, 60, "3 ready nodes")
        for node in manager.nodes.list():
            address = node.attrs["Status"]["Addr"]
            label = f"n{self.node_ips.index(address) + 1}"
            spec = node.attrs["Spec"]
            spec["Labels"] = {**spec.get("Labels", {}), "corral.node": label}
            node.update(spec)

    # -- use ---------------------------------------------------------------------------

    @property
    def manager(self) -> Engine:
        return self.engines[0]

    def kill_node(self, index: int) -> None:
        """kill -9 one node's dockerd and its containers, as a machine that vanished."""
        engine = self.engines[index]
        pid = int((engine.folder / "dockerd.pid").read_text())
        os.kill(pid, signal.SIGKILL)
        engine.process.wait(10)
        _kill_node_processes(self.names[index])

    # -- tear down ---------------------------------------------------------------------

    def stop(self) -> None:
        for engine in reversed(self.engines):
            with contextlib.suppress(Exception):
                engine.stop()
        for name in self.names:
            _kill_node_processes(name)
        if self.registry is not None and self.registry.poll() is None:
            self.registry.terminate()
            try:
                self.registry.wait(10)
            except subprocess.TimeoutExpired:
                self.registry.kill()
        for name in self.names:
            _ip("netns", "delete", name, check=False)
        _ip("link", "delete", self.bridge, check=False)
        subprocess.run(["iptables", "-D", "FORWARD", *self._forward_rule()], check=False,
                       capture_output=True)

    def _forward_rule(self) -> list[str]:
        return ["-i", self.bridge, "-o", self.bridge, "-j", "ACCEPT"]


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _kill_node_processes(name: str) -> None:
    """SIGKILL every process a node left behind: its shims (in the node's network namespace,
    found by its inode) and its containers (each in a namespace of its own, found by the
    node's cgroup parent `/NAME`). Nothing outside the node is touched."""
    try:
        namespace = os.stat(f"/run/netns/{name}").st_ino
    except OSError:
        namespace = None
    for _ in range(3):
        found = [pid for pid in _pids() if _is_of_node(pid, name, namespace)]
        if not found:
            return
        for pid in found:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)


def _pids() -> list[int]:
    return [int(e) for e in os.listdir("/proc") if e.isdigit() and int(e) != os.getpid()]


def _is_of_node(pid: int, name: str, namespace: int | None) -> bool:
    try:
        if namespace is not None and os.stat(f"/proc/{pid}/ns/net").st_ino == namespace:
            return True
        cgroups = Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return False
    return any(line.split(":", 2)[-1].startswith(f"/{name}/") for line in cgroups.splitlines())
