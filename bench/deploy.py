"""`make bench`: a v1 -> v2 deploy of 3 instances under constant load, corral against Swarm.

Drives corral as a user does (init, up -d, deploy, edit corral.toml, deploy) and, in the same
run, the same app as a single-node Docker Swarm service behind HAProxy (`docker service
update`). The same external load generator (bench/_load.py, its own process) hits each entry
point; the table compares the two and the last line is the machine-readable RESULT.
It starts everything it measures and stops all of it, by pid, whatever happens.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _load import Outcome, read_records, summarise
from _swarm import PeerError, SwarmPeer

ROOT = Path(__file__).resolve().parents[1]
CORRAL = ROOT / ".venv" / "bin" / "corral"
LOADER = Path(__file__).resolve().parent / "_load.py"
CORRAL_PORT = 18180
SWARM_PORT = 18190
DEPLOY_TIMEOUT = 300.0


class BenchError(RuntimeError):
    """A step of the benchmark failed; the message names the step."""


@dataclass
class Measurement:
    peer: str
    outcome: Outcome | None = None
    command_s: float | None = None
    load_s: float | None = None
    error: str | None = None


def say(message: str) -> None:
    print(f"bench: {message}", flush=True)


def run(cmd: list[str], cwd: Path, timeout: float, what: str,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                              env=env)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"{what}: did not finish within {timeout:.0f}s") from exc
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip()[-600:]
        raise BenchError(f"{what}: exit {done.returncode}\n{output}")
    return done


def ensure_port_free(port: int) -> None:
    with socket.socket() as probe:
        # Like the servers that will bind it: TIME_WAIT leftovers of the last run are fine.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            raise BenchError(f"port 127.0.0.1:{port} is in use; stop what holds it") from exc


def await_serving(url: str, version: str, in_a_row: int = 20, timeout: float = 60) -> None:
    """Poll until `in_a_row` consecutive answers are 200 from `version` (all backends ready)."""
    deadline, streak = time.monotonic() + timeout, 0
    while streak < in_a_row:
        if time.monotonic() > deadline:
            raise BenchError(f"{url} did not serve version {version} steadily within {timeout}s")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                good = response.status == 200 and response.headers["X-App-Version"] == version
        except OSError:
            good = False
        streak = streak + 1 if good else 0
        if not good:
            time.sleep(0.2)


def measure(peer: str, url: str, deploy: list[str], cwd: Path, args: argparse.Namespace,
            workdir: Path, env: dict[str, str] | None = None) -> Measurement:
    """Load on, wait, time `deploy`, keep load for the tail, load off, summarise."""
    await_serving(url, "1")
    out = workdir / f"load-{peer}.txt"
    bound = args.warmup + DEPLOY_TIMEOUT + args.tail + 10
    loader = subprocess.Popen([sys.executable, str(LOADER), "--url", url, "--rate",
                               str(args.rate), "--clients", str(args.clients),
                               "--max-seconds", str(bound), "--out", str(out)])
    try:
        load_started = time.monotonic()
        time.sleep(args.warmup)  # steady v1 traffic before the deploy begins
        if loader.poll() is not None:
            raise BenchError(f"the load generator exited early ({loader.returncode})")
        say(f"{peer}: $ {Path(deploy[0]).name} {' '.join(deploy[1:])}  (timed)")
        started = time.monotonic()
        run(deploy, cwd, DEPLOY_TIMEOUT, f"{peer} deploy v2", env)
        command_s = time.monotonic() - started
        time.sleep(args.tail)  # catch late v1 answers and late failures
    finally:
        loader.send_signal(signal.SIGTERM)
        try:
            loader.wait(timeout=20)
        except subprocess.TimeoutExpired:
            loader.kill()
            loader.wait(timeout=10)
    load_s = time.monotonic() - load_started
    if loader.returncode != 0 or not out.exists():
        raise BenchError(f"the load generator failed (exit {loader.returncode})")
    outcome = summarise(read_records(out), started, new_version="2")
    return Measurement(peer, outcome, command_s, load_s)


def corral(workdir: Path, *cmd: str, timeout: float = 120) -> None:
    say(f"corral: $ corral {' '.join(cmd)}")
    run([str(CORRAL), *cmd], workdir, timeout, f"corral {' '.join(cmd)}")


def set_version(spec: Path, old: str, new: str) -> None:
    text = spec.read_text()
    needle = f'APP_VERSION = "{old}"'
    if text.count(needle) != 1:
        raise BenchError(f"{spec}: expected one `{needle}` to change (the init template moved?)")
    spec.write_text(text.replace(needle, f'APP_VERSION = "{new}"'))


def scaffold(workdir: Path, args: argparse.Namespace) -> Measurement:
    corral(workdir / "corral", "init", "--name", "bench", "--port", str(CORRAL_PORT))
    return Measurement("corral")


def corral_side(workdir: Path, args: argparse.Namespace) -> Measurement:
    project = workdir / "corral"
    ensure_port_free(CORRAL_PORT)
    try:
        corral(project, "up", "-d")
        corral(project, "deploy", "web", timeout=DEPLOY_TIMEOUT)  # v1; the first build is slow
        set_version(project / "corral.toml", "1", "2")
        return measure("corral", f"http://127.0.0.1:{CORRAL_PORT}/",
                       [str(CORRAL), "deploy", "web"], project, args, workdir)
    finally:
        done = subprocess.run([str(CORRAL), "down"], cwd=project, capture_output=True,
                              text=True, timeout=120)
        if done.returncode != 0:
            say(f"corral down failed (exit {done.returncode}): {done.stderr.strip()[-300:]}")


def swarm_side(workdir: Path, args: argparse.Namespace) -> Measurement:
    ensure_port_free(SWARM_PORT)
    peer = SwarmPeer(workdir, SWARM_PORT, replicas=3)
    try:
        peer.start(workdir / "corral" / "app" / "server.py")
        return measure("swarm", f"http://127.0.0.1:{SWARM_PORT}/", peer.update_command("2"),
                       workdir, args, workdir, peer.env)
    finally:
        for problem in peer.stop():
            say(f"swarm teardown: {problem}")


Side = Callable[[Path, argparse.Namespace], Measurement]


def attempt(peer: str, side: Side, workdir: Path, args: argparse.Namespace) -> Measurement:
    try:
        return side(workdir, args)
    except (BenchError, PeerError, OSError, subprocess.SubprocessError) as exc:
        say(f"{peer}: FAILED: {exc}")
        return Measurement(peer, error=str(exc).splitlines()[0])


def fmt(value: float | int | None, digits: int = 2) -> str:
    if value is None:
        return "na"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def print_table(rows: list[Measurement], args: argparse.Namespace) -> None:
    print()
    print(f"v1 -> v2, 3 instances, load {args.rate:.0f} req/s from {args.clients} keep-alive "
          f"clients (bench/_load.py), tail {args.tail:.0f}s")
    header = ("peer", "deploy cmd s", "all on v2 s", "requests", "failed", "req/s", "note")
    lines = [header]
    for row in rows:
        o = row.outcome
        rate = o.requests / row.load_s if o and row.load_s else None
        note = row.error or ("" if o and o.switch_s is not None else "never all on v2")
        lines.append((row.peer, fmt(row.command_s), fmt(o.switch_s if o else None),
                      fmt(o.requests if o else None), fmt(o.failed if o else None),
                      fmt(rate, 0), note))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    for line in lines:
        cells = [cell.ljust(width) for cell, width in zip(line[:-1], widths, strict=True)]
        print("  ".join([*cells, line[-1]]).rstrip())
    print()


def result_line(corral_row: Measurement, swarm_row: Measurement) -> str:
    def figures(row: Measurement) -> tuple[str, str, str]:
        o = row.outcome
        if o is None:
            return "na", "na", "na"
        return fmt(o.switch_s, 3), str(o.requests), str(o.failed)

    c, s = figures(corral_row), figures(swarm_row)
    c_switch = corral_row.outcome.switch_s if corral_row.outcome else None
    s_switch = swarm_row.outcome.switch_s if swarm_row.outcome else None
    ratio = fmt(c_switch / s_switch, 3) if c_switch is not None and s_switch else "na"
    return (f"RESULT corral_switch_s={c[0]} corral_requests={c[1]} corral_failed={c[2]} "
            f"swarm_switch_s={s[0]} swarm_requests={s[1]} swarm_failed={s[2]} "
            f"switch_ratio={ratio}")


def exit_code(corral_row: Measurement, swarm_row: Measurement, args: argparse.Namespace) -> int:
    """1: corral failed a step, dropped a request or never moved all traffic; 2: the peer failed."""
    o = corral_row.outcome
    if not args.skip_corral and (o is None or o.failed != 0 or o.switch_s is None):
        return 1
    s = swarm_row.outcome
    return 2 if not args.skip_swarm and (s is None or s.switch_s is None) else 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=300.0, help="total requests per second")
    parser.add_argument("--clients", type=int, default=16, help="keep-alive client threads")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of load before deploy")
    parser.add_argument("--tail", type=float, default=2.0, help="seconds of load after deploy")
    parser.add_argument("--skip-corral", action="store_true", help="measure Swarm only")
    parser.add_argument("--skip-swarm", action="store_true", help="measure corral only")
    parser.add_argument("--keep-workdir", action="store_true", help="keep logs and load records")
    return parser.parse_args()


def interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    args = parse_args()
    # SIGTERM (e.g. from make's parent) must run the same teardown as Ctrl-C.
    signal.signal(signal.SIGTERM, interrupt)
    workdir = Path(tempfile.mkdtemp(prefix="corral-bench-"))
    say(f"working in {workdir}")
    try:
        rows = measure_both(workdir, args)
    except KeyboardInterrupt:
        say("interrupted; everything the benchmark started has been stopped")
        return 130
    finally:
        if args.keep_workdir:
            say(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print_table(list(rows), args)
    print(result_line(*rows), flush=True)
    return exit_code(*rows, args)


def measure_both(workdir: Path, args: argparse.Namespace) -> tuple[Measurement, Measurement]:
    # `corral init` writes the app both sides run; Swarm gets the very same server.py.
    (workdir / "corral").mkdir()
    init = attempt("corral", scaffold, workdir, args)
    if init.error:
        corral_row = init
    elif args.skip_corral:
        corral_row = Measurement("corral", error="skipped (--skip-corral)")
    else:
        corral_row = attempt("corral", corral_side, workdir, args)
    if args.skip_swarm:
        swarm_row = Measurement("swarm", error="skipped (--skip-swarm)")
    elif not (workdir / "corral" / "app" / "server.py").exists():
        swarm_row = Measurement("swarm", error="no app: `corral init` failed")
    else:
        swarm_row = attempt("swarm", swarm_side, workdir, args)
    return corral_row, swarm_row


if __name__ == "__main__":
    sys.exit(main())
