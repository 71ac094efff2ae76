"""The process driver against real bubblewrap: isolation, survival, stopping, failures."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from corral.drivers import ProcessDriver
from corral.drivers.procfs import is_alive, read_stat
from corral.errors import DriverError, SandboxUnavailable
from corral.ports.records import InstanceSpec, Observed
from loopback import poll

pytestmark = pytest.mark.integration

SLEEPER = "import time\nwhile True: time.sleep(60)\n"

# Reports what the sandbox looks like from inside, as one JSON line on stdout.
PROBE = r"""
import json, os, socket
def can_write(path):
    try:
        with open(path, "w") as f:
            f.write("x")
        return True
    except OSError:
        return False
status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
print(json.dumps({
    "uid": os.getuid(), "gid": os.getgid(), "cap_eff": status["CapEff"].strip(),
    "root_writable": can_write("/x"), "tmp_writable": can_write("/tmp/probe"),
    "tmp_entries": sorted(os.listdir("/tmp")), "has_bwrap": os.path.exists("/usr/bin/bwrap"),
    "debian_version": open("/etc/debian_version").read(), "hostname": socket.gethostname(),
    "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
    "environ": dict(kv.split("=", 1) for kv in
                    open("/proc/self/environ").read().split("\0") if kv),
}))
"""


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / ".corral"


@pytest.fixture
def driver(state_dir: Path) -> Iterator[ProcessDriver]:
    driver = ProcessDriver(state_dir)
    yield driver
    for observed in ProcessDriver(state_dir).list():
        driver.stop(observed.id, grace=0.5)


@pytest.fixture
def spec(debian_rootfs: Path) -> Callable[..., InstanceSpec]:
    def make(instance_id: str, code: str, **fields: Any) -> InstanceSpec:
        return InstanceSpec(id=instance_id, service="web", release=1, image_digest="sha256:ab",
                            rootfs=str(debian_rootfs), argv=("python3", "-c", code),
                            **{"env": {}, **fields})
    return make


def exited(driver: ProcessDriver, instance_id: str) -> Observed:
    return poll(lambda: (o := driver.inspect(instance_id)) is not None and not o.running and o)


def stdout_of(driver: ProcessDriver, instance_id: str) -> str:
    return driver.log_paths(instance_id)[0].read_text()


@pytest.fixture
def probe(driver: ProcessDriver, spec: Callable[..., InstanceSpec]) -> Callable[..., dict]:
    def run(**fields: Any) -> dict[str, Any]:
        driver.start(spec("probe", PROBE, **fields))
        assert exited(driver, "probe").exit_code == 0, driver.log_paths("probe")[1].read_text()
        report: dict[str, Any] = json.loads(stdout_of(driver, "probe"))
        return report
    return run


def test_the_app_runs_as_uid_65534_with_no_capabilities(probe: Callable[..., dict]) -> None:
    report = probe(user="0:0")
    assert (report["uid"], report["gid"]) == (65534, 65534)
    assert int(report["cap_eff"], 16) == 0


def test_the_image_root_is_read_only(probe: Callable[..., dict]) -> None:
    assert probe()["root_writable"] is False


def test_tmp_is_private_and_writable(probe: Callable[..., dict]) -> None:
    marker = Path("/tmp") / f"corral-host-marker-{uuid.uuid4().hex}"
    marker.write_text("host")
    try:
        report = probe()
    finally:
        marker.unlink()
    assert report["tmp_writable"] is True
    assert report["tmp_entries"] == ["probe"]


def test_the_host_file_system_is_not_visible(probe: Callable[..., dict],
                                            debian_rootfs: Path) -> None:
    assert Path("/usr/bin/bwrap").exists()
    report = probe()
    assert report["has_bwrap"] is False
    assert report["debian_version"] == (debian_rootfs / "etc/debian_version").read_text()


def test_the_app_sees_only_its_own_processes_and_its_instance_id_as_hostname(
        probe: Callable[..., dict]) -> None:
    report = probe()
    assert report["pids"] == [1, 2]  # bwrap's namespace init and the app
    assert report["hostname"] == "probe"


def test_the_environment_is_exactly_the_given_one_plus_port(
        driver: ProcessDriver, probe: Callable[..., dict]) -> None:
    report = probe(env={"GREETING": "hello", "PORT": "8000"})
    port = driver.inspect("probe").address.rsplit(":", 1)[1]  # type: ignore[union-attr]
    # PWD is set by bwrap itself after --chdir; nothing of the host's environment leaks in
    assert report["environ"] == {"GREETING": "hello", "PORT": port, "PWD": "/"}


def children_of_this_process() -> list[int]:
    """Every process, zombies included, whose parent is this test process."""
    found = []
    for entry in Path("/proc").iterdir():
        stat = read_stat(int(entry.name)) if entry.name.isdigit() else None
        if stat is not None and stat.ppid == os.getpid():
            found.append(stat.pid)
    return found


def test_the_sandbox_is_not_a_child_of_the_process_that_started_it(
        driver: ProcessDriver, spec: Callable[..., InstanceSpec]) -> None:
    observed = driver.start(spec("web-1", SLEEPER))
    stat = read_stat(observed.pid)  # type: ignore[arg-type]
    assert stat is not None and stat.ppid != os.getpid()
    driver.start(spec("web-2", "raise SystemExit(1)"))
    exited(driver, "web-2")
    driver.stop("web-1", grace=1)
    assert children_of_this_process() == []  # nothing left for the controller to reap


STARTER = """
import json, sys, time
from pathlib import Path
from corral.drivers import ProcessDriver
from corral.ports.records import InstanceSpec
spec = InstanceSpec(**json.loads(sys.argv[2]))
print(ProcessDriver(Path(sys.argv[1])).start(spec).address, flush=True)
time.sleep(600)
"""


def answers_http(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=1)
    try:
        conn.request("GET", "/")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def test_an_instance_outlives_a_killed_controller_and_is_re_adopted(
        state_dir: Path, spec: Callable[..., InstanceSpec], driver: ProcessDriver) -> None:
    app = spec("web-1", "import http.server as h, os\n"
               "h.HTTPServer(('127.0.0.1', int(os.environ['PORT'])), "
               "h.SimpleHTTPRequestHandler).serve_forever()\n")
    controller = subprocess.Popen(
        [sys.executable, "-c", STARTER, str(state_dir), json.dumps(
            {k: v for k, v in app.__dict__.items() if k != "limits"})],
        stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        address = controller.stdout.readline().strip()  # type: ignore[union-attr]
    finally:
        os.killpg(controller.pid, signal.SIGKILL)  # the controller and its whole group
        controller.wait()
        controller.stdout.close()  # type: ignore[union-attr]
    assert address.startswith("127.0.0.1:")
    adopted = ProcessDriver(state_dir)
    assert [(o.id, o.running, o.address) for o in adopted.list()] == [("web-1", True, address)]
    poll(lambda: answers_http(address))
    adopted.stop("web-1", grace=2)
    assert adopted.list() == []
    assert not answers_http(address)


def test_stop_escalates_to_sigkill_for_an_app_that_ignores_sigterm(
        driver: ProcessDriver, spec: Callable[..., InstanceSpec], state_dir: Path) -> None:
    code = ("import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "print('ignoring', flush=True)\nwhile True: time.sleep(60)\n")
    observed = driver.start(spec("stubborn", code))
    poll(lambda: "ignoring" in stdout_of(driver, "stubborn"))
    status = (state_dir / "run/instances/stubborn/status.json").read_text()
    init_pid = json.loads(status.splitlines()[0])["child-pid"]
    init_ticks = read_stat(init_pid).start_ticks  # type: ignore[union-attr]
    bwrap_ticks = read_stat(observed.pid).start_ticks  # type: ignore[arg-type, union-attr]
    driver.stop("stubborn", grace=0.3)
    assert driver.inspect("stubborn") is None
    assert not is_alive(init_pid, init_ticks)
    assert not is_alive(observed.pid, bwrap_ticks)  # type: ignore[arg-type]


def test_stop_sends_sigterm_first_and_keeps_the_logs(
        driver: ProcessDriver, spec: Callable[..., InstanceSpec], state_dir: Path) -> None:
    code = ("import signal, sys, time\n"
            "def bye(*_):\n    print('got SIGTERM', flush=True)\n    sys.exit(0)\n"
            "signal.signal(signal.SIGTERM, bye)\nprint('ready', flush=True)\n"
            "while True: time.sleep(60)\n")
    driver.start(spec("polite", code))
    poll(lambda: "ready" in stdout_of(driver, "polite"))
    driver.stop("polite", grace=5)
    assert driver.log_paths("polite")[0] == state_dir / "logs/polite/stdout.log"
    assert stdout_of(driver, "polite") == "ready\ngot SIGTERM\n"
    assert not (state_dir / "run/instances/polite").exists()


def test_stop_sends_the_images_stopsignal_first(
        driver: ProcessDriver, spec: Callable[..., InstanceSpec]) -> None:
    code = ("import signal, sys, time\n"
            "def bye(number, _):\n    print('got', number, flush=True)\n    sys.exit(0)\n"
            "for s in (signal.SIGTERM, signal.SIGQUIT):\n    signal.signal(s, bye)\n"
            "print('ready', flush=True)\nwhile True: time.sleep(60)\n")
    driver.start(spec("quits", code, stop_signal="SIGQUIT"))
    poll(lambda: "ready" in stdout_of(driver, "quits"))
    driver.stop("quits", grace=5)
    assert stdout_of(driver, "quits") == f"ready\ngot {int(signal.SIGQUIT)}\n"


def test_an_exited_app_is_listed_as_not_running_with_its_exit_code(
        driver: ProcessDriver, spec: Callable[..., InstanceSpec], state_dir: Path) -> None:
    driver.start(spec("short", "print('bye'); raise SystemExit(7)"))
    exited(driver, "short")
    assert [(o.id, o.running, o.exit_code) for o in ProcessDriver(state_dir).list()] == [
        ("short", False, 7)]
    driver.forget("short")
    assert driver.inspect("short") is None
    assert stdout_of(driver, "short") == "bye\n"


def test_forgetting_a_running_instance_is_refused(
        driver: ProcessDriver, spec: Callable[..., InstanceSpec]) -> None:
    driver.start(spec("web-1", SLEEPER))
    with pytest.raises(DriverError, match="still running"):
        driver.forget("web-1")


def test_a_volume_is_writable_and_persists_across_instances(
        driver: ProcessDriver, spec: Callable[..., InstanceSpec], tmp_path: Path) -> None:
    volume = tmp_path / "volumes" / "web" / "data"
    write = "open('/srv/note', 'w').write('kept')"
    driver.start(spec("writer", write, volumes={str(volume): "/srv"}))
    assert exited(driver, "writer").exit_code == 0, driver.log_paths("writer")[1].read_text()
    driver.stop("writer", grace=1)
    driver.start(spec("reader", "print(open('/srv/note').read())",
                      volumes={str(volume): "/srv"}))
    assert exited(driver, "reader").exit_code == 0
    assert stdout_of(driver, "reader") == "kept\n"
    assert (volume / "note").stat().st_uid == 65534


def test_a_missing_bwrap_raises_sandbox_unavailable(
        state_dir: Path, spec: Callable[..., InstanceSpec]) -> None:
    driver = ProcessDriver(state_dir, bwrap="/nonexistent/bwrap")
    with pytest.raises(SandboxUnavailable) as caught:
        driver.start(spec("web-1", SLEEPER))
    assert caught.value.hint == "install it: apt-get install bubblewrap"
    assert driver.list() == []


def test_a_program_missing_from_the_image_is_named_as_the_cause(
        driver: ProcessDriver, spec: Callable[..., InstanceSpec]) -> None:
    bad = spec("web-1", "")
    with pytest.raises(DriverError) as caught:
        driver.start(InstanceSpec(**{**bad.__dict__, "argv": ("no-such-program",),
                                     "env": {"PATH": "/usr/bin:/bin"}}))
    assert "argv[0] 'no-such-program' is not in the image (looked in PATH /usr/bin:/bin)" \
        in str(caught.value)
    assert "bwrap: execvp no-such-program" in str(caught.value)  # bwrap's own words too
    assert "workdir" not in str(caught.value) and "volume" not in str(caught.value)
    assert driver.list() == []
    assert "execvp" in driver.log_paths("web-1")[1].read_text()


def test_a_workdir_that_is_a_file_in_the_image_is_named_as_the_cause(
        driver: ProcessDriver, spec: Callable[..., InstanceSpec]) -> None:
    with pytest.raises(DriverError, match="workdir /etc/debian_version is a file in the image"):
        driver.start(spec("web-1", SLEEPER, workdir="/etc/debian_version"))
    assert driver.list() == []


def test_a_missing_image_root_raises(driver: ProcessDriver,
                                     spec: Callable[..., InstanceSpec]) -> None:
    bad = spec("web-1", SLEEPER)
    with pytest.raises(DriverError, match="is not a folder"):
        driver.start(InstanceSpec(**{**bad.__dict__, "rootfs": "/nonexistent-root"}))


def test_a_volume_whose_mount_point_the_image_lacks_is_mounted_there(
        driver: ProcessDriver, spec: Callable[..., InstanceSpec], tmp_path: Path,
        debian_rootfs: Path) -> None:
    before = tree_of(debian_rootfs / "var")
    volume = tmp_path / "v"
    driver.start(spec("web-1", "open('/var/lib/app/data/note', 'w').write('kept')",
                      volumes={str(volume): "/var/lib/app/data"}))
    assert exited(driver, "web-1").exit_code == 0, driver.log_paths("web-1")[1].read_text()
    assert (volume / "note").read_text() == "kept"
    assert tree_of(debian_rootfs / "var") == before  # the shared root is never written


def test_a_sandbox_whose_outer_bwrap_died_is_still_listed_running_and_stopped(
        spec: Callable[..., InstanceSpec], driver: ProcessDriver) -> None:
    app = spec("web-orphan", "import http.server as h, os\n"
               "h.HTTPServer(('127.0.0.1', int(os.environ['PORT'])), "
               "h.SimpleHTTPRequestHandler).serve_forever()\n")
    started = driver.start(app)
    poll(lambda: answers_http(started.address))
    assert started.pid is not None
    os.kill(started.pid, signal.SIGKILL)  # the outer bwrap only; its sandbox lives on
    poll(lambda: not is_alive(started.pid, read_stat(started.pid).start_ticks)
         if read_stat(started.pid) else True)
    assert answers_http(started.address)
    assert [(o.id, o.running) for o in driver.list()] == [("web-orphan", True)]
    driver.stop("web-orphan", grace=2)
    poll(lambda: not answers_http(started.address))
    assert driver.list() == []


# -- images that are one static binary (FROM scratch) --------------------------------------

HTTPD = "exec /bin/busybox httpd -f -p $PORT -h /www"


def tree_of(folder: Path) -> list[tuple[str, int]]:
    """Every path under `folder` with its mode: what a change to a root would show."""
    return sorted((str(p.relative_to(folder)), p.lstat().st_mode) for p in folder.rglob("*"))


@pytest.fixture
def scratch_root(tmp_path: Path) -> Path:
    """An unpacked scratch image: only bin/busybox (static) and www/index.html."""
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    shutil.copy("/bin/busybox", root / "bin/busybox")
    (root / "www").mkdir()
    (root / "www/index.html").write_text("hello from scratch\n")
    return root


def scratch(instance_id: str, root: Path, *argv: str, **fields: Any) -> InstanceSpec:
    return InstanceSpec(id=instance_id, service="web", release=1, image_digest="sha256:ab",
                        rootfs=str(root), argv=("/bin/busybox", *argv), env={}, **fields)


def test_a_scratch_image_of_one_static_binary_gets_proc_dev_tmp_sys_and_resolver_files(
        driver: ProcessDriver, scratch_root: Path) -> None:
    before = tree_of(scratch_root)
    script = ("test -r /proc/self/status && test -c /dev/null && test -d /sys/class "
              "&& echo x > /tmp/x && cat /etc/resolv.conf /etc/hosts "
              "&& ! touch /etc/x 2>/dev/null && ! mkdir /new 2>/dev/null && echo ok")
    driver.start(scratch("scratch", scratch_root, "sh", "-c", script))
    observed = exited(driver, "scratch")
    assert observed.exit_code == 0, driver.log_paths("scratch")[1].read_text()
    host = Path("/etc/resolv.conf").read_text() + Path("/etc/hosts").read_text()
    assert stdout_of(driver, "scratch") == host + "ok\n"
    assert tree_of(scratch_root) == before  # nothing was added to the image root


def test_a_shell_form_entrypoint_in_a_scratch_image_serves_http(
        driver: ProcessDriver, scratch_root: Path) -> None:
    started = driver.start(scratch("httpd", scratch_root, "sh", "-c", HTTPD))
    poll(lambda: answers_http(started.address))
    host, port = started.address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    conn.request("GET", "/")
    assert conn.getresponse().read() == b"hello from scratch\n"
    conn.close()
    code, output = driver.exec_in("httpd", ["/bin/busybox", "cat", "/www/index.html"], 5)
    assert (code, output) == (0, "hello from scratch\n")  # nsenter into the sandbox works
    facts = driver.runtime("httpd")
    assert facts is not None
    slash = {m.target: m for m in facts.mounts}["/"]
    assert slash.read_only
    if os.geteuid() == 0 and "overlay" in Path("/proc/filesystems").read_text():
        assert slash.fstype == "overlay"  # as root: the root whole, in one mount


def test_a_scratch_image_s_volume_and_workdir_are_made_where_it_has_no_folder(
        driver: ProcessDriver, scratch_root: Path, tmp_path: Path) -> None:
    volume = tmp_path / "volumes" / "web" / "data"
    driver.start(scratch("writer", scratch_root, "sh", "-c", "pwd > /var/lib/app/where",
                         workdir="/srv/app", volumes={str(volume): "/var/lib/app"}))
    assert exited(driver, "writer").exit_code == 0, driver.log_paths("writer")[1].read_text()
    assert (volume / "where").read_text() == "/srv/app\n"
    assert not (scratch_root / "var").exists() and not (scratch_root / "srv").exists()


def test_a_controller_with_umask_077_still_starts_a_scratch_image(
        driver: ProcessDriver, scratch_root: Path) -> None:
    umask = os.umask(0o077)  # what the launcher makes for the sandbox must stay traversable
    try:
        driver.start(scratch("private", scratch_root, "cat", "/www/index.html"))
    finally:
        os.umask(umask)
    assert exited(driver, "private").exit_code == 0, driver.log_paths("private")[1].read_text()
    assert stdout_of(driver, "private") == "hello from scratch\n"


def test_a_dynamically_linked_program_in_a_scratch_image_is_named_as_the_cause(
        driver: ProcessDriver, scratch_root: Path) -> None:
    shutil.copy(os.path.realpath(shutil.which("ls") or "/bin/ls"), scratch_root / "bin/ls")
    with pytest.raises(DriverError) as caught:
        driver.start(InstanceSpec(**{**scratch("ls", scratch_root).__dict__,
                                     "argv": ("/bin/ls",)}))
    assert "argv[0] /bin/ls is dynamically linked and its loader /lib64/ld-linux" \
        in str(caught.value)


AS_USER = """
import json, sys, time, urllib.request
from pathlib import Path
from corral.drivers import ProcessDriver
from corral.ports.records import InstanceSpec
driver = ProcessDriver(Path(sys.argv[1]) / "state")
spec = InstanceSpec(id="web-1", service="web", release=1, image_digest="sha256:ab",
                    rootfs=sys.argv[1] + "/root", argv=tuple(json.loads(sys.argv[2])), env={})
address = driver.start(spec).address
try:
    deadline = time.monotonic() + 30
    while True:
        try:
            body = urllib.request.urlopen(f"http://{address}/", timeout=2).read().decode()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    slash = [line.split()[8] for line in open(f"/proc/{driver.runtime('web-1').pid}/mountinfo")
             if line.split()[4] == "/"]
    print(json.dumps({"body": body, "slash": slash}))
finally:
    driver.stop("web-1", grace=1)
"""


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root to run the driver as another, unprivileged user")
def test_a_driver_run_by_an_unprivileged_user_starts_a_scratch_image(
        scratch_root: Path) -> None:
    """Without root there is no launcher staging and no overlay: bwrap binds the root's
    entries one by one on its own read-only tmpfs."""
    folder = Path(tempfile.mkdtemp(prefix="corral-user-"))
    try:
        shutil.copytree(scratch_root, folder / "root")
        for path in [folder, *folder.rglob("*")]:
            os.chown(path, 65534, 65534, follow_symlinks=False)
        done = subprocess.run(
            ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups",
             sys.executable, "-c", AS_USER, str(folder), json.dumps(["/bin/busybox", "sh",
                                                                     "-c", HTTPD])],
            capture_output=True, text=True, timeout=120, env={"HOME": str(folder)})
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        assert report == {"body": "hello from scratch\n", "slash": ["tmpfs"]}
    finally:
        shutil.rmtree(folder)
