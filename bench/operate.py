"""`make bench-operate`: self-healing under load, corral against a single-node Docker Swarm.

corral side: 3 replicas of the demo app behind corral's router under constant external load
(bench/_load.py); `corral chaos --kill 10` (SIGKILL, restore = replacement ready and routed),
then `corral chaos --drift` (a file changed in the image root -> every user replaced), then a
Debian base file tampered through its layer-cache hardlink (bench/_tamper.py: until the
router serves only fresh instances).
Swarm side: the same app as 3 tasks behind HAProxy (bench/_swarm.py); `docker kill -s KILL`
a task and time until Swarm has a new task answering. Control plane: a reconcile sweep over
1,000 instances (fake driver) and a plan over 200 services (SQLite store). Table + RESULT.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _load import read_records
from _swarm import SERVICE, TASK_PORT_BASE, PeerError, SwarmPeer
from _tamper import tamper_to_replaced
from deploy import CORRAL, LOADER, BenchError, await_serving, ensure_port_free, run, say

CORRAL_PORT = 18181
SWARM_PORT = 18191


class Load:
    """The external load generator as its own process, bounded by --max-seconds."""

    def __init__(self, url: str, out: Path, seconds: float, rate: float = 200) -> None:
        self.out = out
        self.process = subprocess.Popen([sys.executable, str(LOADER), "--url", url, "--rate",
                                         str(rate), "--clients", "4", "--max-seconds",
                                         str(seconds), "--out", str(out)])

    def failures(self, start: float, end: float) -> tuple[int, int]:
        records = [r for r in read_records(self.out) if start <= r[0] <= end]
        return len(records), sum(1 for _, status, _ in records if not 200 <= status < 300)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def corral_chaos(project: Path, *args: str) -> dict:  # type: ignore[type-arg]
    done = run([str(CORRAL), "chaos", "web", "--no-load", "--json", *args], project, 600,
               f"corral chaos {' '.join(args)}")
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def corral_side(workdir: Path, kills: int) -> dict[str, float | int | None]:
    project = workdir / "corral"
    ensure_port_free(CORRAL_PORT)
    run([str(CORRAL), "init", "--name", "bench", "--port", str(CORRAL_PORT)], project, 60,
        "corral init")
    load = None
    try:
        run([str(CORRAL), "up", "-d"], project, 120, "corral up -d")
        run([str(CORRAL), "deploy", "web"], project, 600, "corral deploy web")
        await_serving(f"http://127.0.0.1:{CORRAL_PORT}/", "1")
        load = Load(f"http://127.0.0.1:{CORRAL_PORT}/", workdir / "load-corral.txt", 400)
        time.sleep(2)
        say(f"corral: chaos --kill {kills} under load")
        began = time.monotonic()
        result = corral_chaos(project, "--kill", str(kills), "--interval", "2", "--seed", "1")
        time.sleep(1)
        ended = time.monotonic()
        say("corral: chaos --drift under load")
        drift = corral_chaos(project, "--drift", "--seed", "1")
        time.sleep(1)
        await_serving(f"http://127.0.0.1:{CORRAL_PORT}/", "1")
        say("corral: a base file tampered through the layer cache under load")
        tamper = tamper_to_replaced(project, f"http://127.0.0.1:{CORRAL_PORT}/")
        if tamper.get("error"):
            say(f"corral: tamper: {tamper['error']}")
        load.stop()
        requests, failed = load.failures(began, ended)
        restores = [k["restored_s"] for k in result["kills"] if k["restored_s"] is not None]
        return {"restore_median_s": statistics.median(restores) if restores else None,
                "restore_max_s": max(restores) if restores else None,
                "restored": len(restores), "kills": len(result["kills"]),
                "requests": requests, "failed": failed,
                "drift_s": drift["kills"][0]["restored_s"] if drift["kills"] else None,
                "drift_file": drift["kills"][0].get("file") if drift["kills"] else None,
                "tamper_s": tamper.get("tamper_s"),  # type: ignore[dict-item]
                "app_start_s": app_start_time(project)}
    finally:
        if load is not None:
            load.stop()
        subprocess.run([str(CORRAL), "down"], cwd=project, capture_output=True, timeout=120)


def app_start_time(project: Path) -> float | None:
    """The app's own start time: a bare `python3 /app/server.py` in its image root, timed
    from exec to its first answer (the floor any restore includes)."""
    roots = sorted((project / ".corral" / "cache" / "roots").glob("*"))
    if not roots:
        return None
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    began = time.monotonic()
    chroot = shutil.which("chroot") or "/usr/sbin/chroot"
    try:
        app = subprocess.Popen([chroot, str(roots[-1]), "python3", "/app/server.py"],
                               env={"PORT": str(port), "PATH": "/usr/bin:/bin"},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError as exc:
        say(f"cannot time the app's own start ({exc})")
        return None
    try:
        while time.monotonic() - began < 20:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).read()
                return time.monotonic() - began
            except OSError:
                time.sleep(0.005)
        return None
    finally:
        app.terminate()
        app.wait(timeout=10)


def swarm_side(workdir: Path, kills: int) -> dict[str, float | int | None]:
    ensure_port_free(SWARM_PORT)
    peer = SwarmPeer(workdir, SWARM_PORT, replicas=3)
    load = None
    try:
        peer.start(workdir / "corral" / "app" / "server.py")
        await_serving(f"http://127.0.0.1:{SWARM_PORT}/", "1", timeout=120)
        load = Load(f"http://127.0.0.1:{SWARM_PORT}/", workdir / "load-swarm.txt", 600)
        time.sleep(2)
        began = time.monotonic()
        restores = []
        for n in range(kills):
            say(f"swarm: kill {n + 1}/{kills}")
            took = swarm_kill(peer)
            if took is not None:
                restores.append(took)
            time.sleep(2)
        ended = time.monotonic()
        load.stop()
        requests, failed = load.failures(began, ended)
        return {"restore_median_s": statistics.median(restores) if restores else None,
                "restore_max_s": max(restores) if restores else None,
                "restored": len(restores), "kills": kills, "requests": requests,
                "failed": failed, "drift_s": None, "tamper_s": None}
    finally:
        if load is not None:
            load.stop()
        for problem in peer.stop():
            say(f"swarm teardown: {problem}")


def _tasks(peer: SwarmPeer) -> dict[str, int]:
    """Running task containers -> their slot."""
    out = peer.docker("ps", "--filter", f"label=com.docker.swarm.service.name={SERVICE}",
                      "--format", '{{.ID}} {{.Label "com.docker.swarm.task.name"}}').stdout
    found = {}
    for line in out.split("\n"):
        if line.strip():
            cid, name = line.split()
            found[cid] = int(name.split(".")[1])
    return found


def swarm_kill(peer: SwarmPeer, timeout: float = 120) -> float | None:
    """SIGKILL one task; seconds until a new task of its slot runs and answers."""
    before = _tasks(peer)
    victim = sorted(before)[0]
    slot = before[victim]
    began = time.monotonic()
    peer.docker("kill", "--signal", "KILL", victim)
    while time.monotonic() - began < timeout:
        fresh = {c for c, s in _tasks(peer).items() if s == slot and c not in before}
        if fresh:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{TASK_PORT_BASE + slot}/healthz",
                                       timeout=1).read()
                return time.monotonic() - began
            except OSError:
                pass
        time.sleep(0.05)
    return None


def control_plane() -> dict[str, float]:
    """Median timings of a 1,000-instance sweep (fake driver) and a 200-service plan."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _operate_scale import plan_200_services, sweep_1000_instances

    return {"sweep_1000_ms": sweep_1000_instances() * 1000,
            "plan_200_ms": plan_200_services() * 1000}


def fmt(value: object, digits: int = 2) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--swarm-kills", type=int, default=3)
    parser.add_argument("--skip-swarm", action="store_true")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="corral-bench-operate-"))
    (workdir / "corral").mkdir()
    rows: dict[str, dict[str, float | int | None]] = {}
    try:
        for name, side, kills in (("corral", corral_side, args.kills),
                                  ("swarm", swarm_side, args.swarm_kills)):
            if name == "swarm" and args.skip_swarm:
                continue
            try:
                rows[name] = side(workdir, kills)
            except (BenchError, PeerError, OSError, subprocess.SubprocessError) as exc:
                say(f"{name}: FAILED: {exc}")
                rows[name] = {}
        scale = control_plane()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(f"{'peer':8} {'restore p50 s':>14} {'restore max s':>14} {'restored':>9} "
          f"{'requests':>9} {'failed':>7} {'drift→replaced s':>17} {'tamper→replaced s':>18}")
    for name, row in rows.items():
        print(f"{name:8} {fmt(row.get('restore_median_s')):>14} "
              f"{fmt(row.get('restore_max_s')):>14} "
              f"{fmt(row.get('restored'))}/{fmt(row.get('kills')):<3}".ljust(48)
              + f" {fmt(row.get('requests')):>9} {fmt(row.get('failed')):>7} "
              f"{fmt(row.get('drift_s')):>17} {fmt(row.get('tamper_s')):>18}")
    c, s = rows.get("corral", {}), rows.get("swarm", {})
    print(f"drift: chaos changed {c.get('drift_file') or '-'} in the root; tamper: a Debian "
          "base file written through its layer-cache hardlink (swarm: no file drift check, "
          "a changed file is served until the task dies)")
    print(f"app's own start time (python3 server.py, exec to first answer): "
          f"{fmt(c.get('app_start_s'), 3)} s")
    print(f"control plane: sweep over 1,000 instances {scale['sweep_1000_ms']:.1f} ms "
          f"(goal < 50), plan over 200 services {scale['plan_200_ms']:.0f} ms (goal < 1000)")
    ratio = (s["restore_median_s"] / c["restore_median_s"]  # type: ignore[operator]
             if c.get("restore_median_s") and s.get("restore_median_s") else None)
    print(f"RESULT corral_restore_p50_s={fmt(c.get('restore_median_s'), 3)} "
          f"corral_restore_max_s={fmt(c.get('restore_max_s'), 3)} "
          f"corral_failed={fmt(c.get('failed'))}/{fmt(c.get('requests'))} "
          f"corral_drift_replaced_s={fmt(c.get('drift_s'), 3)} "
          f"tamper_to_replaced_s={fmt(c.get('tamper_s'), 3)} "
          f"swarm_restore_p50_s={fmt(s.get('restore_median_s'), 3)} "
          f"swarm_failed={fmt(s.get('failed'))}/{fmt(s.get('requests'))} "
          f"swarm_over_corral={fmt(ratio, 1)} "
          f"sweep_1000_ms={scale['sweep_1000_ms']:.1f} plan_200_ms={scale['plan_200_ms']:.0f}",
          flush=True)
    return 0 if c.get("restored") == c.get("kills") and c else 1


if __name__ == "__main__":
    sys.exit(main())
