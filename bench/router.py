"""`make bench-router`: the builtin router against HAProxy, in front of the same fast backend.

In one run: wrk direct to the backend (to show it is not the bottleneck), through the builtin
router with 1 worker and with the default workers (one per core), and through HAProxy with
`nbthread 1` (configured by corral's haproxy router). Then a paced load generator (open loop,
latency from each request's scheduled time) at a fixed rate, direct and through the builtin
router, for the p99 latency the router adds. Prints a table and one RESULT line.
Everything it starts it stops, by pid.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import uvloop

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
from corral.ports.records import Backend  # noqa: E402
from corral.routers.builtin import BuiltinRouter  # noqa: E402
from corral.routers.haproxy import HaproxyRouter  # noqa: E402

FAST_BACKEND = Path(__file__).resolve().parent / "_fast_backend.py"


@dataclass
class WrkResult:
    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    errors: str = ""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_wrk(name: str, port: int, seconds: int, connections: int) -> WrkResult:
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency",
                          f"http://127.0.0.1:{port}/"], capture_output=True, text=True,
                         timeout=seconds + 60, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    lat = dict(re.findall(r"\s+(50|99)%\s+([\d.]+(?:us|ms|s))", out))
    errors = " ".join(re.findall(r"(Non-2xx.*|Socket errors.*)", out))

    def parse(v: str) -> float:
        m = re.match(r"([\d.]+)(us|ms|s)", v)
        return _ms(m.group(1), m.group(2)) if m else float("nan")
    return WrkResult(name, rps, parse(lat.get("50", "")), parse(lat.get("99", "")), errors)


# --- paced (open-loop) load at a fixed rate -------------------------------------------

async def _paced(port: int, rate: float, seconds: float, connections: int) -> list[float]:
    request = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
    idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(connections):
        idle.put_nowait(await asyncio.open_connection("127.0.0.1", port))
    latencies: list[float] = []

    async def one(scheduled: float) -> None:
        reader, writer = await idle.get()
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))  # type: ignore[union-attr]
        await reader.readexactly(length)
        latencies.append(time.perf_counter() - scheduled)
        idle.put_nowait((reader, writer))

    start = time.perf_counter() + 0.2
    tasks = []
    total = int(rate * seconds)
    for i in range(total):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(scheduled)))
    await asyncio.gather(*tasks)
    while not idle.empty():
        idle.get_nowait()[1].close()
    return latencies


# --- the run ---------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=4, help="each wrk run")
    parser.add_argument("--rounds", type=int, default=3,
                        help="the paths are measured in turn, this many times (median kept)")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--rate", type=float, default=1000.0, help="paced requests/s")
    parser.add_argument("--paced-seconds", type=float, default=4.0, help="per path and round")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="corral-bench-router-"))
    backend_port = free_port()
    backend = subprocess.Popen([sys.executable, str(FAST_BACKEND), str(backend_port)])
    routers: list[BuiltinRouter | HaproxyRouter] = []
    try:
        wait_listening(backend_port)
        address = f"127.0.0.1:{backend_port}"
        paths = {"direct": backend_port}
        for name, router in (("builtin 1 worker", BuiltinRouter(work / "b1", workers=1)),
                             ("builtin default workers", BuiltinRouter(work / "bn")),
                             ("haproxy nbthread 1", HaproxyRouter(work / "hp", threads=1))):
            routers.append(router)
            paths[name] = _route(router, address)
        results = _measure(paths, args)
        paced_ms = _measure_paced(paths, args)
    finally:
        for router in routers:
            router.stop()
        backend.terminate()
        backend.wait(10)
    _report(results, paced_ms, args)
    return 0


def _route(router: BuiltinRouter | HaproxyRouter, backend: str) -> int:
    port = free_port()
    router.ensure_running()
    router.set_backends("bench", f"127.0.0.1:{port}", [Backend(backend, 1, "v1")])
    wait_listening(port)
    return port


def _measure(paths: dict[str, int], args: argparse.Namespace) -> list[WrkResult]:
    """Each path in turn, `rounds` times: load from elsewhere hits all paths alike."""
    runs: dict[str, list[WrkResult]] = {name: [] for name in paths}
    for _ in range(args.rounds):
        for name, port in paths.items():
            runs[name].append(run_wrk(name, port, args.seconds, args.connections))
    return [sorted(rs, key=lambda r: r.rps)[len(rs) // 2] for rs in runs.values()]


def _measure_paced(paths: dict[str, int], args: argparse.Namespace) -> dict[str, float]:
    """p50/p99 of paced load, direct and through builtin, in alternating slices."""
    names = ("direct", "builtin 1 worker", "builtin default workers")
    samples: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(args.rounds):
        for name in names:
            samples[name] += uvloop.run(_paced(paths[name], args.rate, args.paced_seconds, 32))
    out = {}
    for name, values in samples.items():
        values.sort()
        out[f"{name} p50"] = values[len(values) // 2] * 1000
        out[f"{name} p99"] = values[int(len(values) * 0.99)] * 1000
    return out


def _report(results: list[WrkResult], paced_ms: dict[str, float],
            args: argparse.Namespace) -> None:
    print(f"\nwrk -t1 -c{args.connections} -d{args.seconds}s, median of {args.rounds} "
          f"interleaved rounds, same fast backend (bench/_fast_backend.py)")
    print(f"{'path':<26}{'requests/s':>12}{'p50 ms':>10}{'p99 ms':>10}  errors")
    for r in results:
        print(f"{r.name:<26}{r.rps:>12.0f}{r.p50_ms:>10.2f}{r.p99_ms:>10.2f}  {r.errors}")
    by = {r.name: r for r in results}
    one, many = by["builtin 1 worker"].rps, by["builtin default workers"].rps
    haproxy, direct = by["haproxy nbthread 1"].rps, by["direct"].rps
    print(f"\npaced {args.rate:.0f} req/s, open loop, {args.rounds} x {args.paced_seconds:g}s "
          f"per path")
    print(f"{'path':<26}{'p50 ms':>10}{'p99 ms':>10}{'added p99':>11}")
    direct_p99 = paced_ms["direct p99"]
    for name in ("direct", "builtin 1 worker", "builtin default workers"):
        p99 = paced_ms[f"{name} p99"]
        print(f"{name:<26}{paced_ms[f'{name} p50']:>10.2f}{p99:>10.2f}"
              f"{p99 - direct_p99:>11.2f}")
    extra = paced_ms["builtin default workers p99"] - direct_p99
    print(f"goals: builtin 1 worker >= 0.6 x haproxy: {one / haproxy:.2f}; "
          f"added p99 <= 1 ms at {args.rate:.0f} req/s: {extra:.2f} ms")
    print(f"RESULT builtin_1w_rps={one:.0f} builtin_nw_rps={many:.0f} haproxy_rps={haproxy:.0f} "
          f"direct_rps={direct:.0f} builtin_vs_haproxy={one / haproxy:.2f} "
          f"added_p99_ms_at_1k={extra:.2f}")


if __name__ == "__main__":
    sys.exit(main())
