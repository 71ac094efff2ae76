"""`make bench-pipeline`: commit -> live in prod for a one-line change, through build, test,
staging, smoke and promote, driven by `corral watch` following a real git remote.

A bare repository is the remote; a developer's clone pushes a one-line change to a static
page (busybox httpd, FROM scratch). `corral watch` (poll every 200 ms) sees the new head,
checks it out, builds, runs the test command in a sandbox, deploys to staging, smoke-tests
staging and promotes the same digest to prod. The clock runs from the push to the first
answer from prod's router carrying the new line. Each stage's time comes from the run record.

Peer, computed from the same run: Argo CD's default repository poll (timeout.reconciliation,
180 s: "Argo CD polls Git repositories every three minutes", argo-cd.readthedocs.io, FAQ
"How often does Argo CD check for changes to my Git or Helm repository?") plus the same
rollout (corral's own deploy + promote time measured here), at its expected detection
(half the period, 90 s) and at its worst (180 s). Everything started is stopped by pid.
"""

from __future__ import annotations

import argparse
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
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PYTHON = ROOT / ".venv" / "bin" / "python"
ARGO_POLL_S = 180.0

SPEC = """\
[project]
name = "bench-pipeline"

[images.web]
base = "scratch"
copy = [{{ src = "rootfs/", dest = "/" }}]
entrypoint = ["/bin/busybox", "sh", "-c", "exec /bin/busybox httpd -f -p $PORT -h /www"]

[services.web]
image = "web"
router = {{ listen = "127.0.0.1:{staging}" }}
health = {{ path = "/", interval = "100ms", timeout = "1s", healthy_after = 1 }}

[environments.staging]
default = true

[environments.prod]
require_passed = ["staging"]
[environments.prod.services.web]
listen = "127.0.0.1:{prod}"

[pipeline]
source = "{origin}"
poll = "200ms"

[[pipeline.stages]]
kind = "build"

[[pipeline.stages]]
kind = "test"
command = ["/bin/busybox", "grep", "-q", "line", "/www/index.html"]

[[pipeline.stages]]
kind = "deploy"
env = "staging"

[[pipeline.stages]]
kind = "smoke"
env = "staging"
expect_body = "line"

[[pipeline.stages]]
kind = "promote"
from = "staging"
env = "prod"
"""


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def git(folder: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=bench", "-c", "user.email=bench@example",
                           *args], cwd=folder, check=True, capture_output=True,
                          text=True).stdout.strip()


def corral(folder: Path, *args: str) -> str:
    done = subprocess.run([str(PYTHON), "-m", "corral", *args], cwd=folder,
                          capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"corral {' '.join(args)}: {done.stdout}{done.stderr}")
    return done.stdout


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def page(port: int) -> str:
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        connection.request("GET", "/")
        return connection.getresponse().read().decode()
    except (OSError, http.client.HTTPException):
        return ""


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.01)


def push(dev: Path, text: str) -> float:
    (dev / "rootfs" / "www" / "index.html").write_text(text)
    git(dev, "commit", "-q", "-am", text.strip())
    git(dev, "push", "-q", "origin", "main")
    return time.time()


def run_record(ops: Path, commit: str) -> dict[str, Any]:
    runs = json.loads(corral(ops, "pipeline", "status", "--json", "-n", "100"))["runs"]
    return next(r for r in runs if r["commit"] == commit)


def setup(base: Path) -> tuple[Path, Path, int]:
    origin, dev, ops = base / "origin.git", base / "dev", base / "ops"
    git(base, "init", "-q", "--bare", "-b", "main", str(origin))
    git(base, "clone", "-q", str(origin), str(dev))
    git(dev, "checkout", "-q", "-b", "main")
    (dev / "rootfs" / "bin").mkdir(parents=True)
    (dev / "rootfs" / "www").mkdir()
    shutil.copy(shutil.which("busybox") or "/bin/busybox", dev / "rootfs" / "bin" / "busybox")
    staging, prod = free_port(), free_port()
    spec = SPEC.format(staging=staging, prod=prod, origin=origin)
    (dev / "corral.toml").write_text(spec)
    (dev / "rootfs" / "www" / "index.html").write_text("line 0\n")
    git(dev, "add", "-A")
    git(dev, "commit", "-q", "-m", "first")
    git(dev, "push", "-q", "origin", "main")
    ops.mkdir()
    (ops / "corral.toml").write_text(spec)
    return dev, ops, prod


def measure(rounds: int) -> list[dict[str, Any]]:
    base = Path(tempfile.mkdtemp(prefix="corral-bench-pipeline-"))
    watcher = None
    dev, ops, prod = setup(base)
    try:
        for env in ("staging", "prod"):
            corral(ops, "up", "-d", "--env", env)
        watcher = subprocess.Popen([str(PYTHON), "-m", "corral", "watch"], cwd=ops,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        say("warming up: the first commit through every stage")
        wait_for(lambda: page(prod) == "line 0\n", 300, "the first commit in prod")
        results = []
        for n in range(1, rounds + 1):
            text = f"line {n}\n"
            pushed = push(dev, text)
            wait_for(lambda t=text: page(prod) == t, 300, f"round {n} in prod")
            live = time.time()
            run = run_record(ops, git(dev, "rev-parse", "HEAD"))
            results.append({"total": live - pushed, "detect": run["created_at"] - pushed,
                            **{s["kind"]: s["seconds"] for s in run["stages"]}})
            say(f"round {n}: {live - pushed:.2f} s")
        return results
    finally:
        if watcher is not None:
            watcher.send_signal(signal.SIGINT)
            try:
                watcher.wait(timeout=60)
            except subprocess.TimeoutExpired:
                watcher.kill()
        for env in ("staging", "prod"):
            subprocess.run([str(PYTHON), "-m", "corral", "down", "--env", env], cwd=ops,
                           capture_output=True, timeout=120, check=False)
        shutil.rmtree(base, ignore_errors=True)


def report(results: list[dict[str, Any]]) -> None:
    columns = ["detect", "build", "test", "deploy", "smoke", "promote", "total"]
    print(f"{'round':>5} " + " ".join(f"{c + ' s':>10}" for c in columns))
    for n, row in enumerate(results, 1):
        print(f"{n:>5} " + " ".join(f"{row[c]:>10.2f}" for c in columns))
    median = {c: statistics.median(r[c] for r in results) for c in columns}
    print(f"{'med':>5} " + " ".join(f"{median[c]:>10.2f}" for c in columns))
    rollout = median["deploy"] + median["promote"]
    argo_expected = ARGO_POLL_S / 2 + rollout
    argo_worst = ARGO_POLL_S + rollout
    print(f"\npeer: Argo CD default poll {ARGO_POLL_S:.0f} s + the same rollout "
          f"({rollout:.2f} s): expected {argo_expected:.1f} s, worst {argo_worst:.1f} s")
    print(f"goal: under 30 s end to end ({'met' if median['total'] < 30 else 'MISSED'}), "
          f"detection under 1 s ({'met' if median['detect'] < 1 else 'MISSED'})")
    print(f"RESULT commit_to_prod_s={median['total']:.2f} detect_s={median['detect']:.3f} "
          f"build_s={median['build']:.2f} test_s={median['test']:.2f} "
          f"staging_deploy_s={median['deploy']:.2f} smoke_s={median['smoke']:.2f} "
          f"promote_s={median['promote']:.2f} argocd_expected_s={argo_expected:.1f} "
          f"argocd_worst_s={argo_worst:.1f} "
          f"speedup_vs_argocd_expected={argo_expected / median['total']:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="one-line changes measured")
    args = parser.parse_args()
    if os.environ.get("CORRAL_STATE_DIR"):
        sys.exit("unset CORRAL_STATE_DIR: the bench makes its own project")
    report(measure(args.rounds))


if __name__ == "__main__":
    main()
