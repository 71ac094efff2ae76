"""The benchmark's peer: the same app as 3 Swarm replicas behind HAProxy on a single node.

Owns everything the peer needs (its own dockerd socket and data root, the image imported from
a debootstrap root, the swarm, the service, HAProxy) and tears down only what it started, by
pid. It must not touch a Docker daemon it did not start beyond its own service.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

DOCKER = "/usr/bin/docker"  # the Debian client matches the Debian daemon's API
SOCKET = "/run/corral-bench-docker.sock"
DATA_ROOT = "/var/lib/corral-bench-docker"
EXEC_ROOT = "/run/corral-bench-docker-exec"
PIDFILE = "/run/corral-bench-docker.pid"
CACHE = Path.home() / ".cache" / "corral-bench"
BASE_IMAGE = "corral-bench-base:bookworm"
APP_IMAGE = "corral-bench-web:bench"
SERVICE = "corral-bench-web"
TASK_PORT_BASE = 18200  # task slot N listens on 18200+N (host network, one node)

# The app's own /healthz, probed the way corral's health check probes it (500 ms, 1 s timeout).
HEALTH_CMD = ('python3 -c "import os, urllib.request; urllib.request.urlopen('
              "'http://127.0.0.1:' + os.environ['PORT'] + '/healthz', timeout=1)\"")


class PeerError(RuntimeError):
    """The Swarm side could not be set up or measured; the message says which step."""


def _log(message: str) -> None:
    print(f"bench[swarm]: {message}", flush=True)


def ensure_rootfs() -> Path:
    """A Debian bookworm minbase root with python3, made once by debootstrap and cached."""
    root = CACHE / "bookworm-python3"
    if (root / "usr" / "bin" / "python3").exists():
        return root
    if shutil.which("debootstrap") is None:
        raise PeerError("debootstrap is not installed (apt-get install -y debootstrap)")
    partial = CACHE / "bookworm-python3.partial"
    shutil.rmtree(partial, ignore_errors=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    _log("debootstrap bookworm + python3 for the Swarm image (first run only, ~1 min)")
    done = subprocess.run(
        ["debootstrap", "--variant=minbase", "--include=python3", "bookworm", str(partial),
         "http://deb.debian.org/debian"], capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise PeerError(f"debootstrap failed: {done.stderr.strip()[-400:]}")
    partial.rename(root)
    return root


class SwarmPeer:
    """Start, measure against, and stop the Swarm side. Use start() then stop() in a finally."""

    def __init__(self, workdir: Path, listen_port: int, replicas: int = 3) -> None:
        if not 1 <= replicas <= 9:
            raise PeerError("the task port scheme 1820N holds 1 to 9 replicas")
        self.workdir = workdir
        self.listen_port = listen_port
        self.replicas = replicas
        self.env = {**os.environ, "DOCKER_HOST": f"unix://{SOCKET}", "DOCKER_BUILDKIT": "0"}
        self.dockerd: subprocess.Popen[bytes] | None = None
        self.haproxy: subprocess.Popen[bytes] | None = None
        self.joined_swarm = False
        self.service_created = False

    def docker(self, *args: str, timeout: float = 120,
               stdin: int | None = None) -> subprocess.CompletedProcess[str]:
        try:
            done = subprocess.run([DOCKER, *args], env=self.env, capture_output=True, text=True,
                                  timeout=timeout, stdin=stdin)
        except subprocess.TimeoutExpired as exc:
            raise PeerError(f"`docker {' '.join(args[:3])}` did not finish in {timeout:.0f}s")\
                from exc
        if done.returncode != 0:
            raise PeerError(f"`docker {' '.join(args[:3])}` failed: {done.stderr.strip()[-400:]}")
        return done

    # -- start ---------------------------------------------------------------------------

    def start(self, app_source: Path) -> None:
        if not Path(DOCKER).exists():
            raise PeerError(f"{DOCKER} not found (apt-get install -y docker.io)")
        self._start_dockerd()
        self._build_image(app_source)
        self._join_swarm()
        self._create_service()
        self._start_haproxy()

    def _is_daemon_up(self) -> bool:
        probe = subprocess.run([DOCKER, "info", "--format", "{{.ServerVersion}}"], env=self.env,
                               capture_output=True, text=True, timeout=20)
        return probe.returncode == 0

    def _start_dockerd(self) -> None:
        if Path(SOCKET).exists() and self._is_daemon_up():
            _log(f"reusing the dockerd already listening on {SOCKET}")
            return
        if shutil.which("dockerd") is None:
            raise PeerError("dockerd is not installed (apt-get install -y docker.io)")
        Path(EXEC_ROOT).mkdir(parents=True, exist_ok=True)
        log = (self.workdir / "dockerd.log").open("wb")
        self.dockerd = subprocess.Popen(
            ["dockerd", "--exec-opt", "native.cgroupdriver=cgroupfs", "--host", f"unix://{SOCKET}",
             "--data-root", DATA_ROOT, "--exec-root", EXEC_ROOT, "--pidfile", PIDFILE],
            stdout=log, stderr=subprocess.STDOUT)
        _log(f"started dockerd (pid {self.dockerd.pid}) on {SOCKET}")
        deadline = time.monotonic() + 60
        while not (Path(SOCKET).exists() and self._is_daemon_up()):
            if self.dockerd.poll() is not None:
                raise PeerError(f"dockerd exited ({self.dockerd.returncode}); "
                                f"see {self.workdir / 'dockerd.log'}")
            if time.monotonic() > deadline:
                raise PeerError("dockerd did not answer within 60s")
            time.sleep(0.3)

    def _build_image(self, app_source: Path) -> None:
        if not self.docker("images", "-q", BASE_IMAGE).stdout.strip():
            root = ensure_rootfs()
            _log(f"importing {root} as {BASE_IMAGE}")
            with subprocess.Popen(["tar", "-C", str(root), "-c", "."],
                                  stdout=subprocess.PIPE) as tar:
                assert tar.stdout is not None
                self.docker("import", "-", BASE_IMAGE, stdin=tar.stdout.fileno(), timeout=300)
        context = self.workdir / "swarm-image"
        context.mkdir(exist_ok=True)
        shutil.copy2(app_source, context / "server.py")
        # The same image shape as corral's: Debian + python3 + the app, version 1 in the env.
        (context / "Dockerfile").write_text(
            f"FROM {BASE_IMAGE}\nCOPY server.py /app/server.py\nENV APP_VERSION=1\n"
            'WORKDIR /app\nENTRYPOINT ["python3", "/app/server.py"]\n')
        self.docker("build", "-q", "-t", APP_IMAGE, str(context), timeout=300)

    def _join_swarm(self) -> None:
        state = self.docker("info", "--format", "{{.Swarm.LocalNodeState}}").stdout.strip()
        if state != "active":
            self.docker("swarm", "init", "--advertise-addr", "127.0.0.1")
            self.joined_swarm = True
        if self.docker("service", "ls", "-q", "--filter", f"name={SERVICE}").stdout.strip():
            self.docker("service", "rm", SERVICE)  # a leftover from an interrupted run
            self._await_no_containers()

    def _create_service(self) -> None:
        _log(f"docker service create {SERVICE} (replicas={self.replicas}, host network)")
        self.service_created = True
        self.docker(
            "service", "create", "--detach=false", "--quiet", "--name", SERVICE,
            "--replicas", str(self.replicas), "--network", "host", "--no-resolve-image",
            "--env", f"PORT={TASK_PORT_BASE // 10}{{{{.Task.Slot}}}}",  # slots 1-9 -> 1820N
            "--env", "GREETING=hello",
            "--health-cmd", HEALTH_CMD, "--health-interval", "500ms", "--health-timeout", "1s",
            "--health-retries", "3", "--health-start-period", "30s",
            "--update-parallelism", "1", "--update-delay", "0s", "--update-order", "stop-first",
            "--update-failure-action", "pause", "--stop-grace-period", "10s",
            APP_IMAGE, timeout=180)

    def _start_haproxy(self) -> None:
        config = self.workdir / "haproxy.cfg"
        servers = "\n".join(
            f"  server task{n} 127.0.0.1:{TASK_PORT_BASE + n} check inter 500ms fall 1 rise 1"
            for n in range(1, self.replicas + 1))
        config.write_text(HAPROXY_CONFIG.format(port=self.listen_port, servers=servers))
        check = subprocess.run(["haproxy", "-c", "-q", "-f", str(config)],
                               capture_output=True, text=True, timeout=20)
        if check.returncode != 0:
            raise PeerError(f"haproxy rejected {config}: {check.stderr.strip()[-400:]}")
        log = (self.workdir / "haproxy.log").open("wb")
        self.haproxy = subprocess.Popen(["haproxy", "-db", "-f", str(config)],
                                        stdout=log, stderr=subprocess.STDOUT)
        _log(f"started haproxy (pid {self.haproxy.pid}) on 127.0.0.1:{self.listen_port}")

    # -- measure -------------------------------------------------------------------------

    def update_command(self, version: str) -> list[str]:
        return [DOCKER, "service", "update", "--detach=false", "--quiet",
                "--env-add", f"APP_VERSION={version}", SERVICE]

    # -- stop ----------------------------------------------------------------------------

    def stop(self) -> list[str]:
        """Tear down in reverse order; return the problems met (never raise)."""
        problems: list[str] = []
        if self.haproxy is not None:
            _stop_process(self.haproxy, "haproxy", problems)
        if self.service_created:
            try:
                self.docker("service", "rm", SERVICE)
                self._await_no_containers()
            except PeerError as exc:
                problems.append(str(exc))
        if self.joined_swarm or self.dockerd is not None:
            try:
                self.docker("swarm", "leave", "--force")
            except PeerError as exc:
                problems.append(str(exc))
        if self.dockerd is not None:
            _stop_process(self.dockerd, "dockerd", problems, grace=30)
        return problems

    def _await_no_containers(self) -> None:
        deadline = time.monotonic() + 60
        label = f"com.docker.swarm.service.name={SERVICE}"
        while self.docker("ps", "-aq", "--filter", f"label={label}").stdout.strip():
            if time.monotonic() > deadline:
                raise PeerError(f"the containers of {SERVICE} were still there after 60s")
            time.sleep(0.3)


def _stop_process(process: subprocess.Popen[bytes], name: str, problems: list[str],
                  grace: float = 10) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        problems.append(f"{name} (pid {process.pid}) ignored SIGTERM for {grace:.0f}s; killed")
        process.kill()
        process.wait(timeout=10)


# Health checks as often as corral's (500 ms), and the router behaviour corral's router has:
# an idempotent request whose connection fails is retried on another server.
HAPROXY_CONFIG = """\
global
  maxconn 2000

defaults
  mode http
  timeout connect 1s
  timeout client 30s
  timeout server 30s
  retries 3
  option redispatch 1
  retry-on conn-failure empty-response response-timeout

frontend bench
  bind 127.0.0.1:{port}
  default_backend web

backend web
  balance roundrobin
  option httpchk GET /healthz
{servers}
"""
