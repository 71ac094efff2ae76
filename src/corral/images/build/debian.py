"""Debian base layers made by debootstrap, packed once per machine and cached.

The cache key is (suite, sorted packages, mirror, variant, architecture): a second build with
the same key runs no debootstrap and reuses the same layer bytes, hence the same digest.
It makes base layers; it never touches an image layout.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from corral.errors import ImageError
from corral.images.build.layer import Compression, Layer, entries_of_root, pack
from corral.images.oci.layout import canonical_json
from corral.images.roots.unpack import remove_tree

VARIANT = "minbase"
# Files debootstrap copies from the build host: they describe the host, not the image.
_HOST_FILES = ("etc/hostname", "etc/resolv.conf", "var/log/bootstrap.log")


def host_architecture() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
        machine, machine)


@dataclass(frozen=True)
class DebianBase:
    suite: str
    packages: tuple[str, ...]
    mirror: str
    variant: str = VARIANT
    arch: str = ""
    compression: Compression = "none"

    @property
    def key(self) -> str:
        fields = {**asdict(self), "packages": sorted(set(self.packages)),
                  "arch": self.arch or host_architecture()}
        return hashlib.sha256(canonical_json(fields)).hexdigest()

    def describe(self) -> str:
        return f"debootstrap {self.suite} ({', '.join(self.packages) or self.variant})"


def debian_layer(base: DebianBase, cache_dir: Path,
                 progress: Callable[[str], None]) -> tuple[Layer, Path]:
    """The packed base layer and its blob file in the machine cache, made when missing.
    The blob is read-only and verified: its digest is checked whenever its stat signature
    (size, mtime, inode) is not the one recorded when it was last checked, and a blob
    that fails the check is made again."""
    folder = cache_dir / "bases" / base.key
    meta = folder / "layer.json"
    blob = folder / ("layer.tar" if base.compression == "none" else "layer.tar.gz")
    if meta.is_file() and blob.is_file():
        layer = Layer(**json.loads(meta.read_text()))
        if _still_verified(blob, layer, folder / "layer.stat"):
            progress(f"{base.describe()}: cached")
            return layer, blob
        progress(f"{base.describe()}: the cached layer does not match its digest; "
                 "making it again")
        meta.unlink()
    _check_can_bootstrap()
    folder.mkdir(parents=True, exist_ok=True)
    progress(f"{base.describe()}: first build, ~40 s")
    work = Path(tempfile.mkdtemp(dir=folder, prefix=".debootstrap-"))
    try:
        root = work / "root"
        _bootstrap(base, root)
        for name in _HOST_FILES:
            (root / name).unlink(missing_ok=True)
        progress(f"{base.describe()}: packing the root into a layer")
        # mtime 0, not SOURCE_DATE_EPOCH: the base is shared machine-wide by every project
        # and commit, so its bytes must not depend on whichever commit built it first.
        layer, tmp = pack(entries_of_root(root), folder, mtime=0, compression=base.compression)
        os.chmod(tmp, 0o444)  # shared by hardlinks with every project's layout
        os.rename(tmp, blob)
        _record_signature(blob, folder / "layer.stat")
        partial = folder / f".layer.json-{os.getpid()}"
        partial.write_text(json.dumps(asdict(layer)))
        os.rename(partial, meta)  # last: a reader sees either nothing or a complete base
    finally:
        remove_tree(work)
    return layer, blob


def _signature(path: Path) -> list[int]:
    info = path.stat()
    return [info.st_size, info.st_mtime_ns, info.st_ino]


def _record_signature(blob: Path, record: Path) -> None:
    partial = record.with_name(f".{record.name}-{os.getpid()}")
    partial.write_text(json.dumps(_signature(blob)))
    os.rename(partial, record)


def _still_verified(blob: Path, layer: Layer, record: Path) -> bool:
    """True when `blob` is `layer`: by its stat signature (a write in place changes its
    mtime), else by hashing it, which records the signature again."""
    try:
        if json.loads(record.read_text()) == _signature(blob):
            return True
    except (OSError, ValueError):
        pass
    digest = hashlib.sha256()
    with blob.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    if "sha256:" + digest.hexdigest() != layer.digest:
        return False
    os.chmod(blob, 0o444)
    _record_signature(blob, record)
    return True


def debootstrap_program() -> str | None:
    found = shutil.which("debootstrap")
    return found or ("/usr/sbin/debootstrap" if Path("/usr/sbin/debootstrap").exists() else None)


def _check_can_bootstrap() -> None:
    if debootstrap_program() is None:
        raise ImageError("debian bases need debootstrap, which is not installed",
                         hint="apt-get install debootstrap")
    if os.geteuid() != 0:
        raise ImageError("debootstrap needs root to build a debian base",
                         hint="run the first build as root (the base is then cached), or use a "
                         '"layout:PATH:TAG" base')


def _bootstrap(base: DebianBase, root: Path) -> None:
    argv = [debootstrap_program() or "debootstrap", f"--variant={base.variant}"]
    if base.arch:
        argv.append(f"--arch={base.arch}")
    if base.packages:
        argv.append("--include=" + ",".join(sorted(set(base.packages))))
    argv += [base.suite, str(root), base.mirror]
    env = {**os.environ, "PATH": os.environ.get("PATH", "") + ":/usr/sbin:/sbin"}
    done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                          check=False)
    if done.returncode != 0:
        tail = "\n".join(done.stdout.decode(errors="replace").splitlines()[-8:])
        raise ImageError(
            f"debootstrap {base.suite} failed (exit {done.returncode}):\n{tail}",
            hint=f"check the suite name, the package names and that {base.mirror} is reachable")
