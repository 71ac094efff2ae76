"""`make bench-recovery`: what recovery costs, each figure against a peer measured in the
same run.

- failover: two controllers on one PostgreSQL under load; the active one is SIGKILLed and
  the standby takes the lease and acts (its `controller.start` in the ledger). Peer: no
  standby, the killed controller restarted at once by a supervisor (`corral up -d`).
  Requests failed during each are counted by the external loader (bench/_load.py).
- restore (RTO): a backup of N services (default 10) restored into a new folder, images
  pulled by digest from a real registry, `corral up`, until every service's router serves.
  Peer: `corral up` of the same project from its own state after `corral down`.
- store: the reconcile sweep over 1,000 instances (bench/_operate_scale.py) with its state
  in PostgreSQL vs SQLite (goal: < 50 ms on SQLite, < 150 ms on PostgreSQL).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # PostgreSQL, registry
from _load import read_records
from _operate_scale import sweep_1000_instances
from deploy import CORRAL, LOADER, BenchError, run, say

from cli_project import BUSYBOX_HTTPD_IMAGE, write_busybox_root
from corral.stores import SqlStore
from loopback import free_port
from postgres import PostgresCluster
from registry_process import RegistryProcess

SERVICE = """
[services.{name}]
image = "web"
replicas = {replicas}
router = {{ listen = "127.0.0.1:{port}" }}
health = {{ path = "/", interval = "200ms", timeout = "1s", healthy_after = 1 }}
"""


class Project:
    """A busybox project driven by the CLI, with its own environment (store, lease TTL)."""

    def __init__(self, folder: Path, services: dict[str, int], env: dict[str, str],
                 replicas: int = 1) -> None:
        self.folder, self.services, self.env = folder, services, {**os.environ, **env}
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / "rootfs").exists():
            write_busybox_root(folder, "v1\n")
        body = "".join(SERVICE.format(name=n, port=p, replicas=replicas)
                       for n, p in services.items())
        (folder / "corral.toml").write_text(f'[project]\nname = "bench"\n\n'
                                            f"{BUSYBOX_HTTPD_IMAGE}{body}")

    def corral(self, *args: str, timeout: float = 300) -> str:
        return run([str(CORRAL), *args], self.folder, timeout, f"corral {' '.join(args)}",
                   env=self.env).stdout

    def all_serve(self) -> bool:
        for port in self.services.values():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as answer:
                    if answer.status != 200:
                        return False
            except OSError:
                return False
        return True

    def await_all_serve(self, timeout: float = 120) -> float:
        began = time.monotonic()
        while not self.all_serve():
            if time.monotonic() - began > timeout:
                raise BenchError(f"not every service served within {timeout:.0f}s")
            time.sleep(0.05)
        return time.monotonic()


# -- failover --------------------------------------------------------------------------
def measure_failover(work: Path, cluster: PostgresCluster) -> dict[str, float]:
    url = cluster.create_database()
    port = free_port()
    project = Project(work / "failover", {"web": port},
                      {"CORRAL_STORE": url, "CORRAL_LEASE_TTL": "2"}, replicas=2)
    store = SqlStore(url)
    project.corral("build")
    project.corral("up", "-d")
    loader = None
    try:
        project.corral("deploy")
        loader = subprocess.Popen([sys.executable, str(LOADER), "--url",
                                   f"http://127.0.0.1:{port}/", "--rate", "200", "--max-seconds",
                                   "120", "--out", str(work / "failover.load")])
        start_standby(project)
        time.sleep(1.0)  # load flowing before the kill
        standby_s, standby_at = kill_and_time(project, store, lambda: None)
        restart_s, restart_at = kill_and_time(project, store,
                                              lambda: project.corral("up", "-d"))
        time.sleep(2.0)  # the window after each takeover in which a failure still counts
        loader.send_signal(signal.SIGTERM)  # it writes its records as it exits
        loader.wait(timeout=30)
        records = read_records(work / "failover.load")
        return {"standby_s": standby_s,
                "standby_failed": failed_between(records, standby_at, standby_s + 2.0),
                "restart_s": restart_s,
                "restart_failed": failed_between(records, restart_at, restart_s + 2.0)}
    finally:
        if loader is not None and loader.poll() is None:
            loader.send_signal(signal.SIGTERM)
            loader.wait(timeout=30)
        subprocess.run([str(CORRAL), "down"], cwd=project.folder, env=project.env,
                       capture_output=True, timeout=120)
        store.close()


def start_standby(project: Project) -> subprocess.Popen[bytes]:
    log = project.folder / "standby.log"
    with log.open("wb") as out:
        process = subprocess.Popen([str(CORRAL), "up", "--standby"], cwd=project.folder,
                                   env=project.env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while "standby: controller" not in log.read_text():
        if time.monotonic() > deadline or process.poll() is not None:
            raise BenchError(f"the standby did not start waiting: {log.read_text()[-400:]}")
        time.sleep(0.05)
    return process


def kill_and_time(project: Project, store: SqlStore, then: Callable[[], object]
                  ) -> tuple[float, float]:
    """SIGKILL the lease holder, run `then` (a restart, or nothing for a standby), and
    time until a new controller.start is in the ledger: (seconds, monotonic kill time)."""
    lease = store.current_lease("controller")
    assert lease is not None
    pid = int(lease.holder.rpartition(":")[2])
    seen = store.events()[-1].seq
    killed_wall, killed_mono = time.time(), time.monotonic()
    os.kill(pid, signal.SIGKILL)
    then()
    deadline = time.monotonic() + 120
    while not (started := [e for e in store.events(since_seq=seen)
                           if e.action == "controller.start"]):
        if time.monotonic() > deadline:
            raise BenchError("no controller took over within 120 s")
        time.sleep(0.02)
    return started[0].at - killed_wall, killed_mono


def failed_between(records: list[tuple[float, int, str]], start: float, seconds: float) -> int:
    """Requests that failed from `start` (monotonic) for `seconds`."""
    window = [r for r in records if start <= r[0] <= start + seconds]
    if not window:
        raise BenchError("the loader recorded no answer during the failover")
    return sum(1 for _, status, _ in window if not 200 <= status < 300)


# -- restore ---------------------------------------------------------------------------
def measure_restore(work: Path, registry: RegistryProcess, services: int) -> dict[str, float]:
    ports = {f"svc{n}": free_port() for n in range(services)}
    first = Project(work / "restore-a", ports, {})
    first.corral("build")
    first.corral("push", f"{registry.address}/bench/web:v1", "--image", "web")
    first.corral("up", "-d")
    try:
        first.corral("deploy")
        first.await_all_serve()
        backup = work / "bench.backup.tar.gz"
        first.corral("backup", "-o", str(backup))
    finally:
        first.corral("down")
    began = time.monotonic()
    first.corral("up", "-d")
    cold_s = first.await_all_serve() - began
    first.corral("down")
    second = Project(work / "restore-b", ports, {})
    shutil.copy(first.folder / "corral.toml", second.folder / "corral.toml")
    began = time.monotonic()
    restored = json.loads(second.corral("restore", str(backup), "--json"))
    second.corral("up", "-d")
    try:
        rto_s = second.await_all_serve() - began
    finally:
        second.corral("down")
    return {"rto_s": rto_s, "cold_s": cold_s, "restore_only_s": restored["seconds"],
            "services": services}


# -- store -------------------------------------------------------------------------------
def measure_sweeps(work: Path, cluster: PostgresCluster) -> dict[str, float]:
    sqlite = SqlStore(f"sqlite:///{work / 'sweep.db'}")
    postgres = SqlStore(cluster.create_database())
    try:
        return {"sqlite_ms": sweep_1000_instances(store=sqlite) * 1000,
                "postgresql_ms": sweep_1000_instances(store=postgres) * 1000}
    finally:
        sqlite.close()
        postgres.close()


def print_table(failover: dict[str, float], restore: dict[str, float],
                sweeps: dict[str, float]) -> None:
    rows = [
        ("failover: standby takes over (s)", failover["standby_s"],
         "supervisor restart (s)", failover["restart_s"]),
        ("  requests failed meanwhile", failover["standby_failed"],
         "  requests failed meanwhile", failover["restart_failed"]),
        (f"restore RTO, {restore['services']:.0f} services (s)", restore["rto_s"],
         "cold `corral up` of the same (s)", restore["cold_s"]),
        ("reconcile sweep, 1,000 instances, PostgreSQL (ms)", sweeps["postgresql_ms"],
         "SQLite (ms)", sweeps["sqlite_ms"]),
    ]
    print(f"\n{'measure':<52}{'value':>10}   {'peer':<34}{'value':>10}")
    for name, value, peer, peer_value in rows:
        print(f"{name:<52}{value:>10.3f}   {peer:<34}{peer_value:>10.3f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=10, help="services restored")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="corral-bench-recovery-"))
    cluster = PostgresCluster()
    registry = None
    try:
        cluster.start()
        (work / "registry").mkdir()
        registry = RegistryProcess(work / "registry")
        say("store: reconcile sweeps on SQLite and PostgreSQL")
        sweeps = measure_sweeps(work, cluster)
        say("failover: standby vs supervisor restart, under load")
        failover = measure_failover(work, cluster)
        say(f"restore: {args.services} services from a backup vs a cold up")
        restore = measure_restore(work, registry, args.services)
    except BenchError as exc:
        print(f"bench-recovery: {exc}", file=sys.stderr)
        return 1
    finally:
        if registry is not None:
            registry.stop()
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)
    print_table(failover, restore, sweeps)
    print("RESULT "
          f"failover_standby_s={failover['standby_s']:.3f} "
          f"failover_restart_s={failover['restart_s']:.3f} "
          f"failover_vs_restart={failover['standby_s'] / failover['restart_s']:.2f} "
          f"failover_failed_requests={failover['standby_failed']:.0f} "
          f"restore_rto_s={restore['rto_s']:.3f} cold_up_s={restore['cold_s']:.3f} "
          f"rto_vs_cold_up={restore['rto_s'] / restore['cold_s']:.2f} "
          f"sweep_sqlite_ms={sweeps['sqlite_ms']:.1f} "
          f"sweep_postgresql_ms={sweeps['postgresql_ms']:.1f} "
          f"postgresql_vs_sqlite={sweeps['postgresql_ms'] / sweeps['sqlite_ms']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
