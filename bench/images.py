"""`make bench-images`: corral's image builder against buildah on the demo image.

In one run, on the same debootstrap base (imported into buildah as a local image, since no
registry is reachable): fully cached rebuild (corral CLI, corral builder in-process, buildah
bud --layers), cold build (empty layout/step cache vs --no-cache), packing a ~500 MB tree
(corral's plain-tar packer, the default, vs `tar -c | sha256sum`; its gzip packer vs
`tar -c | gzip -6 | sha256sum`), the new-
release root (per-layer cache + hardlinks vs a full unpack), and --check-reproducible.
Everything goes in a temporary folder, removed at the end; buildah uses its own storage root.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORRAL = ROOT / ".venv" / "bin" / "corral"
sys.path.insert(0, str(ROOT / "src"))

from corral.images.build.layer import Compression, entries_of_root, pack  # noqa: E402
from corral.images.fresh import default_cache_dir  # noqa: E402
from corral.images.roots.compose import compose_root  # noqa: E402
from corral.images.roots.unpack import remove_tree, unpack_image  # noqa: E402
from corral.images.store import LocalImageStore  # noqa: E402
from corral.spec.load import load_spec  # noqa: E402

DOCKERFILE = """FROM localhost/corral-bench-base
COPY app/ /app
ENV APP_VERSION=1
WORKDIR /app
ENTRYPOINT ["python3", "/app/server.py"]
"""


def timed(action: Callable[[], object], runs: int = 1) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def run(*argv: str | Path, cwd: Path | None = None, shell: bool = False) -> str:
    done = subprocess.run([str(a) for a in argv] if not shell else str(argv[0]), cwd=cwd,
                          shell=shell, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{argv} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return done.stdout


class Buildah:
    def __init__(self, work: Path) -> None:
        self.argv = ["buildah", "--root", str(work / "root"), "--runroot", str(work / "run"),
                     "--storage-driver", "overlay"]

    def __call__(self, *args: str | Path, cwd: Path | None = None) -> str:
        return run(*self.argv, *args, cwd=cwd)

    def import_base(self, blob: Path) -> None:
        container = self("from", "scratch").strip()
        self("add", container, blob, "/")
        self("commit", "-q", container, "corral-bench-base")
        self("rm", container)

    def bud(self, project: Path, *extra: str) -> None:
        self("bud", "--pull-never", "--layers", "-q", *extra, "-t", "demo", "-f",
             "Dockerfile", ".", cwd=project)


def corral_section(project: Path, rows: list[tuple[str, str, str]]) -> dict[str, float]:
    run(CORRAL, "init", "--port", "18999", cwd=project)
    run(CORRAL, "build", cwd=project)  # warms the machine-wide debootstrap cache
    cli = timed(lambda: run(CORRAL, "build", cwd=project), runs=5)
    loaded = load_spec(project / "corral.toml")
    store = LocalImageStore(project / ".corral")
    image = loaded.spec.images["web"]
    inproc = timed(lambda: store.build("web", image, project), runs=5)
    rows.append(("cached rebuild, corral CLI (wall, incl. Python start)", f"{cli:.3f} s", ""))
    rows.append(("cached rebuild, corral builder in-process", f"{inproc:.4f} s", ""))

    def cold(with_base_sbom: bool) -> None:
        """Empty layout and step cache; the debootstrap base stays (as buildah's base image
        does), with its SBOM scan (keyed by the base layer) or without."""
        with tempfile.TemporaryDirectory(dir=project.parent) as tmp:
            cache = Path(tmp) / "machine"
            kept = ("bases", "sbom") if with_base_sbom else ("bases",)
            for folder in kept:
                shutil.copytree(default_cache_dir() / folder, cache / folder,
                                copy_function=os.link)
            LocalImageStore(Path(tmp) / "state", cache).build("web", image, project)

    cold_s = timed(lambda: cold(True), runs=3)
    cold_scan = timed(lambda: cold(False))
    rows.append(("cold build, corral (base and its SBOM scan cached)", f"{cold_s:.2f} s", ""))
    rows.append(("cold build, corral (base cached, base SBOM scanned)", f"{cold_scan:.2f} s",
                 "the scan runs once per base layer per machine"))
    repro = subprocess.run([str(CORRAL), "build", "--check-reproducible"], cwd=project,
                           capture_output=True, text=True, check=False)
    rows.append(("corral build --check-reproducible", "yes" if repro.returncode == 0 else
                 "NO: " + repro.stdout.strip()[-200:], ""))
    return {"cli": cli, "inproc": inproc, "cold": cold_s, "cold_scan": cold_scan,
            "repro": float(repro.returncode == 0)}


def buildah_section(project: Path, work: Path, blob: Path,
                    rows: list[tuple[str, str, str]]) -> dict[str, float]:
    if shutil.which("buildah") is None:
        raise SystemExit("buildah is not installed: apt-get install -y buildah")
    buildah = Buildah(work)
    buildah.import_base(blob)
    (project / "Dockerfile").write_text(DOCKERFILE)
    buildah.bud(project)
    cached = timed(lambda: buildah.bud(project), runs=5)
    cold = timed(lambda: buildah.bud(project, "--no-cache"), runs=3)
    rows.append(("cached rebuild, buildah bud --layers (overlay)", f"{cached:.3f} s", ""))
    rows.append(("cold build, buildah bud --no-cache (base local)", f"{cold:.2f} s", ""))
    return {"cached": cached, "cold": cold}


def pack_section(work: Path, blob: Path, megabytes: int,
                 rows: list[tuple[str, str, str]]) -> tuple[float, float]:
    """(plain-tar pack ratio vs tar|sha256sum, gzip pack ratio vs tar|gzip -6|sha256sum)."""
    one = unpack_image([blob], work / "root")
    size = sum(p.lstat().st_size for p in one.rglob("*") if p.is_file() and not p.is_symlink())
    tree = work / "tree"
    tree.mkdir()
    copies = max(1, round(megabytes * 1e6 / size))
    for number in range(copies):
        run("cp", "-a", one, tree / f"copy{number}")
    total = size * copies
    plain = timed(lambda: run(f"tar -C {tree} -c . | sha256sum", shell=True), runs=3)
    zipped = timed(lambda: run(f"tar -C {tree} -c . | gzip -6 | sha256sum", shell=True))

    def corral_pack(compression: Compression) -> None:
        _, tmp = pack(entries_of_root(tree), work, compression=compression)
        tmp.unlink()

    ours = timed(lambda: corral_pack("none"), runs=3)
    ours_gzip = timed(lambda: corral_pack("gzip"))
    rows.append((f"pack {total / 1e6:.0f} MB: tar -c | sha256sum",
                 f"{total / plain / 1e6:.0f} MB/s", ""))
    rows.append(("pack: corral, plain tar layer (default)", f"{total / ours / 1e6:.0f} MB/s",
                 f"{plain / ours:.2f} of tar|sha256sum"))
    rows.append(("pack: tar -c | gzip -6 | sha256sum", f"{total / zipped / 1e6:.0f} MB/s", ""))
    rows.append(('pack: corral, compression = "gzip" (sha256 x2)',
                 f"{total / ours_gzip / 1e6:.0f} MB/s", f"{zipped / ours_gzip:.2f} of tar|gzip"))
    remove_tree(tree)
    return plain / ours, zipped / ours_gzip


def roots_section(work: Path, blob: Path, rows: list[tuple[str, str, str]]) -> None:
    meta = json.loads((blob.parent / "layer.json").read_text())
    full = timed(lambda: unpack_image([blob], work / f"full-{time.monotonic_ns()}"), runs=2)
    compose_root([(blob, meta["diff_id"])], work / "layers", work / "first")
    linked = timed(lambda: compose_root([(blob, meta["diff_id"])], work / "layers",
                                        work / f"r-{time.monotonic_ns()}"), runs=3)
    rows.append(("new release root: full unpack (before)", f"{full:.2f} s", ""))
    rows.append(("new release root: layer cache + hardlinks (now)", f"{linked:.2f} s",
                 f"{full / linked:.0f}x faster"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pack-mb", type=int, default=500)
    args = parser.parse_args()
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)  # as installed: bytecode is cached
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="corral-bench-images-") as tmp:
        work = Path(tmp)
        project = work / "demo"
        project.mkdir()
        ours = corral_section(project, rows)
        blob = next((default_cache_dir() / "bases").glob("*/layer.tar*"))
        peer = buildah_section(project, work / "buildah", blob, rows)
        roots_section(work, blob, rows)
        pack_ratio, gzip_ratio = pack_section(work, blob, args.pack_mb, rows)
        with contextlib.suppress(SystemExit):
            Buildah(work / "buildah")("rmi", "-a", "-f")
    width = max(len(r[0]) for r in rows)
    print(f"\n{'measure':{width}}  {'value':>12}  note")
    for name, value, note in rows:
        print(f"{name:{width}}  {value:>12}  {note}")
    print(f"RESULT cached_rebuild_s={ours['cli']:.3f} builder_cached_s={ours['inproc']:.4f} "
          f"buildah_cached_s={peer['cached']:.3f} cold_ratio={peer['cold'] / ours['cold']:.2f} "
          f"cold_ratio_with_base_scan={peer['cold'] / ours['cold_scan']:.2f} "
          f"pack_ratio={pack_ratio:.2f} gzip_pack_ratio={gzip_ratio:.2f} "
          f"reproducible={'yes' if ours['repro'] else 'no'}")


if __name__ == "__main__":
    main()
