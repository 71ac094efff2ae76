"""The process driver's confinement against the real kernel: cgroup limits on this host's
layout, an OOM kill seen as such, a fork bomb capped, and syscalls the filter denies."""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from corral.drivers import ProcessDriver
from corral.drivers import cgroups as cgroupfs
from corral.ports.records import InstanceSpec, Limits, Observed
from loopback import poll

pytestmark = pytest.mark.integration

SERVER = """
import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"""
HOG = "blocks = []\nwhile True: blocks.append(bytearray(8 << 20))\n"
FORK_BOMB = """
import os, sys, time, errno
made, refused = 0, 0
for _ in range(400):
    try:
        if os.fork() == 0:
            time.sleep(60); os._exit(0)
        made += 1
    except OSError as exc:
        refused += 1
print(made, refused, flush=True)
time.sleep(60)
"""
SYSCALLS = r"""
import ctypes, json, os
libc = ctypes.CDLL(None, use_errno=True)
def errno_of(result):
    return 0 if result == 0 else ctypes.get_errno()
status = dict(l.split(":", 1) for l in open("/proc/self/status") if ":" in l)
print(json.dumps({
    "unshare": errno_of(libc.unshare(0x10000000)),
    "mount": errno_of(libc.mount(b"none", b"/tmp", b"tmpfs", 0, None)),
    "keyctl": errno_of(libc.syscall(250, 0, 0, 0, 0, 0)),
    "ptrace": errno_of(libc.ptrace(0, 0, None, None)),
    "no_new_privs": status["NoNewPrivs"].strip(), "seccomp": status["Seccomp"].strip(),
    "getpid_works": os.getpid() > 0,
}), flush=True)
"""


@pytest.fixture(scope="module")
def layout() -> cgroupfs.Cgroups:
    found = cgroupfs.prepare(cgroupfs.detect())
    if not found.is_usable:
        pytest.skip(f"this host has {found.describe()}")
    return found


@pytest.fixture
def driver(tmp_path: Path, layout: cgroupfs.Cgroups) -> Iterator[ProcessDriver]:
    driver = ProcessDriver(tmp_path / ".corral")
    yield driver
    for observed in driver.list():
        driver.stop(observed.id, grace=0)


@pytest.fixture
def spec(debian_rootfs: Path) -> Callable[..., InstanceSpec]:
    def make(instance_id: str, code: str, **fields: Any) -> InstanceSpec:
        return InstanceSpec(id=instance_id, service="web", release=1, image_digest="sha256:ab",
                            rootfs=str(debian_rootfs), argv=("python3", "-c", code), env={},
                            **fields)
    return make


def answers(address: str) -> bool:
    host, port = address.split(":")
    try:
        conn = http.client.HTTPConnection(host, int(port), timeout=2)
        conn.request("GET", "/")
        return conn.getresponse().status == 200
    except OSError:
        return False


def exited(driver: ProcessDriver, instance_id: str) -> Observed:
    return poll(lambda: (o := driver.inspect(instance_id)) is not None and not o.running and o,
                60, f"{instance_id} to exit")


def test_a_memory_hog_is_oom_killed_and_its_neighbour_keeps_serving(
        driver: ProcessDriver, spec: Callable[..., InstanceSpec]) -> None:
    neighbour = driver.start(spec("web-ok", SERVER, limits=Limits(memory=64 << 20)))
    poll(lambda: answers(neighbour.address), 30, "the neighbour to answer")
    driver.start(spec("web-hog", HOG, limits=Limits(memory=48 << 20, memory_max=64 << 20)))

    seen = exited(driver, "web-hog")

    assert seen.oom_killed
    assert not driver.inspect("web-ok").oom_killed  # type: ignore[union-attr]
    assert answers(neighbour.address)
    usage = driver.usage("web-ok")
    assert usage is not None and usage.memory_limit == 64 << 20
    assert usage.memory is not None and 0 < usage.memory < 64 << 20


def test_an_instance_that_exits_by_itself_is_not_called_oom_killed(
        driver: ProcessDriver, spec: Callable[..., InstanceSpec]) -> None:
    driver.start(spec("web-quits", "raise SystemExit(3)", limits=Limits(memory=64 << 20)))

    seen = exited(driver, "web-quits")

    assert (seen.exit_code, seen.oom_killed) == (3, False)


def test_a_fork_bomb_is_capped_by_pids(driver: ProcessDriver,
                                       spec: Callable[..., InstanceSpec]) -> None:
    driver.start(spec("web-bomb", FORK_BOMB, limits=Limits(pids=32)))

    line = poll(lambda: driver.log_paths("web-bomb")[0].read_text().strip(), 60, "its tally")
    made, refused = map(int, line.split())

    assert made < 32 and refused > 0
    usage = driver.usage("web-bomb")
    assert usage is not None and usage.pids_limit == 32 and usage.pids is not None
    assert usage.pids <= 32


def test_a_cpu_hog_is_throttled_at_its_quota(driver: ProcessDriver,
                                             spec: Callable[..., InstanceSpec]) -> None:
    driver.start(spec("web-cpu", "while True: pass", limits=Limits(cpus=0.25)))
    groups = driver._load("web-cpu").cgroups  # type: ignore[union-attr]
    stat = Path(groups.get("cpu") or groups["unified"]) / "cpu.stat"

    def throttled() -> int:
        return int(dict(line.split() for line in stat.read_text().splitlines())["nr_throttled"])

    poll(throttled, 60, "the kernel to throttle the hog")
    usage = driver.usage("web-cpu")
    assert usage is not None and usage.cpus == 0.25 and usage.cpu_seconds is not None


def test_the_sandbox_denies_namespace_mount_key_and_ptrace_calls(
        driver: ProcessDriver, spec: Callable[..., InstanceSpec]) -> None:
    driver.start(spec("web-calls", SYSCALLS))

    found = json.loads(poll(lambda: driver.log_paths("web-calls")[0].read_text(), 60))

    assert found == {"unshare": 1, "mount": 1, "keyctl": 1, "ptrace": 1,
                     "no_new_privs": "1", "seccomp": "2", "getpid_works": True}


def test_allow_syscalls_lets_a_service_make_a_denied_call(
        driver: ProcessDriver, spec: Callable[..., InstanceSpec]) -> None:
    driver.start(spec("web-keys", SYSCALLS, allow_syscalls=("keyctl",)))

    found = json.loads(poll(lambda: driver.log_paths("web-keys")[0].read_text(), 60))

    assert found["keyctl"] != 1 and found["unshare"] == 1


def test_stopping_an_instance_removes_its_groups(driver: ProcessDriver,
                                                 spec: Callable[..., InstanceSpec]) -> None:
    driver.start(spec("web-gone", "import time; time.sleep(60)", limits=Limits(pids=64)))
    groups = [Path(p) for p in driver._load("web-gone").cgroups.values()]  # type: ignore[union-attr]
    assert groups and all(g.is_dir() for g in groups)

    driver.stop("web-gone", grace=0)

    assert not any(g.exists() for g in groups)
