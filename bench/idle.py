"""`make bench-idle`: what the controller and the router cost at rest (issue 20).

For N in 6, 60 and 300 instances (N/3 services of 3 replicas each of a FROM scratch image
holding only a static busybox, `busybox httpd`, health checked on "/" every second, the
default): start a project, deploy, let it settle, then read utime+stime of the controller and
of the router (its supervisor and workers) from /proc over a window (60 s by default) and
their resident memory. A plain `sleep` process measured over the same window is the peer;
dockerd + containerd are measured only where docker.io is installed ('-' otherwise).
Prints a table and one RESULT line; nothing here asserts the goal (<= 2 % of a core at 60).
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from deploy import CORRAL, BenchError, run, say

TICKS = os.sysconf("SC_CLK_TCK")
# The controller's loop threads named in the RESULT line (all named ones are printed).
PEER_THREADS = ("health-probes", "health-monitor", "drift-watch", "reconciler",
                "log-collector")
PORT_BASE = 19400  # service k listens on PORT_BASE + k: 19400-19499 for 300 instances
SPEC_HEAD = """\
[project]
name = "idle"

[images.web]
base = "scratch"
copy = [{ src = "rootfs/", dest = "/" }]
entrypoint = ["/bin/busybox", "sh", "-c", "exec /bin/busybox httpd -f -p $PORT -h /www"]
"""
SERVICE = """
[services.s{n}]
image = "web"
replicas = 3
health = {{ path = "/" }}
router = {{ listen = "127.0.0.1:{port}" }}
"""


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(parents.get(current, []))
    return found


def thread_ticks(pid: int) -> dict[str, int]:
    """{thread name: utime+stime} of a process's threads (the controller names its loops'
    threads in the kernel: engine/loop.name_os_thread); same-named threads are summed."""
    found: dict[str, int] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except OSError:  # ended meanwhile
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat.rsplit(")", 1)[1].split()
        found[name] = found.get(name, 0) + int(fields[11]) + int(fields[12])
    return found


def measure(groups: dict[str, list[int]], window: float, threads_of: int,
            ) -> tuple[dict[str, tuple[float, float]], dict[str, float]]:
    """{group: (cpu % of one core over `window`, RSS MB at the end)}, and {thread name:
    cpu %} of the process `threads_of` (a thread that ended during the window is left out)."""
    before = {}
    for name, pids in groups.items():
        try:
            before[name] = sum(cpu_ticks(p) for p in pids)
        except FileNotFoundError:
            if name in ("controller", "router"):
                raise
    groups = {name: pids for name, pids in groups.items() if name in before}
    threads_before = thread_ticks(threads_of)
    began = time.monotonic()
    time.sleep(window)
    elapsed = time.monotonic() - began
    out = {}
    for name, pids in groups.items():
        try:
            used = sum(cpu_ticks(p) for p in pids) - before[name]
            rss = sum(rss_kb(p) for p in pids) / 1024
        except FileNotFoundError as exc:  # a process ended: the group's figures are lost
            if name in ("controller", "router"):
                raise BenchError(f"a {name} process ended during the window "
                                 f"({exc.filename})") from exc
            say(f"a {name} process ended during the window: {name} not measured")
            continue
        out[name] = (100.0 * used / TICKS / elapsed, rss)
    threads = {name: 100.0 * (ticks - threads_before.get(name, 0)) / TICKS / elapsed
               for name, ticks in thread_ticks(threads_of).items()}
    return out, threads


def docker_pids() -> list[int] | None:
    if shutil.which("dockerd") is None:
        return None
    found = []
    for name in ("dockerd", "containerd"):
        done = subprocess.run(["pidof", name], capture_output=True, text=True)
        found += [int(p) for p in done.stdout.split()]
    return found or None


def make_project(folder: Path, services: int) -> None:
    (folder / "rootfs/bin").mkdir(parents=True)
    shutil.copy("/bin/busybox", folder / "rootfs/bin/busybox")
    (folder / "rootfs/www").mkdir()
    (folder / "rootfs/www/index.html").write_text("idle\n")
    (folder / "corral.toml").write_text(
        SPEC_HEAD + "".join(SERVICE.format(n=n, port=PORT_BASE + n) for n in range(services)))


def ready_count(folder: Path) -> int:
    done = run([str(CORRAL), "status", "--json"], folder, 120, "corral status")
    status = json.loads(done.stdout)
    return sum(1 for s in status["services"] for i in s["instances"] if i["state"] == "ready")


def one_size(workdir: Path, n: int, window: float, settle: float,
             profile: Path | None) -> dict[str, object]:
    folder = workdir / f"n{n}"
    services = n // 3
    make_project(folder, services)
    env = dict(os.environ)
    if profile is not None:  # the controller runs under cProfile (engine/observe/profiler.py)
        env["CORRAL_PROFILE"] = str(profile.resolve() / f"controller-{n}.pstats")
    try:
        run([str(CORRAL), "build"], folder, 300, "corral build")
        run([str(CORRAL), "up", "-d"], folder, 120, "corral up -d", env)
        began = time.monotonic()
        with ThreadPoolExecutor(4) as pool:  # deployments of distinct services in parallel
            list(pool.map(lambda k: run([str(CORRAL), "deploy", f"s{k}"], folder, 900,
                                        f"corral deploy s{k}", env), range(services)))
        deadline = time.monotonic() + 300
        while (ready := ready_count(folder)) < n:
            if time.monotonic() > deadline:
                raise BenchError(f"only {ready} of {n} instances ready after 300 s")
            time.sleep(2)
        say(f"N={n}: {n} instances ready in {time.monotonic() - began:.0f} s; "
            f"settling {settle:.0f} s")
        status = json.loads(run([str(CORRAL), "status", "--json"], folder, 60,
                                "corral status").stdout)
        controller, router = status["controller"]["pid"], status["router"]["pid"]
        time.sleep(settle)
        if profile is not None:  # the profile covers the window only
            os.kill(controller, signal.SIGUSR1)
        sleeper = subprocess.Popen(["sleep", str(int(window + 60))])
        groups = {"controller": [controller], "router": descendants(router),
                  "sleep": [sleeper.pid]}
        docker = docker_pids()
        if docker:
            groups["docker"] = docker
        say(f"N={n}: measuring {window:.0f} s (router: {len(groups['router'])} processes)")
        figures, threads = measure(groups, window, controller)
        if profile is not None:  # the profile covers the window only
            os.kill(controller, signal.SIGUSR2)
        sleeper.kill()
        sleeper.wait()
        busiest = sorted(threads.items(), key=lambda item: -item[1])
        used = ", ".join(f"{name} {pct:.2f}" for name, pct in busiest if pct > 0)
        say(f"N={n}: controller threads (% of a core): {used or 'none used any'}")
        return {"n": n, **figures, "threads": threads}
    except BenchError:
        log = folder / ".corral/run/controller.log"
        if log.is_file():
            say("controller.log ends with:\n" + "\n".join(
                log.read_text(errors="replace").splitlines()[-30:]))
        raise
    finally:
        run([str(CORRAL), "down"], folder, 300, "corral down")


def cell(figures: dict[str, object], group: str, index: int, fmt: str) -> str:
    value = figures.get(group)
    return format(value[index], fmt) if isinstance(value, tuple) else "-"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="6,60,300", help="instance counts (multiples of 3)")
    parser.add_argument("--window", type=float, default=60.0, help="seconds measured per size")
    parser.add_argument("--settle", type=float, default=15.0, help="seconds at rest first")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="profile the controller; its stats go to DIR/controller-N.pstats"
                             "(.txt: the top entries). Its CPU figures are then not the cost")
    args = parser.parse_args()
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="corral-idle-") as tmp:
        for n in (int(s) for s in args.sizes.split(",")):
            try:
                rows.append(one_size(Path(tmp), n, args.window, args.settle, args.profile))
            except BenchError as exc:
                say(f"N={n} could not be measured: {exc}")
                rows.append({"n": n})
    print()
    print(f"{'N':>5} {'controller %':>13} {'ctl RSS MB':>11} {'router %':>9} "
          f"{'router RSS MB':>14} {'sleep %':>8} {'docker %':>9}")
    result = []
    for row in rows:
        size = row["n"]
        print(f"{size:>5} {cell(row, 'controller', 0, '.2f'):>13} "
              f"{cell(row, 'controller', 1, '.1f'):>11} {cell(row, 'router', 0, '.2f'):>9} "
              f"{cell(row, 'router', 1, '.1f'):>14} {cell(row, 'sleep', 0, '.2f'):>8} "
              f"{cell(row, 'docker', 0, '.2f'):>9}")
        for key, group, index, fmt in (("controller_cpu_pct", "controller", 0, ".2f"),
                                       ("controller_rss_mb", "controller", 1, ".1f"),
                                       ("router_cpu_pct", "router", 0, ".2f"),
                                       ("router_rss_mb", "router", 1, ".1f"),
                                       ("sleep_cpu_pct", "sleep", 0, ".2f")):
            value = cell(row, group, index, fmt)
            result.append(f"{key}_at_{size}={'na' if value == '-' else value}")
        docker, controller = row.get("docker"), row.get("controller")
        ratio = (f"{controller[0] / docker[0]:.2f}" if isinstance(docker, tuple)
                 and isinstance(controller, tuple) and docker[0] > 0 else "na")
        result.append(f"controller_vs_docker_at_{size}={ratio}")
        threads = row.get("threads")
        if isinstance(threads, dict):
            result += [f"{name.replace('-', '_')}_pct_at_{size}={threads.get(name, 0.0):.2f}"
                       for name in PEER_THREADS]
    print("RESULT " + " ".join(result) + f" window_s={args.window:.0f}")
    return 0 if all("controller" in row for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
