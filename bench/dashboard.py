"""`make bench-dashboard`: the team control plane's costs (issue 15): the dashboard's first
load, how soon a traffic change reaches an open page, and what token auth over TCP adds to
an API request, against the unix socket measured in the same run.

A busybox project in a temporary folder, its controller up with `[controller] listen` on
loopback (plain HTTP, so the figures are the server's, not TLS's), one service deployed
blue-green with manual promotion. Measured:

- page load: `GET /` with the sign-in cookie, then its three assets, each on a new
  connection as a cold browser would (no cache), N times at rest, then over and over
  while the deployments below run: median and p95 ms (goal < 200).
- update: an event-stream client on /ui/events while deployments run: for each switch
  (a promote, then a rollback to the warm fleet), from the ledger's `traffic.set` time to
  the first event whose traffic shows the new release at 100 % (goal < 1 s).
- auth overhead: median of N `GET /v1/ping` on one keep-alive connection, over TCP with a
  token against the unix socket (the peer), and the gate's own cost per call in process
  (token hash, book lookup, role check), goal < 1 ms.
The controller is stopped and the folder removed at the end.
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]
PYTHON = ROOT / ".venv" / "bin" / "python"

SPEC = """\
[project]
name = "bench-dashboard"

[images.web]
base = "scratch"
copy = [{{ src = "rootfs/", dest = "/" }}]
entrypoint = ["/bin/busybox", "sh", "-c", "exec /bin/busybox httpd -f -p $PORT -h /www"]

[services.web]
image = "web"
replicas = 1
strategy = "blue-green"
blue_green = {{ auto_promote = false, preview = false, rollback_window = "15m" }}
router = {{ listen = "127.0.0.1:{port}" }}
health = {{ path = "/", interval = "200ms", timeout = "1s", healthy_after = 1 }}

[controller]
listen = "127.0.0.1:{api_port}"
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def corral(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(PYTHON), "-m", "corral", *args], cwd=folder, text=True,
                          capture_output=True, timeout=600, check=False)
    if done.returncode != 0:
        raise SystemExit(f"corral {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- page load ---------------------------------------------------------------------
def page_load_ms(port: int, token: str, runs: int) -> list[float]:
    from corral.api.pages import ASSETS

    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        html = get(port, "/", {"Cookie": f"corral_token={token}"})
        assert b"traffic" in html, html[:200]
        for asset in ASSETS:
            get(port, f"/ui/static/{asset}", {})
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def get(port: int, path: str, headers: dict[str, str]) -> bytes:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise SystemExit(f"GET {path}: {response.status} {body[:200]!r}")
        return body
    finally:
        connection.close()


def _load_until(done: threading.Event, port: int, token: str, samples: list[float]) -> None:
    while not done.is_set():
        samples += page_load_ms(port, token, 1)


# -- live updates --------------------------------------------------------------------
class Events:
    """An event-stream client of /ui/events, read by its own thread so each "services"
    event is stamped when it arrives: (arrival time, {release: share text})."""

    def __init__(self, port: int, token: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=300)
        self.sock.sendall(f"GET /ui/events HTTP/1.1\r\nHost: x\r\nCookie: corral_token={token}"
                          "\r\n\r\n".encode())
        self.seen: list[tuple[float, dict[str, str]]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            arrived = time.time()
            buffer += chunk
            while b"\n\n" in buffer:
                frame, buffer = buffer.split(b"\n\n", 1)
                shares = dict(re.findall(r'data-testid="traffic-web-(v\d+)">([\d.]+)%',
                                         frame.decode(errors="replace")))
                if shares:
                    self.seen.append((arrived, shares))

    def first(self, release: str, since: int) -> float:
        """When the first event from index `since` on showed `release` with all traffic."""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            for arrived, shares in self.seen[since:]:
                if shares.get(release) == "100":
                    return arrived
            time.sleep(0.05)
        raise SystemExit(f"no event showed {release} at 100 %")

    def close(self) -> None:
        self.sock.close()


def switch_at(folder: Path, after_seq: int, release: int) -> tuple[float, int]:
    """The time of the first `traffic.set` after `after_seq` that gives `release` it all."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        entries = json.loads(corral(folder, "ledger", "--action", "traffic.set",
                                    "--json").stdout)["entries"]
        for entry in entries:
            if entry["seq"] > after_seq and _gives_all(entry["detail"], release):
                return entry["at"], entry["seq"]
        time.sleep(0.2)
    raise SystemExit(f"no traffic.set moving web to v{release}")


def _gives_all(detail: dict[str, Any], release: int) -> bool:
    """A promote records the fleets' weights; a rollback to a warm fleet names it."""
    weights = (detail.get("traffic") or {}).get("weights") or {}
    if weights:
        return bool(weights.get(str(release)) == 100)
    return f"warm fleet of v{release}" in str(detail.get("why", ""))


def update_ms(folder: Path, port: int, token: str, cycles: int) -> list[float]:
    """Promote a deployment at its gate, then roll back to the warm fleet, `cycles` times;
    each switch's delay from the ledger's time to the event stream showing it."""
    samples = []
    events = Events(port, token)
    seq = last_seq(folder)
    try:
        for cycle in range(cycles):
            (folder / "rootfs" / "www" / "index.html").write_text(f"cycle {cycle}\n")
            deploy = subprocess.Popen([str(PYTHON), "-m", "corral", "deploy", "web", "--json"],
                                      cwd=folder, stdout=subprocess.PIPE, text=True)
            assert deploy.stdout is not None
            new = old = 0
            for line in deploy.stdout:
                event = json.loads(line)
                if event["type"] == "start":
                    new, old = event["to"], event["from"]
                if event["type"] in ("gate", "result"):
                    break
            for action, release in (("promote", new), ("rollback", old)):
                mark = len(events.seen)
                corral(folder, action, "web")
                switched, seq = switch_at(folder, seq, release)
                samples.append((events.first(f"v{release}", mark) - switched) * 1000)
                if action == "promote":
                    deploy.wait(120)
    finally:
        events.close()
    return samples


def last_seq(folder: Path) -> int:
    entries = json.loads(corral(folder, "ledger", "--json").stdout)["entries"]
    return int(entries[-1]["seq"]) if entries else 0


# -- auth overhead ---------------------------------------------------------------------
def ping_ms(connection: http.client.HTTPConnection, headers: dict[str, str],
            runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        connection.request("GET", "/v1/ping", headers=headers)
        response = connection.getresponse()
        response.read()
        samples.append((time.perf_counter() - start) * 1000)
        if response.status != 200:
            raise SystemExit(f"ping: {response.status}")
    return samples


def gate_us(folder: Path, token: str, runs: int) -> float:
    """The gate's own cost per request, in process: authenticate + admit."""
    from corral.core.access import FailureWindow
    from corral.engine.access.gate import Gate, admit
    from corral.engine.access.tokens import TokenBook

    gate = Gate(TokenBook(folder / ".corral"), None, time.time,  # type: ignore[arg-type]
                FailureWindow(10, 60.0))
    start = time.perf_counter()
    for _ in range(runs):
        admit(gate.authenticate(token, "127.0.0.1"), "viewer")
    return (time.perf_counter() - start) / runs * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--loads", type=int, default=50, help="page loads (default 50)")
    parser.add_argument("--cycles", type=int, default=3, help="promote+rollback cycles")
    parser.add_argument("--pings", type=int, default=2000, help="API requests per side")
    parser.add_argument("--keep", action="store_true", help="keep the project folder")
    args = parser.parse_args()
    from cli_project import write_busybox_root
    from corral.api.client import _UnixConnection

    folder = Path(tempfile.mkdtemp(prefix="corral-bench-dashboard-"))
    api_port = free_port()
    write_busybox_root(folder, "one\n")
    (folder / "corral.toml").write_text(SPEC.format(port=free_port(), api_port=api_port))
    corral(folder, "up", "-d")
    try:
        corral(folder, "deploy", "web")
        token = json.loads(corral(folder, "token", "create", "bench", "--role", "deployer",
                                  "--json").stdout)["token"]
        loads = page_load_ms(api_port, token, args.loads)  # at rest
        busy: list[float] = []  # and while deployments run, until they are done
        done = threading.Event()
        loader = threading.Thread(target=lambda: _load_until(done, api_port, token, busy))
        loader.start()
        try:
            updates = update_ms(folder, api_port, token, args.cycles)
        finally:
            done.set()
            loader.join()
        tcp = http.client.HTTPConnection("127.0.0.1", api_port, timeout=30)
        unix = _UnixConnection(folder / ".corral" / "run" / "controller.sock", 30)
        ping_ms(tcp, {"Authorization": f"Bearer {token}"}, 50)  # warm both
        ping_ms(unix, {}, 50)
        tcp_ms = statistics.median(ping_ms(tcp, {"Authorization": f"Bearer {token}"},
                                           args.pings))
        unix_ms = statistics.median(ping_ms(unix, {}, args.pings))
        tcp.close()
        unix.close()
        gate = gate_us(folder, token, args.pings)
    finally:
        subprocess.run([str(PYTHON), "-m", "corral", "down"], cwd=folder,
                       capture_output=True, timeout=120, check=False)
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    report(loads, busy, updates, tcp_ms, unix_ms, gate)


def report(loads: list[float], busy: list[float], updates: list[float], tcp_ms: float,
           unix_ms: float, gate: float) -> None:
    rows = [
        ("dashboard first load (HTML + 3 assets)", f"{statistics.median(loads):.1f} ms",
         f"p95 {percentile(loads, 0.95):.1f} ms", "< 200 ms"),
        ("  the same, deployments running", f"{statistics.median(busy):.1f} ms",
         f"p95 {percentile(busy, 0.95):.1f} ms ({len(busy)} loads)", "< 200 ms"),
        ("traffic change -> open page's event", f"{statistics.median(updates):.0f} ms",
         f"max {max(updates):.0f} ms ({len(updates)} switches)", "< 1000 ms"),
        ("GET /v1/ping, TCP + token (keep-alive)", f"{tcp_ms:.3f} ms", "", ""),
        ("GET /v1/ping, unix socket (the peer)", f"{unix_ms:.3f} ms", "", ""),
        ("token auth overhead (TCP - unix)", f"{tcp_ms - unix_ms:.3f} ms", "", "< 1 ms"),
        ("gate in process (hash+lookup+role)", f"{gate:.1f} us", "", "< 1000 us"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'median':>12}  {'spread':<28}  goal")
    for name, value, spread, goal in rows:
        print(f"{name:<{width}}  {value:>12}  {spread:<28}  {goal}")
    print(f"RESULT page_load_ms={statistics.median(loads):.1f} "
          f"page_load_p95_ms={percentile(loads, 0.95):.1f} "
          f"page_load_deploying_ms={statistics.median(busy):.1f} "
          f"page_load_deploying_p95_ms={percentile(busy, 0.95):.1f} "
          f"update_ms={statistics.median(updates):.0f} update_max_ms={max(updates):.0f} "
          f"api_tcp_token_ms={tcp_ms:.3f} api_unix_ms={unix_ms:.3f} "
          f"auth_overhead_ms={tcp_ms - unix_ms:.3f} tcp_vs_unix_ratio={tcp_ms / unix_ms:.2f} "
          f"gate_us={gate:.1f}")


if __name__ == "__main__":
    main()
