"""Real Docker engines for tests: a private dockerd (or podman's compatible service), each
with its own data root, exec root, pid file and socket, started by the test and stopped by
pid, with the containers it still has killed first.

dockerd runs with the host's network but no bridge and no iptables rules of its own: the
container driver uses host networking, so nothing here touches the machine's firewall.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from loopback import poll

# What the busybox test image runs: a line on stdout, then httpd on the instance's PORT.
BUSYBOX_HTTPD = ("/bin/busybox", "sh", "-c",
                 "echo started $CORRAL_INSTANCE; exec /bin/busybox httpd -f -p $PORT -h /www")


def _ping(socket_path: Path) -> bool:
    import docker
    import requests

    if not socket_path.exists():
        return False
    try:
        docker.DockerClient(base_url=f"unix://{socket_path}", timeout=5).ping()
        return True
    except (requests.exceptions.RequestException, docker.errors.DockerException):
        return False


class Engine:
    """One running engine: its socket and its process."""

    def __init__(self, folder: Path, process: subprocess.Popen[bytes], socket_path: Path,
                 log: Path) -> None:
        self.folder = folder
        self.process = process
        self.socket = socket_path
        self.log = log

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    def client(self):  # type: ignore[no-untyped-def]
        import docker

        return docker.DockerClient(base_url=self.host, timeout=30)

    def remove_containers(self) -> None:
        """Kill and remove every container the engine has (a test's leftovers)."""
        with contextlib.suppress(Exception):
            client = self.client()
            for container in client.containers.list(all=True):
                with contextlib.suppress(Exception):
                    container.remove(force=True)

    def stop(self) -> None:
        """Remove its containers, then end the engine by pid: TERM, then KILL."""
        if self.process.poll() is None:
            self.remove_containers()
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        unmount_under(self.folder)


def unmount_under(folder: Path) -> None:
    """Unmount what an engine left mounted in its folder (dockerd's netns file, podman's
    overlay bind), deepest first, so the folder can be removed."""
    prefix = str(folder.resolve()) + "/"
    with open("/proc/self/mountinfo") as table:
        points = [line.split()[4] for line in table]
    for point in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)


def start_dockerd(folder: Path, *extra: str, netns: str | None = None) -> Engine:
    """A dockerd whose state is all under `folder`; inside network namespace `netns` (entered
    with nsenter --net, which keeps the cgroup mounts `ip netns exec` would hide)."""
    if shutil.which("dockerd") is None:
        pytest.skip("dockerd is not installed (scripts/setup.sh installs docker.io)")
    folder.mkdir(parents=True, exist_ok=True)
    socket_path = folder / "docker.sock"
    log = folder / "dockerd.log"
    argv = ["dockerd", "--data-root", str(folder / "data"), "--exec-root", str(folder / "exec"),
            "--pidfile", str(folder / "dockerd.pid"), "-H", f"unix://{socket_path}",
            "--exec-opt", "native.cgroupdriver=cgroupfs", *extra]
    if netns is not None:
        argv = ["nsenter", f"--net=/run/netns/{netns}", *argv]
    with log.open("ab") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    engine = Engine(folder, process, socket_path, log)
    try:
        poll(lambda: process.poll() is not None or _ping(socket_path), 60, "dockerd to answer")
    except AssertionError:
        engine.stop()
        raise
    if process.poll() is not None:
        raise AssertionError(f"dockerd exited: {log.read_text()[-2000:]}")
    return engine


def local_dockerd(folder: Path) -> Engine:
    """A dockerd on the host's network without a bridge: for the container driver."""
    return start_dockerd(folder, "--bridge=none", "--iptables=false", "--ip-masq=false")


PODMAN_CONF = """\
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"

[containers]
default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]
"""


def start_podman(folder: Path) -> Engine:
    """`podman system service` on a private socket, storage and config (runc, cgroupfs: crun
    fails on this kernel; ulimits with soft == hard)."""
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed (scripts/setup.sh installs it)")
    folder.mkdir(parents=True, exist_ok=True)
    conf = folder / "containers.conf"
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]  # raising it is refused here
    nproc = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    conf.write_text(PODMAN_CONF.format(nofile=nofile, nproc=nproc))
    socket_path = folder / "podman.sock"
    log = folder / "podman.log"
    env = {**os.environ, "CONTAINERS_CONF": str(conf)}
    argv = ["podman", "--root", str(folder / "root"), "--runroot", str(folder / "run"),
            "--tmpdir", str(folder / "tmp"), "system", "service", "--time=0",
            f"unix://{socket_path}"]
    with log.open("ab") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env,
                                   start_new_session=True)
    engine = Engine(folder, process, socket_path, log)
    try:
        poll(lambda: process.poll() is not None or _ping(socket_path), 60, "podman to answer")
    except AssertionError:
        engine.stop()
        raise
    if process.poll() is not None:
        raise AssertionError(f"podman exited: {log.read_text()[-2000:]}")
    return engine


def wait_gone(pid: int, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
