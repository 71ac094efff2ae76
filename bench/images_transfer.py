"""`make bench-images-transfer`: push and pull of a ~200 MB image, corral against skopeo.

One image (scratch + a copy step of 200 MB of random files, made once and cached in
~/.cache/corral-bench/transfer) goes to Debian's docker-registry on loopback. Push: `corral
push` vs `skopeo copy oci:… docker://…`, each into a fresh registry (its own storage, so no
blob is already there and nothing can be mounted). Pull: `corral pull` vs `skopeo copy
docker://… oci:…` of the same manifest, each into an empty folder. Every registry started here
is stopped by pid. Ends with `RESULT … push_ratio=… pull_ratio=…` (skopeo s / corral s).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORRAL = ROOT / ".venv" / "bin" / "corral"
CACHE = Path(os.environ.get("CORRAL_BENCH_CACHE", Path.home() / ".cache" / "corral-bench"))
SPEC = """[project]
name = "transfer"

[images.big]
copy = [{ src = "data/", dest = "/data" }]
"""


def say(message: str) -> None:
    print(f"· {message}", file=sys.stderr, flush=True)


def run(*args: str | Path, cwd: Path | None = None) -> float:
    """Run a command to completion; return its wall seconds. A failure ends the bench."""
    started = time.perf_counter()
    done = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True,
                          timeout=900)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, args))} failed:\n{done.stdout}\n{done.stderr}")
    return elapsed


def project(size_mb: int) -> Path:
    """The bench project: random files made once, the image built (cached after the first)."""
    folder = CACHE / f"transfer-{size_mb}m"
    data = folder / "data"
    if not (folder / ".data-complete").exists():
        say(f"writing {size_mb} MB of random files into {data} (once)")
        shutil.rmtree(data, ignore_errors=True)
        data.mkdir(parents=True)
        for number in range(size_mb // 10):
            (data / f"part-{number:02d}.bin").write_bytes(os.urandom(10 << 20))
        (folder / ".data-complete").write_text("ok\n")
    (folder / "corral.toml").write_text(SPEC)
    say("building the image (cached after the first run)")
    run(CORRAL, "build", "big", cwd=folder)
    return folder


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def registry(work: Path) -> Iterator[str]:
    """A fresh docker-registry on loopback with empty storage; stopped by pid on exit."""
    folder = Path(tempfile.mkdtemp(dir=work, prefix="registry-"))
    address = f"127.0.0.1:{free_port()}"
    (folder / "config.yml").write_text(
        f"version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {folder / 'storage'}\n"
        f"http:\n  addr: {address}\n")
    process = subprocess.Popen(["docker-registry", "serve", str(folder / "config.yml")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://{address}/v2/", timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("docker-registry did not start") from None
                time.sleep(0.1)
        yield address
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(folder, ignore_errors=True)


def empty_project(work: Path) -> Path:
    folder = Path(tempfile.mkdtemp(dir=work, prefix="pull-"))
    (folder / "corral.toml").write_text(SPEC)
    return folder


def measure(source: Path, work: Path) -> dict[str, float]:
    layout = source / ".corral" / "images"
    times: dict[str, float] = {}
    (source / ".corral" / "registry-blobs.json").unlink(missing_ok=True)
    with registry(work) as address:
        times["corral_push"] = run(CORRAL, "push", f"{address}/bench/corral:1",
                                   "--image", "big", cwd=source)
        with registry(work) as other:
            times["skopeo_push"] = run("skopeo", "copy", "--quiet", "--dest-tls-verify=false",
                                       f"oci:{layout}:big:latest",
                                       f"docker://{other}/bench/skopeo:1")
        target = empty_project(work)
        times["corral_pull"] = run(CORRAL, "pull", f"{address}/bench/corral:1", cwd=target)
        shutil.rmtree(target)
        oci = work / "skopeo-pull"
        times["skopeo_pull"] = run("skopeo", "copy", "--quiet", "--src-tls-verify=false",
                                   f"docker://{address}/bench/corral:1", f"oci:{oci}:big")
        shutil.rmtree(oci)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=200, help="image payload (MB)")
    parser.add_argument("--rounds", type=int, default=3, help="measurements; medians shown")
    args = parser.parse_args()
    for tool in ("docker-registry", "skopeo"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (apt-get install {tool})")
    source = project(args.size_mb)
    rounds = []
    with tempfile.TemporaryDirectory(prefix="corral-bench-transfer-") as tmp:
        for number in range(args.rounds):
            say(f"round {number + 1}/{args.rounds}")
            rounds.append(measure(source, Path(tmp)))
    median = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
    size = sum(p.stat().st_size for p in (source / "data").iterdir()) / 1e6
    print(f"\nimage: {size:.0f} MB of random files in one layer; {args.rounds} rounds, median\n")
    print(f"{'operation':10} {'corral s':>9} {'skopeo s':>9} {'ratio':>7}   "
          "all rounds (corral | skopeo)")
    ratios = {}
    for op in ("push", "pull"):
        ours, theirs = median[f"corral_{op}"], median[f"skopeo_{op}"]
        ratios[op] = theirs / ours
        detail = (" ".join(f"{r[f'corral_{op}']:.2f}" for r in rounds) + " | "
                  + " ".join(f"{r[f'skopeo_{op}']:.2f}" for r in rounds))
        print(f"{op:10} {ours:9.2f} {theirs:9.2f} {ratios[op]:7.2f}   {detail}")
    print("\nratio = skopeo s / corral s; above 1.0 means corral was faster\n")
    print(f"RESULT corral_push_s={median['corral_push']:.2f} "
          f"skopeo_push_s={median['skopeo_push']:.2f} push_ratio={ratios['push']:.2f} "
          f"corral_pull_s={median['corral_pull']:.2f} "
          f"skopeo_pull_s={median['skopeo_pull']:.2f} pull_ratio={ratios['pull']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
