"""`make bench-images-transfer`: push and pull of a ~200 MB image, corral against skopeo.

One image (scratch + a copy step of 200 MB of random files, made once and cached in
~/.cache/corral-bench/transfer) goes to Debian's docker-registry on loopback. Push: `corral
push` vs `skopeo copy --preserve-digests oci:… docker://…`, each into a fresh registry (its own
storage, so no blob is already there and nothing can be mounted). Pull: `corral pull` vs
`skopeo copy --dest-oci-accept-uncompressed-layers docker://… oci:…` of the same manifest,
each into an empty folder; the two tools take turns going first. Both flags keep skopeo from
recompressing an uncompressed layer, so both sides move the same blobs byte for byte (both
fsync what they store); the bench checks that both end with the same manifest digest.
corral also moves the image's referrers (its SBOM, signatures), which skopeo does not: that
extra is shown. Every registry started here is stopped by pid. Ends with
`RESULT … push_ratio=… pull_ratio=…` (skopeo s / corral s, wall time of each command).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
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


def run(*args: str | Path, cwd: Path | None = None) -> tuple[float, str]:
    """Run a command to completion; return its wall seconds and stdout. A failure ends the
    bench."""
    started = time.perf_counter()
    done = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True,
                          timeout=900)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, args))} failed:\n{done.stdout}\n{done.stderr}")
    return elapsed, done.stdout


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


def corral(*args: str, cwd: Path) -> tuple[float, dict[str, object]]:
    """Wall seconds of a `corral … --json` command, and its report."""
    elapsed, out = run(CORRAL, *args, "--json", cwd=cwd)
    return elapsed, json.loads(out)


def skopeo(*args: str | Path, digestfile: Path) -> tuple[float, dict[str, object]]:
    """Wall seconds of a `skopeo copy`, and the manifest digest it wrote."""
    elapsed, _ = run("skopeo", "copy", "--quiet", "--digestfile", digestfile, *args)
    return elapsed, {"digest": digestfile.read_text().strip()}


def same_work(what: str, ours: object, theirs: object) -> None:
    if ours != theirs:
        raise SystemExit(f"{what}: corral ended with {ours}, skopeo with {theirs}: the two "
                         "sides did not move the same image, so the times do not compare")


def measure(source: Path, work: Path, corral_first: bool) -> tuple[dict[str, float],
                                                                  dict[str, object]]:
    """One round: push, then pull, each by both tools in the given order (the caller
    alternates it, so a load that rises or falls during a round favours neither)."""
    layout = source / ".corral" / "images"
    times: dict[str, float] = {}
    reports: dict[str, dict[str, object]] = {}
    digestfile = work / "skopeo-digest"
    (source / ".corral" / "registry-blobs.json").unlink(missing_ok=True)

    def in_order(ours: Callable[[], None], theirs: Callable[[], None]) -> None:
        for step in (ours, theirs) if corral_first else (theirs, ours):
            step()

    with registry(work) as address, registry(work) as other:
        def corral_push() -> None:
            times["corral_push"], reports["push"] = corral(
                "push", f"{address}/bench/corral:1", "--image", "big", cwd=source)

        def skopeo_push() -> None:
            times["skopeo_push"], reports["skopeo_push"] = skopeo(
                "--preserve-digests", "--dest-tls-verify=false", f"oci:{layout}:big:latest",
                f"docker://{other}/bench/skopeo:1", digestfile=digestfile)

        def corral_pull() -> None:
            target = empty_project(work)
            times["corral_pull"], reports["pull"] = corral(
                "pull", f"{address}/bench/corral:1", cwd=target)
            shutil.rmtree(target)

        def skopeo_pull() -> None:
            oci = work / "skopeo-pull"
            times["skopeo_pull"], reports["skopeo_pull"] = skopeo(
                "--dest-oci-accept-uncompressed-layers", "--src-tls-verify=false",
                f"docker://{address}/bench/corral:1", f"oci:{oci}:big", digestfile=digestfile)
            shutil.rmtree(oci)

        in_order(corral_push, skopeo_push)
        in_order(corral_pull, skopeo_pull)
    for op in ("push", "pull"):
        same_work(op, reports[op]["digest"], reports[f"skopeo_{op}"]["digest"])
        times[f"corral_{op}_in"] = float(str(reports[op]["seconds"]))
    return times, reports["push"]


def moved(source: Path, pushed: dict[str, object]) -> str:
    """What each side moves: skopeo the image's blobs; corral the same plus its referrers."""
    layout = source / ".corral" / "images" / "blobs" / "sha256"
    digest = str(pushed["digest"])
    manifest = json.loads((layout / digest.removeprefix("sha256:")).read_bytes())
    blobs = [manifest["config"], *manifest["layers"]]
    image = sum(int(b["size"]) for b in blobs)
    types = sorted({str(b["mediaType"]).rpartition(".")[2] for b in manifest["layers"]})
    extra = int(str(pushed["bytes_sent"])) - image
    referrers = pushed["referrers"]
    count = len(referrers) if isinstance(referrers, list) else 0
    return (f"moved per push or pull: both sides the manifest {digest[:19]}, its config and "
            f"{len(manifest['layers'])} layer(s) ({', '.join(types)}), {image / 1e6:.1f} MB; "
            f"corral also\n{count} referrer(s) (the SBOM, and signatures if any): "
            f"{extra / 1e3:.0f} kB more")


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
            times, pushed = measure(source, Path(tmp), corral_first=number % 2 == 0)
            rounds.append(times)
    median = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
    size = sum(p.stat().st_size for p in (source / "data").iterdir()) / 1e6
    print(f"\nimage: {size:.0f} MB of random files in one layer; {args.rounds} rounds, median")
    print(moved(source, pushed) + "\n")
    print(f"{'operation':10} {'corral s':>9} {'in-proc s':>9} {'skopeo s':>9} {'ratio':>7}   "
          "all rounds (corral | skopeo)")
    ratios = {}
    for op in ("push", "pull"):
        ours, theirs = median[f"corral_{op}"], median[f"skopeo_{op}"]
        ratios[op] = theirs / ours
        detail = (" ".join(f"{r[f'corral_{op}']:.2f}" for r in rounds) + " | "
                  + " ".join(f"{r[f'skopeo_{op}']:.2f}" for r in rounds))
        print(f"{op:10} {ours:9.2f} {median[f'corral_{op}_in']:9.2f} {theirs:9.2f} "
              f"{ratios[op]:7.2f}   {detail}")
    print("\nratio = skopeo s / corral s (wall time of each command); above 1.0 means corral "
          "was faster.\nin-proc = corral's own report of the transfer (`seconds` in --json), "
          "without\nPython's start-up and imports: corral s - in-proc s is the start-up share.\n")
    print(f"RESULT corral_push_s={median['corral_push']:.2f} "
          f"corral_push_inproc_s={median['corral_push_in']:.2f} "
          f"skopeo_push_s={median['skopeo_push']:.2f} push_ratio={ratios['push']:.2f} "
          f"corral_pull_s={median['corral_pull']:.2f} "
          f"corral_pull_inproc_s={median['corral_pull_in']:.2f} "
          f"skopeo_pull_s={median['skopeo_pull']:.2f} pull_ratio={ratios['pull']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
