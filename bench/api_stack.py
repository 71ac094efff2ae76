"""`make bench-api-stack`: what the controller's API stack costs (ADR 0017): corral's server
(stdlib http.server, threads) against Starlette on uvicorn (uvloop + httptools), measured
in the same run, both answering `GET /v1/ping` behind a token check on loopback TCP.

Each side runs as its own process: corral's with its real gate and token book; Starlette's
with the same work per request (SHA-256 of the token, a lookup, a stat of the book) in an
async handler. Measured: start-up to the first answer, median latency of N sequential
requests on one keep-alive connection, requests/s with C client threads (each with its own
keep-alive connection), and the server's resident memory after the load.

Starlette and uvicorn are not corral dependencies: give a Python that has them with
`--asgi-python` (default: $ASGI_PYTHON); without one that side is `na`.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = ROOT / ".venv" / "bin" / "python"


def serve_corral(port: int, folder: Path) -> None:
    sys.path.insert(0, str(ROOT / "src"))
    from types import SimpleNamespace

    from corral.api.server import Lifecycle, TcpApiServer
    from corral.core.access import FailureWindow
    from corral.engine.access.gate import Gate
    from corral.engine.access.tokens import TokenBook

    tokens = TokenBook(folder)
    controller = SimpleNamespace(ws=SimpleNamespace(tokens=tokens, store=None),
                                 stopping=threading.Event())
    gate = Gate(tokens, None, time.time, FailureWindow(10, 60.0))  # type: ignore[arg-type]
    server = TcpApiServer("127.0.0.1", port, controller, gate,  # type: ignore[arg-type]
                          Lifecycle())
    server.serve_forever(poll_interval=0.5)


def serve_starlette(port: int, folder: Path) -> None:
    import hashlib

    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    book = folder / "tokens.json"
    digests = {r["digest"]: r for r in json.loads(book.read_text())["tokens"]}

    async def ping(request: Request) -> JSONResponse:
        authorization = request.headers.get("authorization", "")
        book.stat()  # the token book's freshness check, as corral's does per request
        if digests.get(hashlib.sha256(authorization[7:].encode()).hexdigest()) is None:
            return JSONResponse({"error": {"type": "AccessDenied"}}, status_code=401)
        return JSONResponse({"ok": True, "pid": os.getpid()})

    app = Starlette(routes=[Route("/v1/ping", ping)])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def ping(connection: http.client.HTTPConnection, token: str) -> None:
    connection.request("GET", "/v1/ping", headers={"Authorization": f"Bearer {token}"})
    response = connection.getresponse()
    response.read()
    if response.status != 200:
        raise SystemExit(f"ping answered {response.status}")


def measure(python: str, side: str, folder: Path, token: str, runs: int,
            clients: int) -> dict[str, float]:
    port = free_port()
    start = time.perf_counter()
    server = subprocess.Popen([python, __file__, "--serve", side, "--port", str(port),
                               "--dir", str(folder)], stderr=subprocess.DEVNULL)
    try:
        startup = _first_answer(port, token, start)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for _ in range(100):
            ping(connection, token)
        samples = []
        for _ in range(runs):
            began = time.perf_counter()
            ping(connection, token)
            samples.append((time.perf_counter() - began) * 1000)
        connection.close()
        rate = _throughput(port, token, clients, runs // clients)
        rss = _rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(30)
    return {"startup_ms": startup, "latency_ms": statistics.median(samples),
            "rps": rate, "rss_mb": rss}


def _first_answer(port: int, token: str, start: float) -> float:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            ping(connection, token)
            connection.close()
            return (time.perf_counter() - start) * 1000
        except OSError:
            time.sleep(0.01)
    raise SystemExit("the server did not answer")


def _throughput(port: int, token: str, clients: int, each: int) -> float:
    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for _ in range(each):
            ping(connection, token)
        connection.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return clients * each / (time.perf_counter() - began)


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--serve", choices=["corral", "starlette"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--asgi-python", default=os.environ.get("ASGI_PYTHON"),
                        help="a Python with starlette and uvicorn installed")
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    if args.serve == "corral":
        serve_corral(args.port, args.dir)
        return
    if args.serve == "starlette":
        serve_starlette(args.port, args.dir)
        return
    sys.path.insert(0, str(ROOT / "src"))
    from corral.engine.access.tokens import TokenBook

    folder = Path(tempfile.mkdtemp(prefix="corral-bench-api-"))
    token = TokenBook(folder).create("bench", "viewer", time.time(), None)
    results = {"corral": measure(str(PYTHON), "corral", folder, token, args.runs,
                                 args.clients)}
    if args.asgi_python:
        results["starlette"] = measure(args.asgi_python, "starlette", folder, token,
                                       args.runs, args.clients)
    report(results)


def report(results: dict[str, dict[str, float]]) -> None:
    names = ("startup_ms", "latency_ms", "rps", "rss_mb")
    print(f"{'side':<26}" + "".join(f"{n:>14}" for n in names))
    labels = {"corral": "corral (http.server)", "starlette": "starlette + uvicorn"}
    for side, figures in results.items():
        print(f"{labels[side]:<26}" + "".join(f"{figures[n]:>14.2f}" for n in names))
    peer = results.get("starlette")
    own = results["corral"]
    ratio = (lambda n: f"{own[n] / peer[n]:.2f}") if peer else (lambda n: "na")
    print("RESULT " + " ".join(f"corral_{n}={own[n]:.2f}" for n in names) + " " +
          " ".join(f"starlette_{n}={peer[n]:.2f}" if peer else f"starlette_{n}=na"
                   for n in names) +
          f" latency_ratio={ratio('latency_ms')} rps_ratio={ratio('rps')}"
          f" rss_ratio={ratio('rss_mb')}")


if __name__ == "__main__":
    main()
