"""Runtime drift against real bubblewrap instances: programs that exec, set their env, rewrite
their argv or fork workers run through several reconcile and drift sweeps untouched, while a
shell entered with nsenter, or a mount added from outside, gets the instance replaced."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.core.drift import ExpectedRuntime, intruders, runtime_drift
from corral.core.release import config_digest, release_config
from corral.drivers import ProcessDriver, procfs
from corral.engine.delivery.instances import Instances
from corral.engine.fleet import Fleets
from corral.engine.operate.drift import DriftWatch
from corral.engine.operate.health import HealthMonitor
from corral.engine.operate.reconcile import Reconciler
from corral.ports.records import Event, ImageConfig, Instance, InstanceSpec, InstanceState
from corral.ports.runtime import RuntimeFacts
from corral.routers.fake import FakeRouter
from corral.spec.model import HealthSpec, ServiceSpec
from corral.stores.memory import MemoryStore
from loopback import poll

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="nsenter into a sandbox needs root")
BUSYBOX = shutil.which("busybox") or "/bin/busybox"
SHELL_FORM = ("/bin/busybox", "sh", "-c", "exec /bin/busybox httpd -f -p $PORT -h /www")
SERVER = """
import os, socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(os.environ["PORT"])))
s.listen(64)
while True:
    c, _ = s.accept()
    c.close()
"""
# sets its own environment, leaves its working folder, then execs the server
SETENV_EXEC = """
import os, sys
os.environ["MODE"] = "set by the app"
del os.environ["CORRAL_RELEASE"]
os.chdir("/tmp")
os.execv(sys.executable, [sys.executable, "-c", sys.argv[1]])
"""
# rewrites its argv in place, as setproctitle does (stat fields 48-49: arg_start, arg_end)
RETITLE = """
import ctypes, sys
fields = open("/proc/self/stat").read().rpartition(")")[2].split()
start, end = int(fields[45]), int(fields[46])
title = b"app: master process"
ctypes.memmove(start, title + b"\\0" * (end - start - len(title)), end - start)
ctypes.CDLL(None).prctl(15, b"app-master", 0, 0, 0)
exec(sys.argv[1])
"""
FORKING = SERVER.replace("while True:", """for _ in range(3):
    if os.fork() == 0:
        while True:
            c, _ = s.accept()
            c.close()
os.wait()
while True:""")


class RootImages:
    """The two image-store reads the engine makes, over roots the test made (the image
    store has its own tests; here the subject is the sandbox and the drift check)."""

    def __init__(self) -> None:
        self.roots: dict[str, Path] = {}

    def add(self, root: Path) -> str:
        digest = "sha256:" + hashlib.sha256(str(root).encode()).hexdigest()
        self.roots[digest] = root
        return digest

    def config(self, digest: str) -> ImageConfig:
        return ImageConfig(digest=digest, env={"PATH": "/usr/bin:/bin"})

    def unpack(self, digest: str) -> Path:
        return self.roots[digest]


class Rig:
    """A controller's loops over a real process driver: health checks (tcp readiness, and
    an exec liveness check through nsenter that is in flight most of the time), the
    reconciler and the drift watch, with short periods."""

    def __init__(self, tmp: Path) -> None:
        self.store = MemoryStore()
        self.router = FakeRouter()
        self.router.ensure_running()
        self.driver = ProcessDriver(tmp / ".corral")
        self.images = RootImages()
        self.fleets = Fleets(self.store, self.router, time.time, "tester")
        self.instances = Instances(self.driver, self.router, self.images, self.fleets,  # type: ignore[arg-type]
                                   time.time, tmp / "volumes")
        self.specs: dict[int, ServiceSpec] = {}
        self.monitor = HealthMonitor(self.fleets, self.driver, self._health, time.time,
                                     liveness_of=self._liveness)
        self.reconciler = Reconciler(self.store, self.instances, "tester",
                                     period=0.5, unknown_grace=0.5)
        self.drift = DriftWatch(self.store, self.fleets, self.images, self.driver,  # type: ignore[arg-type]
                                self.reconciler.condemn, time.time, "tester",
                                verify_period=60, runtime_period=0.3)
        self.drift.start()
        self.monitor.start()
        self.reconciler.start()

    def _health(self, instance: Instance) -> HealthSpec | None:
        return self.specs[instance.release].health

    def _liveness(self, instance: Instance) -> HealthSpec | None:
        return self.specs[instance.release].liveness

    def release(self, root: Path, command: tuple[str, ...], liveness: list[str],
                replicas: int = 2) -> None:
        digest = self.images.add(root)
        spec = ServiceSpec.model_validate({
            "image": digest, "replicas": replicas, "command": list(command),
            "router": {"listen": "127.0.0.1:18997"},
            "health": {"kind": "tcp", "interval": "1s", "start_timeout": "30s"},
            "liveness": {"kind": "exec", "command": liveness, "interval": "200ms",
                         "timeout": "5s"}})
        config = release_config(spec, digest)
        event = Event(at=time.time(), actor="tester", action="release.create", subject="web")
        release = self.store.add_release("web", digest, config_digest(config), config,
                                         time.time(), event)
        self.specs[release.version] = spec
        self.store.set_live_release("web", release.version, event)
        self.fleets.set_listen("web", "127.0.0.1:18997")

    def ready(self, count: int) -> list[Instance]:
        fleet = self.fleets.of_service("web")
        ready = [i for i in fleet if i.state is InstanceState.READY]
        return ready if len(ready) == count == len(fleet) else []

    def sweeps(self, count: int) -> None:
        """Run `count` drift checks, each followed by a reconcile sweep of the loop."""
        for _ in range(count):
            assert self.drift.check_runtime() == {}
            done = self.reconciler.stats.sweeps
            poll(lambda done=done: self.reconciler.stats.sweeps > done,
                 what="a reconcile sweep")

    def events(self, action: str) -> list[Event]:
        return [e for e in self.store.events() if e.action == action]

    def stop(self) -> None:
        self.drift.stop()
        self.reconciler.stop()
        self.monitor.stop()
        for observed in self.driver.list():
            self.driver.stop(observed.id, grace=0.5)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    rig = Rig(tmp_path)
    yield rig
    rig.stop()


@pytest.fixture
def busybox_root(tmp_path: Path) -> Path:
    """A scratch root: the static busybox, a page to serve, and the runtime's mount points."""
    root = tmp_path / "busybox-root"
    for folder in ("bin", "www", "proc", "dev", "tmp"):
        (root / folder).mkdir(parents=True)
    shutil.copy(BUSYBOX, root / "bin" / "busybox")
    (root / "www" / "index.html").write_text("<h1>hi</h1>\n")
    return root


def assert_untouched(rig: Rig, before: list[Instance]) -> list[RuntimeFacts]:
    """Three more sweeps replace nothing: the same instances are ready, no drift recorded,
    though exec liveness checks entered them meanwhile."""
    poll(lambda: any(p.exec_check for i in before if (f := rig.driver.runtime(i.id))
                     for p in f.processes), what="an exec check seen in flight")
    rig.sweeps(3)
    assert {i.id for i in rig.ready(len(before))} == {i.id for i in before}
    assert not rig.events("drift.runtime"), rig.events("drift.runtime")[0].detail
    assert not rig.events("reconcile.replace")
    facts = [rig.driver.runtime(i.id) for i in before]
    assert all(f is not None for f in facts)
    return facts  # type: ignore[return-value]


def test_a_shell_form_entrypoint_that_execs_its_server_is_never_replaced(
        rig: Rig, busybox_root: Path) -> None:
    rig.release(busybox_root, SHELL_FORM, ["/bin/busybox", "sleep", "0.4"])
    before = poll(lambda: rig.ready(2))
    for facts in assert_untouched(rig, before):
        assert facts.argv[:2] == ("/bin/busybox", "httpd"), "the shell exec'd httpd"


def test_a_python_app_that_sets_its_env_and_execs_is_never_replaced(
        rig: Rig, debian_rootfs: Path) -> None:
    rig.release(debian_rootfs, ("python3", "-c", SETENV_EXEC, SERVER), ["/usr/bin/sleep", "0.4"])
    before = poll(lambda: rig.ready(2))
    for facts in assert_untouched(rig, before):
        assert facts.env["MODE"] == "set by the app" and "CORRAL_RELEASE" not in facts.env
        assert facts.argv[-1] == SERVER and SETENV_EXEC not in facts.argv


def test_a_program_that_rewrites_its_argv_is_never_replaced(
        rig: Rig, debian_rootfs: Path) -> None:
    rig.release(debian_rootfs, ("python3", "-c", RETITLE, SERVER), ["/usr/bin/sleep", "0.4"])
    before = poll(lambda: rig.ready(2))
    for facts in assert_untouched(rig, before):
        assert facts.argv == ("app: master process",)


def test_a_forking_server_with_workers_is_never_replaced(
        rig: Rig, debian_rootfs: Path) -> None:
    rig.release(debian_rootfs, ("python3", "-c", FORKING), ["/usr/bin/sleep", "0.4"])
    before = poll(lambda: rig.ready(2))
    for facts in assert_untouched(rig, before):
        assert len(facts.processes) >= 4, "a master and three workers"


@needs_root
def test_a_shell_entered_with_nsenter_gets_the_instance_replaced_with_the_ledger_saying_who(
        rig: Rig, busybox_root: Path) -> None:
    rig.release(busybox_root, SHELL_FORM, ["/bin/busybox", "sleep", "0.4"])
    before = poll(lambda: rig.ready(2))
    victim, other = sorted(i.id for i in before)
    facts = rig.driver.runtime(victim)
    assert facts is not None
    shell = subprocess.Popen(["nsenter", "-t", str(facts.pid), "-m", "-p", "-U",
                              "--preserve-credentials", "--", "/bin/busybox", "sh", "-c",
                              "/bin/busybox sleep 60"])
    try:
        after = poll(lambda: (r := rig.ready(2)) and victim not in {i.id for i in r} and r)
    finally:
        shell.kill()
        shell.wait()
    assert other in {i.id for i in after}, "only the entered instance is replaced"
    event = next(e for e in rig.events("drift.runtime") if e.detail["instance"] == victim)
    assert any(d.startswith("process ") and "entered from outside" in d and "(uid 0)" in d
               for d in event.detail["differences"])
    entered = event.detail["entered"]
    assert shell.pid in {p["pid"] for p in entered}
    assert any(p["argv"] == ["/bin/busybox", "sleep", "60"] and p["uid"] == 0 for p in entered)
    replaced = next(e for e in rig.events("reconcile.replace")
                    if e.detail.get("replaces") == victim)
    assert replaced.detail["cause"] == "drifted" and "entered from outside" in \
        replaced.detail["reason"]


# -- the driver alone ------------------------------------------------------------------

@pytest.fixture
def driver(tmp_path: Path) -> Iterator[ProcessDriver]:
    driver = ProcessDriver(tmp_path / ".corral")
    yield driver
    for observed in driver.list():
        driver.stop(observed.id, grace=0.5)


def start(driver: ProcessDriver, root: Path) -> RuntimeFacts:
    driver.start(InstanceSpec(id="web-1", service="web", release=1, image_digest="sha256:ab",
                              rootfs=str(root), argv=SHELL_FORM, env={}))
    facts: RuntimeFacts | None = poll(lambda: driver.runtime("web-1"))
    assert facts is not None
    return facts


def drift_of(driver: ProcessDriver) -> list[str]:
    facts = driver.runtime("web-1")
    assert facts is not None
    return runtime_drift(ExpectedRuntime("sha256:ab"), facts)


def test_an_exec_check_in_flight_is_not_an_intruder_and_leaves_nothing_behind(
        driver: ProcessDriver, busybox_root: Path) -> None:
    start(driver, busybox_root)
    check = threading.Thread(target=driver.exec_in, args=("web-1", [
        "/bin/busybox", "sh", "-c", "/bin/busybox sleep 97 & /bin/busybox sleep 3"], 10))
    check.start()
    seen = poll(lambda: (f := driver.runtime("web-1")) and any(
        p.argv[-1:] == ("97",) for p in f.processes) and f)
    assert all(p.exec_check for p in seen.processes if p.pid != seen.pid)
    assert runtime_drift(ExpectedRuntime("sha256:ab"), seen) == []
    check.join()
    poll(lambda: (f := driver.runtime("web-1")) and not any(
        p.argv[-1:] == ("97",) for p in f.processes), what="the check's leftover killed")
    assert drift_of(driver) == []


@needs_root
def test_what_did_not_change_is_not_read_again_and_an_entered_process_is(
        driver: ProcessDriver, busybox_root: Path) -> None:
    first = start(driver, busybox_root)
    again = driver.runtime("web-1")
    assert again is not None
    assert again.processes is first.processes and again.mounts is first.mounts
    shell = subprocess.Popen(["nsenter", "-t", str(first.pid), "-m", "-p", "-U",
                              "--preserve-credentials", "--", "/bin/busybox", "sleep", "30"])
    try:
        entered = poll(lambda: [p for p in intruders(driver.runtime("web-1"))  # type: ignore[arg-type]
                                if p.argv[-1:] == ("30",)], what="the entered process")
        assert entered
    finally:
        shell.kill()
        shell.wait()


@needs_root
def test_a_mount_added_from_outside_is_drift(driver: ProcessDriver,
                                             busybox_root: Path) -> None:
    facts = start(driver, busybox_root)
    assert drift_of(driver) == []
    subprocess.run(["nsenter", "-t", str(facts.pid), "-m", "--", "/bin/busybox", "mount",
                    "-t", "tmpfs", "intruder", "/www"], check=True)
    assert [d for d in drift_of(driver) if d.startswith("mount /www added: tmpfs (tmpfs, rw")]


def test_an_instance_started_without_a_snapshot_is_measured_from_its_first_observation(
        driver: ProcessDriver, busybox_root: Path, tmp_path: Path) -> None:
    start(driver, busybox_root)
    record = tmp_path / ".corral" / "run" / "instances" / "web-1" / "instance.json"
    raw = json.loads(record.read_text())
    assert raw.pop("launched")["taken"] == "start"
    record.write_text(json.dumps(raw))  # as an older driver wrote it
    adopted = ProcessDriver(tmp_path / ".corral").runtime("web-1")
    assert adopted is not None and adopted.launched is not None
    assert adopted.launched.taken == "adopted"
    assert runtime_drift(ExpectedRuntime("sha256:ab"), adopted) == []
    again = ProcessDriver(tmp_path / ".corral").runtime("web-1")
    assert again is not None and again.launched == adopted.launched


def test_a_killed_instance_is_failed_by_the_exit_notice_not_by_a_listing(
        tmp_path: Path, busybox_root: Path) -> None:
    """The health monitor lists the driver only once here (its first sweep; the next listing
    is due in 1e9 s) and has no readiness check to fail: only the driver's exit notice (its
    pidfd) can move the killed instance to failed."""
    store, router = MemoryStore(), FakeRouter()
    driver = ProcessDriver(tmp_path / ".corral")
    images = RootImages()
    fleets = Fleets(store, router, time.time, "tester")
    instances = Instances(driver, router, images, fleets, time.time,  # type: ignore[arg-type]
                          tmp_path / "volumes")
    monitor = HealthMonitor(fleets, driver, lambda instance: None, time.time, exits_every=1e9)
    digest = images.add(busybox_root)
    spec = ServiceSpec.model_validate({"image": digest, "command": list(SHELL_FORM)})
    event = Event(at=time.time(), actor="tester", action="release.create", subject="web")
    config = release_config(spec, digest)
    release = store.add_release("web", digest, config_digest(config), config, time.time(),
                                event)
    instance = instances.start(release)
    monitor.start()
    try:
        assert driver.kill(instance.id)
        failed = poll(lambda: (i := store.get_instance(instance.id)) is not None
                      and i.state is InstanceState.FAILED and i, 30, "the instance failed")
        assert fleets.get(instance.id) is None
        assert failed.reason == "exited with code 137", failed.reason  # 128 + SIGKILL
    finally:
        monitor.stop()
        for observed in driver.list():
            driver.stop(observed.id, grace=0.5)


def test_an_instance_whose_command_was_killed_has_exited_though_its_children_still_run(
        driver: ProcessDriver, busybox_root: Path) -> None:
    """A shell-form command whose shell does not exec its server: killing the shell (what
    `corral chaos --kill` does) leaves the server running in the sandbox. The instance has
    exited all the same, as a container ends with its PID 1, so it is replaced; stopping it
    ends what was left behind."""
    leaves_a_server = ("/bin/busybox", "sh", "-c",
                       "/bin/busybox httpd -f -p $PORT -h /www & wait")
    driver.start(InstanceSpec(id="web-1", service="web", release=1, image_digest="sha256:ab",
                              rootfs=str(busybox_root), argv=leaves_a_server, env={}))
    server = poll(lambda: next((p for p in getattr(driver.runtime("web-1"), "processes", ())
                                if "httpd" in p.argv), None), what="the server started")
    assert driver.kill("web-1")  # the shell, the sandbox's first process
    exited = poll(lambda: (o := driver.inspect("web-1")) is not None and not o.running and o,
                  30, "the instance to be seen as exited")
    assert exited.exit_code == 137
    assert procfs.read_stat(server.pid) is not None, "the server was left running"
    driver.stop("web-1", grace=1)
    poll(lambda: procfs.read_stat(server.pid) is None, 30, "what was left behind to end")
