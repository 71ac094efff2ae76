"""`make bench-delivery`: every delivery strategy under constant load, and rollback speed
against Docker Swarm's `docker service rollback`, measured in the same run.

One corral project (3 instances, the `corral init` app) goes through: rolling v1->v2,
blue-green v2->v3, manual rollback to the warm v2 fleet, canary v2->v4 (succeeds), canary
v4->v5 with FAIL_RATE=0.2 (rolled back by analysis). The external load generator
(bench/_load.py, its own process) counts requests and failures of each; the only failures
allowed are the bad canary's designed exposure, which is reported. Then a single-node Swarm
(bench/_swarm.py) with the same replicas is updated and rolled back under the same load.
"""

from __future__ import annotations

import argparse
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _load import read_records, summarise
from _swarm import PeerError, SwarmPeer
from deploy import BenchError, await_serving, corral, ensure_port_free, say

ROOT = Path(__file__).resolve().parents[1]
CORRAL = ROOT / ".venv" / "bin" / "corral"
LOADER = Path(__file__).resolve().parent / "_load.py"
PORT = 18280
SWARM_PORT = 18290
TIMEOUT = 300.0


@dataclass
class Row:
    scenario: str
    requests: int = 0
    failed: int = 0
    switch_s: float | None = None  # command start -> last answer not from the expected version
    command_s: float | None = None
    exit_code: int | None = None
    note: str = ""


def under_load(name: str, url: str, command: list[str], cwd: Path, expect: str,
               args: argparse.Namespace, workdir: Path, env: dict[str, str] | None = None,
               ok_codes: tuple[int, ...] = (0,)) -> Row:
    """Load on; run `command`; keep load for the tail; load off; count."""
    out = workdir / f"load-{name}.txt"
    loader = subprocess.Popen([sys.executable, str(LOADER), "--url", url, "--rate",
                               str(args.rate), "--clients", str(args.clients), "--max-seconds",
                               str(args.warmup + TIMEOUT + args.tail + 10), "--out", str(out)])
    try:
        time.sleep(args.warmup)
        say(f"{name}: $ {Path(command[0]).name} {' '.join(command[1:])}")
        started = time.monotonic()
        done = subprocess.run(command, cwd=cwd, capture_output=True, text=True,
                              timeout=TIMEOUT, env=env)
        command_s = time.monotonic() - started
        if done.returncode not in ok_codes:
            raise BenchError(f"{name}: exit {done.returncode}: "
                             f"{(done.stdout + done.stderr).strip()[-500:]}")
        time.sleep(args.tail)
    finally:
        loader.send_signal(signal.SIGTERM)
        loader.wait(timeout=30)
    outcome = summarise(read_records(out), started, new_version=expect)
    row = Row(name, outcome.requests, outcome.failed, outcome.switch_s, command_s,
              done.returncode)
    switched = re.search(r'"switched_ms": ([0-9.]+)', done.stdout)
    if switched:  # the controller's own figure: request received -> router switched
        row.note = f"router switched {switched.group(1)} ms after the controller got it"
    return row


def edit(spec: Path, pattern: str, replacement: str) -> None:
    text, count = re.subn(pattern, replacement, spec.read_text())
    if count != 1:
        raise BenchError(f"{spec}: expected one match of {pattern!r}")
    spec.write_text(text)


def corral_side(workdir: Path, args: argparse.Namespace) -> list[Row]:
    project = workdir / "corral"
    spec = project / "corral.toml"
    url = f"http://127.0.0.1:{PORT}/"
    deploy = [str(CORRAL), "deploy", "web"]
    rows = []
    corral(project, "up", "-d")
    try:
        corral(project, "deploy", "web", timeout=TIMEOUT)
        await_serving(url, "1")
        edit(spec, r'APP_VERSION = "1"', 'APP_VERSION = "2"')
        rows.append(under_load("rolling", url, deploy, project, "2", args, workdir))
        edit(spec, r'strategy = "rolling"', 'strategy = "blue-green"\n'
             'canary = { steps = [10, 50, 100], interval = "3s", min_requests = 100, '
             'max_error_rate = 0.05 }')
        edit(spec, r'APP_VERSION = "2"', 'APP_VERSION = "3"')
        rows.append(under_load("blue-green", url, deploy, project, "3", args, workdir))
        rows.append(under_load("rollback (warm)", url,
                               [str(CORRAL), "rollback", "web", "--json"], project, "2", args,
                               workdir))
        edit(spec, r'strategy = "blue-green"', 'strategy = "canary"')
        edit(spec, r'APP_VERSION = "3"', 'APP_VERSION = "4"')
        rows.append(under_load("canary success", url, deploy, project, "4", args, workdir))
        edit(spec, r'APP_VERSION = "4"', 'APP_VERSION = "5", FAIL_RATE = "0.2"')
        bad = under_load("canary auto-rollback", url, deploy, project, "4", args, workdir,
                         ok_codes=(3,))
        bad.note = f"designed exposure: {bad.failed} failed requests before analysis tripped"
        rows.append(bad)
    finally:
        subprocess.run([str(CORRAL), "down"], cwd=project, capture_output=True, timeout=120)
    return rows


def swarm_side(workdir: Path, args: argparse.Namespace) -> Row:
    ensure_port_free(SWARM_PORT)
    peer = SwarmPeer(workdir, SWARM_PORT, replicas=3)
    try:
        peer.start(workdir / "corral" / "app" / "server.py")
        url = f"http://127.0.0.1:{SWARM_PORT}/"
        await_serving(url, "1")
        subprocess.run(peer.update_command("2"), capture_output=True, timeout=TIMEOUT,
                       env=peer.env, check=True)
        await_serving(url, "2")
        command = [*peer.update_command("2")[:2], "rollback", "--detach=false", "--quiet",
                   peer.update_command("2")[-1]]
        return under_load("swarm rollback", url, command, workdir, "1", args, workdir,
                          env=peer.env)
    finally:
        for problem in peer.stop():
            say(f"swarm teardown: {problem}")


def fmt(value: float | int | None, digits: int = 2) -> str:
    if value is None:
        return "na"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def report(rows: list[Row], args: argparse.Namespace) -> str:
    print(f"\n3 instances, load {args.rate:.0f} req/s from {args.clients} keep-alive clients "
          "(bench/_load.py)")
    header = ("scenario", "requests", "failed", "cmd s", "on target s", "note")
    lines = [header] + [(r.scenario, fmt(r.requests), fmt(r.failed), fmt(r.command_s),
                         fmt(r.switch_s, 3), r.note) for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    for line in lines:
        print("  ".join([*(c.ljust(w) for c, w in zip(line[:-1], widths, strict=True)),
                         line[-1]]).rstrip())
    by = {r.scenario: r for r in rows}
    ours = by.get("rollback (warm)")
    theirs = by.get("swarm rollback")
    ratio = (fmt(ours.switch_s / theirs.switch_s, 4) if ours and theirs and ours.switch_s
             is not None and theirs.switch_s else "na")
    failed = {k.split()[0].replace("-", "_") + ("_bad" if "auto" in k else ""): r.failed
              for k, r in by.items() if k not in ("swarm rollback",)}
    bad = by.get("canary auto-rollback")
    return ("RESULT " + " ".join(f"{k}_failed={v}" for k, v in failed.items())
            + f" canary_exposure={bad.failed if bad else 'na'}"
            + f" corral_rollback_s={fmt(ours.switch_s if ours else None, 3)}"
            + f" swarm_rollback_s={fmt(theirs.switch_s if theirs else None, 3)}"
            + f" rollback_ratio={ratio}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=500.0, help="total requests per second")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--tail", type=float, default=2.0)
    parser.add_argument("--skip-swarm", action="store_true")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    workdir = Path(tempfile.mkdtemp(prefix="corral-bench-delivery-"))
    rows: list[Row] = []
    try:
        ensure_port_free(PORT)
        (workdir / "corral").mkdir()
        corral(workdir / "corral", "init", "--name", "bench", "--port", str(PORT))
        try:
            rows += corral_side(workdir, args)
        except (BenchError, OSError, subprocess.SubprocessError) as exc:
            say(f"corral: FAILED: {exc}")
        if not args.skip_swarm:
            try:
                rows.append(swarm_side(workdir, args))
            except (BenchError, PeerError, OSError, subprocess.SubprocessError) as exc:
                say(f"swarm: FAILED: {exc}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(report(rows, args), flush=True)
    clean = all(r.failed == 0 for r in rows if "auto" not in r.scenario)
    return 0 if rows and clean else 1


if __name__ == "__main__":
    sys.exit(main())
