"""`make bench-dockerfile`: a two-stage Dockerfile built by corral and by `buildah bud`.

Both build the same context and the same Dockerfile (ARG REGISTRY, then two stages FROM
`$REGISTRY/library/python:3.11-slim`: a builder stage that byte-compiles a small app and
archives it, a final stage that copies the archive and unpacks it) against the same base,
served by Debian's docker-registry on loopback and filled by corral (a Debian root with
python3, built from the machine's debootstrap cache, pushed under the name people use).
Measured, each tool on its own, taking turns going first, each timed build starting on a
quiet disk (dirty pages of the previous builds written out first, `sync`, so neither tool
pays for the other's writes), medians over the rounds (3 by default):

- cold: a fresh project folder / fresh buildah storage, base pulled, no step cached; corral
  keeps its machine-wide cache (~/.cache/corral: debootstrap bases, SBOM scans of layers it
  has seen), and is also measured with an empty one ("cold, empty machine cache");
- cached: the same build again with nothing changed (buildah with --layers, its step cache),
  three times per round. corral answers from its record of the last build when nothing it
  depends on changed (engine/images/fresh.py); the first of the three after a cold build
  still goes through the step cache, since the cold build wrote corral.lock (its base pin)
  while it ran. Every sample is printed;
- cached through the step cache (corral only): three more builds, each after adding a
  comment to corral.toml (no digest changes), so the record no longer matches and every step
  is looked up in the step cache, as the cached build did before the record existed;
- reproducible: the image digest of two cold builds (corral: manifest digest; buildah: the
  digest it pushes, which holds its config and its timestamps).

Ends with `RESULT cold_ratio=… cached_ratio=… … stepcache_ratio=… corral_same_digest=…
buildah_same_digest=…` (ratios are corral seconds / buildah seconds: goal ≤ 1.0 cold,
≤ 0.5 cached; stepcache_ratio has no goal, it shows what the record saves). Skips with a
clear message when buildah or docker-registry is absent. Every registry started is stopped
by pid; every folder made is removed.
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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHED_REPEATS = 3  # cached builds per round and tool (each under a second)
CORRAL = ROOT / ".venv" / "bin" / "corral"

BASES_SPEC = """[project]
name = "bench-bases"

[images.python]
base = "debian:bookworm"
packages = ["python3"]
env = { PYTHON_VERSION = "3.11", LANG = "C.UTF-8" }
"""

APP_SPEC = """[project]
name = "bench-stages"

[images.app]
dockerfile = "Dockerfile"
build_args = {{ REGISTRY = "{registry}" }}
"""

DOCKERFILE = """ARG REGISTRY
FROM ${REGISTRY}/library/python:3.11-slim AS build
WORKDIR /src
COPY app/ /src/app/
RUN python3 -m compileall -q /src/app && tar --sort=name --mtime=@0 -cf /src/app.tar app

FROM ${REGISTRY}/library/python:3.11-slim
COPY --from=build /src/app.tar /srv/app.tar
RUN tar -xf /srv/app.tar -C /srv && rm /srv/app.tar
ENV PYTHONPATH=/srv
CMD ["python3", "-m", "app.main"]
"""


def say(message: str) -> None:
    print(f"· {message}", file=sys.stderr, flush=True)


def run(*args: str | Path, cwd: Path | None = None,
        env: dict[str, str] | None = None) -> tuple[float, str]:
    """Run a command to completion; (wall seconds, stdout). A failure ends the bench.
    The disk is synced first: a build writes some 260 MB of files, and the kernel flushing
    what an earlier build left dirty must not land in the next one's time."""
    os.sync()
    started = time.perf_counter()
    done = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True,
                          timeout=1800, env={**os.environ, **(env or {})})
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, args))} failed:\n{done.stdout}\n{done.stderr}")
    return elapsed, done.stdout


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def registry(folder: Path) -> Iterator[str]:
    address = f"127.0.0.1:{free_port()}"
    (folder / "config.yml").write_text(
        "version: 0.1\nlog:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {folder / 'storage'}\n"
        f"http:\n  addr: {address}\n")
    with (folder / "registry.log").open("wb") as log:
        process = subprocess.Popen(["docker-registry", "serve", str(folder / "config.yml")],
                                   stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while not _answers(address):
            if time.monotonic() > deadline:
                raise SystemExit("docker-registry did not answer in 30 s")
            time.sleep(0.05)
        yield address
    finally:
        process.terminate()
        process.wait(timeout=10)


def _answers(address: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{address}/v2/", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def fill_registry(work: Path, address: str) -> None:
    """library/python:3.11-slim: a Debian root with python3, built and pushed by corral."""
    bases = work / "bases"
    bases.mkdir()
    (bases / "corral.toml").write_text(BASES_SPEC)
    say("building the python base (debootstrap once per machine) and pushing it")
    run(CORRAL, "build", "python", cwd=bases)
    run(CORRAL, "push", f"{address}/library/python:3.11-slim", "--image", "python", cwd=bases)


def context(folder: Path, address: str) -> Path:
    (folder / "app").mkdir(parents=True)
    (folder / "app" / "__init__.py").write_text("")
    (folder / "app" / "main.py").write_text("print('hello from a two-stage build')\n")
    for number in range(40):  # a little code to byte-compile
        (folder / "app" / f"module_{number:02d}.py").write_text(
            "".join(f"def f{i}(x):\n    return x * {i}\n" for i in range(200)))
    (folder / "Dockerfile").write_text(DOCKERFILE)
    (folder / "corral.toml").write_text(APP_SPEC.format(registry=address))
    return folder


def corral_build(folder: Path, cache: Path | None = None) -> tuple[float, str]:
    """One `corral build`; `cache` replaces the machine-wide cache (~/.cache/corral)."""
    seconds, out = run(CORRAL, "build", "app", "--json", cwd=folder,
                       env={"CORRAL_CACHE": str(cache)} if cache else None)
    return seconds, str(json.loads(out)["images"]["app"])


def buildah_build(folder: Path, storage: Path, address: str) -> tuple[float, str]:
    """One `buildah bud --layers` into `storage`; (seconds, the digest a push gives)."""
    seconds, _ = run(*buildah(storage), "bud", "--layers", "--tls-verify=false", "--build-arg",
                     f"REGISTRY={address}", "-t", "bench-app", "-f", "Dockerfile", ".",
                     cwd=folder)
    target = storage / "pushed"
    shutil.rmtree(target, ignore_errors=True)
    digest_file = storage / "digest"
    run(*buildah(storage), "push", "--digestfile", str(digest_file), "bench-app", f"oci:{target}")
    return seconds, digest_file.read_text().strip()


def one_build(tool: str, folder: Path, state: Path, address: str) -> tuple[float, str]:
    if tool == "corral":
        return corral_build(folder)
    return buildah_build(folder, state, address)


def buildah(storage: Path) -> list[str]:
    return ["buildah", "--root", str(storage / "root"), "--runroot", str(storage / "run")]


def forget_buildah(storage: Path) -> None:
    """Unmount and delete what buildah keeps in `storage` (its overlay mounts would keep the
    folder from being removed)."""
    subprocess.run([*buildah(storage), "rm", "--all"], capture_output=True, check=False)
    subprocess.run([*buildah(storage), "rmi", "--all", "--force"], capture_output=True,
                   check=False)


def measure(work: Path, address: str, rounds: int) -> dict[str, list[float] | list[str]]:
    results: dict[str, list] = {k: [] for k in ("corral_cold", "corral_cached", "buildah_cold",
                                                 "buildah_cached", "corral_digest",
                                                 "buildah_digest", "corral_cold_empty",
                                                 "corral_stepcache")}
    for number in range(rounds):
        order = ("corral", "buildah") if number % 2 == 0 else ("buildah", "corral")
        for tool in order:
            folder = context(work / f"{tool}-{number}", address)
            state = work / f"{tool}-{number}-state"
            try:
                say(f"round {number + 1}/{rounds}: {tool} cold")
                cold, digest = one_build(tool, folder, state, address)
                say(f"round {number + 1}/{rounds}: {tool} cached, {CACHED_REPEATS} times")
                for _ in range(CACHED_REPEATS):  # short: several samples against noise
                    cached, again = one_build(tool, folder, state, address)
                    results[f"{tool}_cached"].append(cached)
                    if again != digest and tool == "corral":
                        raise SystemExit(f"corral's cached build changed the digest: {digest} "
                                         f"{again}")
                if tool == "corral":
                    say(f"round {number + 1}/{rounds}: corral through the step cache, "
                        f"{CACHED_REPEATS} times")
                    for repeat in range(CACHED_REPEATS):
                        with (folder / "corral.toml").open("a") as spec:  # no record matches
                            spec.write(f"# step-cache build {repeat}\n")
                        cached, again = one_build(tool, folder, state, address)
                        results["corral_stepcache"].append(cached)
                        if again != digest:
                            raise SystemExit(f"corral's step-cache build changed the digest: "
                                             f"{digest} {again}")
            finally:
                if tool == "buildah":
                    forget_buildah(state)
                shutil.rmtree(folder, ignore_errors=True)
                shutil.rmtree(state, ignore_errors=True)
            results[f"{tool}_cold"].append(cold)
            results[f"{tool}_digest"].append(digest)
            if tool == "corral":  # once more with an empty machine-wide cache too
                say(f"round {number + 1}/{rounds}: corral cold, empty machine cache")
                folder = context(work / f"empty-{number}", address)
                seconds, digest = corral_build(folder, work / f"empty-{number}-cache")
                results["corral_cold_empty"].append(seconds)
                results["corral_digest"].append(digest)
                shutil.rmtree(folder, ignore_errors=True)
                shutil.rmtree(work / f"empty-{number}-cache", ignore_errors=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="cold+cached pairs per tool")
    options = parser.parse_args()
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)  # as installed: bytecode is cached
    for tool in ("buildah", "docker-registry"):
        if shutil.which(tool) is None:
            print(f"bench-dockerfile skipped: {tool} is not installed "
                  f"(apt-get install {'buildah' if tool == 'buildah' else 'docker-registry'})")
            print("RESULT skipped=1")
            return
    with tempfile.TemporaryDirectory(prefix="corral-bench-stages-",
                                     ignore_cleanup_errors=True) as tmp:
        work = Path(tmp)
        (work / "registry").mkdir()
        with registry(work / "registry") as address:
            fill_registry(work, address)
            results = measure(work, address, max(2, options.rounds))
    report(results)


def report(results: dict[str, list]) -> None:  # type: ignore[type-arg]
    median = {k: statistics.median(v) for k, v in results.items()
              if k.endswith(("cold", "cached", "empty", "stepcache"))}
    print(f"{'two-stage Dockerfile':<24}{'corral s':>10}{'buildah s':>11}{'ratio':>8}")
    for kind in ("cold", "cached"):
        ratio = median[f"corral_{kind}"] / median[f"buildah_{kind}"]
        print(f"{kind:<24}{median[f'corral_{kind}']:>10.2f}{median[f'buildah_{kind}']:>11.2f}"
              f"{ratio:>8.2f}")
    steps = median["corral_stepcache"]
    print(f"{'cached, via step cache':<24}{steps:>10.2f}{median['buildah_cached']:>11.2f}"
          f"{steps / median['buildah_cached']:>8.2f}")
    empty = median["corral_cold_empty"]
    print(f"{'cold, empty machine cache':<24}{empty:>10.2f}{median['buildah_cold']:>11.2f}"
          f"{empty / median['buildah_cold']:>8.2f}")
    for key in ("corral_cold", "buildah_cold", "corral_cold_empty", "corral_cached",
                "corral_stepcache", "buildah_cached"):
        print(f"  {key} rounds: {' '.join(f'{v:.2f}' for v in results[key])}")
    same_corral = int(len(set(results["corral_digest"])) == 1)
    same_buildah = int(len(set(results["buildah_digest"])) == 1)
    print(f"{'digest across clean builds':<24}{'same' if same_corral else 'differs':>10}"
          f"{'same' if same_buildah else 'differs':>11}")
    cold = median["corral_cold"] / median["buildah_cold"]
    cached = median["corral_cached"] / median["buildah_cached"]
    print(f"RESULT cold_ratio={cold:.2f} cached_ratio={cached:.2f} "
          f"cold_empty_cache_ratio={empty / median['buildah_cold']:.2f} "
          f"corral_cold_s={median['corral_cold']:.2f} buildah_cold_s={median['buildah_cold']:.2f} "
          f"corral_cached_s={median['corral_cached']:.2f} "
          f"buildah_cached_s={median['buildah_cached']:.2f} "
          f"stepcache_ratio={steps / median['buildah_cached']:.2f} "
          f"corral_stepcache_s={steps:.2f} "
          f"corral_same_digest={same_corral} buildah_same_digest={same_buildah}")


if __name__ == "__main__":
    main()
