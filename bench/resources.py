"""`make bench-resources`: what resource limits and the syscall filter cost and buy.

1. OOM to replaced-and-ready: a real controller runs 2 instances with a 64M limit; one is
   made to allocate 512M, and the time until a new instance is ready in its place is
   measured (polling `corral status`); the peer is the same replacement after a plain crash
   (SIGKILL of the app), so the ratio is what an OOM costs beyond an exit.
2. A neighbour's p99 latency under steady requests, alone, beside a CPU hog (8 busy
   processes) with no limits, and beside the same hog limited to `cpus = 0.25`, the three
   taken in turn 3 times (median p99 of each; the ratios to "alone" are the point).
3. Start time of an instance under cgroups + seccomp against the bare sandbox (no cgroup,
   no filter), started in turn with a second bare run as the noise floor; and the
   confinement's own work timed alone. The goal is at most 5 ms added.
Prints a table and one RESULT line.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from corral.drivers import ProcessDriver
from corral.drivers import cgroups as cgroupfs
from corral.ports.records import InstanceSpec, Limits

ROOT = Path(__file__).resolve().parent.parent
CORRAL = [sys.executable, "-m", "corral"]
ROOTFS = Path(os.environ.get("CORRAL_TEST_CACHE", Path.home() / ".cache" / "corral-tests")) \
    / "bookworm-python3"
SERVER = """
import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"""
HOG = "import os\nfor _ in range(3): os.fork()\nwhile True: pass\n"  # 8 busy processes
HOG_ROUTE = '''        if self.path == "/hog":
            hoard = [bytearray(8 << 20) for _ in range(64)]
            body, status = str(len(hoard)).encode(), 200
        elif self.path == "/healthz":'''


def say(message: str) -> None:
    print(f"· {message}", file=sys.stderr, flush=True)


def debian_root() -> Path:
    """The Debian root with python3 the integration tests use (made once by debootstrap)."""
    if not (ROOTFS / ".complete").exists():
        say(f"debootstrap bookworm with python3 into {ROOTFS} (once per machine)")
        work = ROOTFS.with_name(ROOTFS.name + ".partial")
        shutil.rmtree(work, ignore_errors=True)
        subprocess.run(["debootstrap", "--variant=minbase", "--include=python3", "bookworm",
                        str(work), "http://deb.debian.org/debian"], check=True,
                       stdout=subprocess.DEVNULL)
        (work / ".complete").write_text("ok\n")
        work.rename(ROOTFS)
    return ROOTFS


NO_LIMITS = Limits()


def spec(instance_id: str, code: str, limits: Limits = NO_LIMITS) -> InstanceSpec:
    return InstanceSpec(id=instance_id, service="bench", release=1, image_digest="sha256:ab",
                        rootfs=str(debian_root()), argv=("python3", "-c", code), env={},
                        limits=limits)


def get(connection: http.client.HTTPConnection, path: str = "/") -> int:
    connection.request("GET", path)
    response = connection.getresponse()
    response.read()
    return response.status


def wait_answering(address: str, timeout: float = 30.0) -> None:
    host, port = address.rsplit(":", 1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            get(http.client.HTTPConnection(host, int(port), timeout=1))
            return
        except OSError:
            time.sleep(0.02)
    raise SystemExit(f"{address} never answered")


# -- 3. start-time cost ---------------------------------------------------------------------

def start_cost(state: Path, rounds: int) -> dict[str, float]:
    """Median start time (driver.start until the app runs) of a bare sandbox, a confined
    one and a bare one again, started in turn: the two bare medians bound the noise of a
    loaded machine. Also the confinement's own work (groups made, limits written, filter
    found), timed alone."""
    bare = ProcessDriver(state / "bare", cgroups=cgroupfs.Cgroups(0, reason="bench"),
                         seccomp=False)
    confined = ProcessDriver(state / "confined")
    say(f"start cost: {confined.confinement.layout.describe()}")
    limits = Limits(memory=64 << 20, cpus=0.5, pids=64)
    kinds = (("bare", bare, NO_LIMITS), ("confined", confined, limits),
             ("bare again", bare, NO_LIMITS))
    times: dict[str, list[float]] = {name: [] for name, _, _ in kinds}
    confine: list[float] = []
    for n in range(rounds):
        for name, driver, wanted in kinds:
            instance = f"{name.replace(' ', '-')}-{n}"
            began = time.perf_counter()
            driver.start(spec(instance, "import time; time.sleep(60)", wanted))
            times[name].append(time.perf_counter() - began)
            driver.stop(instance, grace=0)
        began = time.perf_counter()
        done = confined.confinement.confine(spec(f"alone-{n}", "", limits))
        confine.append(time.perf_counter() - began)
        confined.confinement.release(done.cgroups)
    found = {name: statistics.median(values) * 1000 for name, values in times.items()}
    return {**found, "confine": statistics.median(confine) * 1000}


# -- 2. a neighbour's p99 ---------------------------------------------------------------------

def p99_of(address: str, requests: int) -> float:
    host, port = address.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    latencies = []
    for _ in range(requests):
        began = time.perf_counter()
        get(connection)
        latencies.append(time.perf_counter() - began)
    connection.close()
    return statistics.quantiles(latencies, n=100)[98] * 1000


def neighbour_p99(state: Path, requests: int, rounds: int = 3) -> dict[str, float]:
    """The neighbour's p99 in each setting, the settings taken in turn `rounds` times and
    the median p99 of each kept (a loaded machine drifts; interleaving spreads that)."""
    driver = ProcessDriver(state / "neighbour")
    settings = {"alone": None, "hog unlimited": NO_LIMITS, "hog cpus=0.25": Limits(cpus=0.25)}
    found: dict[str, list[float]] = {name: [] for name in settings}
    try:
        neighbour = driver.start(spec("neighbour", SERVER, Limits(memory=128 << 20)))
        wait_answering(neighbour.address)
        p99_of(neighbour.address, 200)  # warm up
        for _ in range(rounds):
            for name, limits in settings.items():
                if limits is not None:
                    driver.start(spec("hog", HOG, limits))
                    time.sleep(0.5)  # let the hog's 8 processes spin up before measuring
                found[name].append(p99_of(neighbour.address, requests))
                if limits is not None:
                    driver.stop("hog", grace=0)
        return {name: statistics.median(values) for name, values in found.items()}
    finally:
        for observed in driver.list():
            driver.stop(observed.id, grace=0)


# -- 1. OOM to replaced and ready ----------------------------------------------------------------

def corral(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([*CORRAL, *args], cwd=project, capture_output=True, text=True,
                          timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"corral {' '.join(args)} failed: {done.stderr}")
    return done


def ready(project: Path) -> list[dict[str, object]]:
    status = json.loads(corral(project, "status", "web", "--json").stdout)
    return [i for i in status["services"][0]["instances"] if i["state"] == "ready"]


def replaced_after(project: Path, gone: str, timeout: float = 120.0) -> float:
    """Seconds until `gone` is out and 2 instances are ready again."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        now = ready(project)
        if len(now) == 2 and gone not in {i["id"] for i in now}:
            return time.monotonic() - began
        time.sleep(0.05)
    raise SystemExit(f"{gone} was not replaced within {timeout:g} s")


def app_pid(outer: int) -> int:
    """The app inside an instance: outer bwrap -> the sandbox's init -> the app."""
    def children(pid: int) -> list[int]:
        found = []
        for entry in filter(str.isdigit, os.listdir("/proc")):
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
        return found
    (init,) = children(outer)
    return children(init)[0]


def oom_replacement(work: Path, port: int) -> dict[str, float]:
    project = work / "oom"
    project.mkdir()
    corral(project, "init", "--name", "oombench", "--port", str(port))
    spec_file = project / "corral.toml"
    spec_file.write_text(spec_file.read_text().replace(
        "replicas = 3", 'replicas = 2\nresources = { memory = "48M", memory_max = "64M" }'))
    server = project / "app" / "server.py"
    server.write_text(server.read_text().replace('        if self.path == "/healthz":',
                                                 HOG_ROUTE, 1))
    corral(project, "up", "-d")
    try:
        corral(project, "deploy", "web")
        hog = ready(project)[0]
        host, hog_port = str(hog["address"]).rsplit(":", 1)
        with contextlib.suppress(OSError, http.client.HTTPException):  # ended mid-request
            get(http.client.HTTPConnection(host, int(hog_port), timeout=30), "/hog")
        oom = replaced_after(project, str(hog["id"]))
        victim = ready(project)[0]
        os.kill(app_pid(int(str(victim["pid"]))), signal.SIGKILL)  # the peer: a plain crash
        crash = replaced_after(project, str(victim["id"]))
        ledger = corral(project, "ledger", "--service", "web").stdout
        if "oom" not in ledger:
            raise SystemExit("the ledger does not say cause=oom")
        return {"oom": oom, "crash": crash}
    finally:
        corral(project, "down")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=25, help="starts of each kind")
    parser.add_argument("--requests", type=int, default=1000, help="per p99 measurement")
    parser.add_argument("--port", type=int, default=18281, help="the OOM project's router")
    args = parser.parse_args()
    if not cgroupfs.prepare(cgroupfs.detect()).is_usable:
        raise SystemExit(f"this host has {cgroupfs.prepare(cgroupfs.detect()).describe()}")
    with tempfile.TemporaryDirectory(prefix="corral-bench-resources-") as tmp:
        work = Path(tmp)
        starts = start_cost(work, args.rounds)
        p99 = neighbour_p99(work, args.requests)
        replace = oom_replacement(work, args.port)
    bare = (starts["bare"] + starts["bare again"]) / 2
    added = starts["confined"] - bare
    noise = abs(starts["bare"] - starts["bare again"])
    rows = [
        ("start, bare sandbox (median ms)", f"{starts['bare']:.1f}"),
        ("start, cgroups + seccomp (median ms)", f"{starts['confined']:.1f}"),
        ("start, bare sandbox again (median ms)", f"{starts['bare again']:.1f}"),
        ("added by cgroups + seccomp, end to end (ms)", f"{added:.1f}"),
        ("  noise: bare against bare again (ms)", f"{noise:.1f}"),
        ("confinement's own work (median ms; goal <= 5)", f"{starts['confine']:.2f}"),
        *((f"neighbour p99, {name} (ms)", f"{value:.2f}") for name, value in p99.items()),
        ("OOM -> replaced and ready (s)", f"{replace['oom']:.2f}"),
        ("crash (SIGKILL) -> replaced and ready (s)", f"{replace['crash']:.2f}"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value:>8}")
    alone = p99["alone"]
    print(f"RESULT start_added_ms={added:.1f} start_noise_ms={noise:.1f}"
          f" confine_ms={starts['confine']:.2f} start_ratio={starts['confined'] / bare:.3f}"
          f" p99_hog_unlimited_ratio={p99['hog unlimited'] / alone:.2f}"
          f" p99_hog_limited_ratio={p99['hog cpus=0.25'] / alone:.2f}"
          f" oom_replace_s={replace['oom']:.2f}"
          f" oom_vs_crash_ratio={replace['oom'] / replace['crash']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
