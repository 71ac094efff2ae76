"""One build of a plan and the earlier stages it needs: each stage built once, on demand.

A stage is built only when the target reaches it (as its base, or through COPY --from), and
each of its steps goes through the builder's step cache. COPY --from is keyed by the source
stage's layer chain, so a cached build never unpacks a source root; when a layer must be
made, the source is unpacked once per build into a scratch folder removed at the end.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import hashlib
import os
import posixpath
import re
import shutil
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from corral.errors import ImageError
from corral.images.build.bases import Base, next_chain, resolve_base
from corral.images.build.config import image_config
from corral.images.build.context import StatIndex, copy_entries, inputs_digest, owner_of
from corral.images.build.dockerignore import IgnoreRules
from corral.images.build.layer import (
    COMPRESSION_LEVEL,
    Compression,
    Entry,
    Layer,
    pack,
    source_date_epoch,
)
from corral.images.build.passwd import resolve_chown
from corral.images.build.plan import (
    BindMount,
    BuildPlan,
    PlanCopyFrom,
    PlanFetch,
    PlanFile,
    PlanRun,
    PlanStep,
    PlanUnpack,
)
from corral.images.build.run import Sandbox
from corral.images.oci.layout import Layout, canonical_json
from corral.images.roots.unpack import remove_tree, safe_link, safe_name, unpack_image
from corral.spec.model import CopyStep, ImageSpec

Progress = Callable[[str], None]


@dataclass(frozen=True)
class BoundFiles:
    """What a RUN --mount=type=bind mounts: a hash of its files (for the step's key) and,
    made only when the step runs, a host path holding them."""

    target: str
    inputs: str
    writable: bool
    make: Callable[[], Path]


class StepLayers(Protocol):
    """What a stage build needs from the builder: its layout, folders and step layers."""

    layout: Layout
    steps: Path
    cache_dir: Path

    def copy_layer(self, step: CopyStep, chain: str, context: Path, index: StatIndex,
                   compression: Compression, progress: Progress,
                   ignore: IgnoreRules | None = None) -> Layer: ...

    def run_layer(self, run: PlanRun, base_config: dict[str, Any], layers: list[Layer],
                  chain: str, sandbox: list[Sandbox], cleanup: contextlib.ExitStack,
                  compression: Compression, progress: Progress,
                  lower: int | None = None,
                  mounted: Callable[[], list[BoundFiles]] = list) -> Layer: ...

    def note_copy(self, step: CopyStep, context: Path) -> None: ...

    def note_volatile(self, why: str) -> None: ...

    def cached_layer(self, key: str) -> Layer | None: ...

    def remember(self, key: str, layer: Layer) -> None: ...

    def note_origin(self, base: Base) -> None: ...


@dataclass(frozen=True)
class BuildOptions:
    """How registry bases are treated in one build (`corral build` flags)."""

    update_bases: bool = False  # re-resolve tags and move their corral.lock pins
    insecure: bool = False  # plain http to a registry off loopback


DEFAULT_OPTIONS = BuildOptions()


def step_key(chain: str, step: object, inputs: str, compression: Compression) -> str:
    # The mtime and the compression change the layer bytes, so they are part of the key.
    material = {"parent": chain, "step": step, "inputs": inputs, "mtime": source_date_epoch(),
                "compression": compression if compression == "none" else
                f"{compression}-{COMPRESSION_LEVEL}"}
    return hashlib.sha256(canonical_json(material)).hexdigest()


_MAX_LINKS = 40


@dataclass(frozen=True)
class Built:
    """A built stage: its layers, their chain and its runtime config (a later stage's base)."""

    layers: tuple[Layer, ...]
    chain: str
    config: dict[str, Any]


class StageRun:
    """The stages of one build, with what they share: the stat index, the scratch folder,
    unpacked source roots and resolved bases."""

    def __init__(self, builder: StepLayers, context: Path, compression: Compression,
                 progress: Progress, options: BuildOptions, plan: BuildPlan,
                 cleanup: contextlib.ExitStack, bases: dict[str, Base] | None = None) -> None:
        self.builder, self.context, self.compression = builder, context, compression
        self.progress, self.options, self.cleanup = progress, options, cleanup
        self.stages = plan.stages
        self.index = StatIndex(builder.steps / "stat-index.json")
        cleanup.callback(self.index.save)
        self.scratch = builder.steps.parent / "work" / f"stages-{os.getpid()}-{id(self):x}"
        cleanup.callback(remove_tree, self.scratch)
        self.built: dict[str, Built] = {}
        self.roots: dict[str, Path] = {}
        self.bases = {} if bases is None else bases  # registry/layout bases resolved so far

    def stage(self, plan: BuildPlan) -> tuple[Built, dict[str, Any]]:
        """Build one stage's steps over its base; (the result, its base's config)."""
        base = self._base(plan.base, lambda: plan.base_spec)
        layers, chain = list(base.layers), base.chain
        sandbox: list[Sandbox] = []  # made by the first uncached run step, then kept
        for number, step in enumerate(plan.steps):
            try:
                layer = self._layer(self._owned(step, layers), base, layers, chain,
                                    sandbox, plan)
            except ImageError as exc:  # named at the line that wrote the step, if known
                where = plan.sites[number] if number < len(plan.sites) else ""
                if not where:
                    raise
                raise type(exc)(f"{where}: {exc.message}", hint=exc.hint) from None
            layers.append(layer)
            chain = next_chain(chain, layer)
        if sandbox:  # it holds the stage's whole root: a COPY --from reads it, unpacks nothing
            self.roots[chain] = sandbox[0].root
        return Built(tuple(layers), chain, {}), base.config

    def _layer(self, step: PlanStep, base: Base, layers: list[Layer], chain: str,
               sandbox: list[Sandbox], plan: BuildPlan) -> Layer:
        if isinstance(step, PlanRun):
            # The base alone is the sandbox's read-only root: stages on one base share it.
            return self.builder.run_layer(step, base.config, layers, chain, sandbox,
                                          self.cleanup, self.compression, self.progress,
                                          lower=len(base.layers),
                                          mounted=lambda: self._bound(step, plan))
        if isinstance(step, PlanCopyFrom):
            layer = self._copy_from_layer(step, chain)
        elif isinstance(step, PlanFile):
            layer = self._file_layer(step, chain)
        elif isinstance(step, PlanUnpack):
            layer = self._unpack_layer(step, chain)
        elif isinstance(step, PlanFetch):
            layer = self._fetch_layer(step, chain)
        else:
            layer = self.builder.copy_layer(step, chain, self.context, self.index,
                                             self.compression, self.progress, plan.ignore)
        if sandbox:
            sandbox[0].apply(self.builder.layout.blob_path(layer.digest))
        return layer

    def _bound(self, run: PlanRun, plan: BuildPlan) -> list[BoundFiles]:
        return [self._context_files(m, plan) if m.origin is None else self._root_files(m)
                for m in run.binds]

    def _context_files(self, mount: BindMount, plan: BuildPlan) -> BoundFiles:
        """Files of the build context, .dockerignore applied as for COPY; linked (read-only)
        or copied (writable) into the scratch folder when the step runs."""
        whole = mount.source in ("", ".")
        step = CopyStep(src=mount.source, dest="/",
                        exclude=(".corral", ".git") if whole else ())
        entries = copy_entries(step, self.context, plan.ignore)
        self.builder.note_copy(step, self.context)
        inputs = inputs_digest(entries, self.index)
        is_dir = (self.context / mount.source).is_dir()

        def make() -> Path:
            folder = self.scratch / f"bind-{inputs[:20]}-{'rw' if mount.writable else 'ro'}"
            if not folder.exists():
                _materialize(entries, folder, link=not mount.writable)
            return folder if is_dir else folder / entries[0].name.lstrip("/")

        return BoundFiles(mount.target, inputs, mount.writable, make)

    def _root_files(self, mount: BindMount) -> BoundFiles:
        """A path of an earlier stage or an image (`from=`), keyed by its layers."""
        assert mount.origin is not None
        built = self.source(mount.origin)
        inputs = hashlib.sha256(f"{built.chain}\n{mount.source}".encode()).hexdigest()

        def make() -> Path:
            path = self._root(built) / mount.source.lstrip("/")
            if not path.exists() and not path.is_symlink():
                raise ImageError(f"--mount=type=bind,from={self.label(mount.origin or '')}: "
                                 f"{mount.source} does not exist there")
            if not mount.writable:
                return path
            copy = self.scratch / f"bind-{inputs[:20]}-rw" / (path.name or "root")
            if not copy.exists():
                _copy_tree(path, copy)
            return copy

        return BoundFiles(mount.target, inputs, mount.writable, make)

    def _owned(self, step: PlanStep, layers: list[Layer]) -> PlanStep:
        """`step` with a `--chown` by name resolved to numbers from the /etc/passwd and
        /etc/group of the layers below it (the numbers are what the layer and its key hold)."""
        if isinstance(step, PlanRun | PlanUnpack) or step.owner is None or \
                re.fullmatch(r"\d+(:\d+)?", step.owner):
            return step
        blobs = [self.builder.layout.blob_path(layer.digest) for layer in layers]
        resolved = resolve_chown(step.owner, blobs)
        if isinstance(step, CopyStep):
            return step.model_copy(update={"owner": resolved})
        return dataclasses.replace(step, owner=resolved)

    def _base(self, base: str, spec: Callable[[], ImageSpec]) -> Base:
        """An earlier stage, or a base resolved once (`spec` gives its packages and mirror:
        a stage is no spec base, so it is asked for only when needed)."""
        if base.startswith("stage:"):
            built = self.source(base)
            return Base(chain=built.chain, layers=built.layers, config=built.config)
        if base in self.bases:
            return self.bases[base]
        found = resolve_base(spec(), self.context, self.builder.layout, self.builder.cache_dir,
                             self.progress, self.compression, update=self.options.update_bases,
                             insecure=self.options.insecure)
        self.builder.note_origin(found)
        if base.startswith(("oci:", "layout:")):
            self.bases[base] = found
        return found

    def source(self, name: str) -> Built:
        """An earlier stage ("stage:N") or an image (a base string), built or resolved once."""
        if name in self.built:
            return self.built[name]
        if name.startswith("stage:"):
            plan = self.stages[int(name[len("stage:"):])]
            self.progress(f"stage {plan.name}: {self.label(plan.base)}")
            built, base_config = self.stage(plan)
            config = image_config(base_config, plan.metadata, None, built.layers,
                                  stop_signal=plan.stop_signal)["config"]
            found = Built(built.layers, built.chain, config)
        else:
            base = self._base(name, lambda: ImageSpec(base=name))
            found = Built(base.layers, base.chain, base.config)
        self.built[name] = found
        return found

    def label(self, source: str) -> str:
        """How progress names a stage or image: `build` (or `0` for an unnamed stage)
        rather than `stage:0`; an image as its reference."""
        if source.startswith("stage:"):
            return self.stages[int(source[len("stage:"):])].name
        return source.removeprefix("oci:")

    def _copy_from_layer(self, step: PlanCopyFrom, chain: str) -> Layer:
        source = self.source(step.source)
        label = f"layer copy --from={self.label(step.source)} {' '.join(step.sources)} → " \
            f"{step.dest}"
        definition = {"copy_from": list(step.sources), "dest": step.dest, "mode": step.mode,
                      "owner": step.owner}
        return self._layer_once(chain, definition, source.chain, label,
                                lambda: self._entries_from(source, step))

    def _entries_from(self, source: Built, step: PlanCopyFrom) -> list[Entry]:
        root = self._root(source)
        entries: dict[str, Entry] = {}
        for path in step.sources:
            for match in paths_in_root(root, path):
                copy = CopyStep(src=match or ".", dest=step.dest, mode=step.mode,
                                owner=step.owner)
                entries.update((e.name, e) for e in copy_entries(copy, root))
        return [entries[name] for name in sorted(entries)]

    def _root(self, source: Built) -> Path:
        if source.chain not in self.roots:
            blobs = [self.builder.layout.blob_path(layer.digest) for layer in source.layers]
            self.roots[source.chain] = unpack_image(blobs, self.scratch / source.chain[:20])
        return self.roots[source.chain]

    def _file_layer(self, step: PlanFile, chain: str) -> Layer:
        content = step.content.encode()
        content_hash = hashlib.sha256(content).hexdigest()
        definition = {"file": step.dest, "content": content_hash, "mode": step.mode,
                      "owner": step.owner}

        def entries() -> list[Entry]:
            self.scratch.mkdir(parents=True, exist_ok=True)
            path = self.scratch / f"heredoc-{content_hash[:20]}"
            path.write_bytes(content)
            uid, gid = owner_of(CopyStep(src=".", dest=step.dest, owner=step.owner))
            return [Entry(step.dest.lstrip("/"), "file", step.mode or 0o644, uid, gid,
                          source=path, size=len(content))]

        return self._layer_once(chain, definition, "", f"layer file {step.dest} (heredoc)",
                                entries)

    def _unpack_layer(self, step: PlanUnpack, chain: str) -> Layer:
        """ADD of a local archive: keyed by the archive's content; its members unpacked
        under `dest` with their own modes and owners (hardlinks as copies, device nodes and
        fifos left out, as in corral's other layers), every name checked to stay inside."""
        archive = self.context / step.source
        self.builder.note_copy(CopyStep(src=step.source, dest="/"), self.context)
        content = self.index.file_hash(archive)
        definition = {"unpack": step.source, "dest": step.dest}

        def entries() -> list[Entry]:
            return archive_entries(archive, step.dest, self.scratch / f"unpack-{content[:20]}")

        return self._layer_once(chain, definition, content,
                                f"layer add {step.source} → {step.dest} (unpacked)", entries)

    def _fetch_layer(self, step: PlanFetch, chain: str) -> Layer:
        """ADD URL. With --checksum, keyed by it (a cached build fetches nothing) and the
        download checked against it; without, downloaded by every build and keyed by what
        came, and the build is never recorded as fresh (a URL can change)."""
        definition = {"fetch": step.url, "dest": step.dest, "mode": step.mode,
                      "owner": step.owner}
        label = f"layer add {step.url} → {step.dest}"
        fetched: list[Path] = []

        def download() -> Path:
            if not fetched:
                self.progress(f"{label}: downloading")
                fetched.append(fetch_url(step.url, self.scratch / "fetched", step.checksum))
            return fetched[0]

        if step.checksum is None:
            self.builder.note_volatile(f"ADD {step.url} without --checksum")
            inputs = "sha256:" + _sha256_of(download())
        else:
            inputs = step.checksum

        def entries() -> list[Entry]:
            path = download()
            uid, gid = owner_of(CopyStep(src=".", dest=step.dest, owner=step.owner))
            return [Entry(step.dest.lstrip("/"), "file", 0o600 if step.mode is None
                          else step.mode, uid, gid, source=path, size=path.stat().st_size)]

        return self._layer_once(chain, definition, inputs, label, entries)

    def _layer_once(self, chain: str, definition: dict[str, Any], inputs: str, label: str,
                    entries: Callable[[], list[Entry]]) -> Layer:
        key = step_key(chain, definition, inputs, self.compression)
        cached = self.builder.cached_layer(key)
        if cached is not None:
            self.progress(f"{label} (cached)")
            return cached
        layer, tmp = pack(entries(), self.builder.layout.blobs, compression=self.compression)
        self.builder.layout.adopt_file(tmp, layer.digest)
        self.builder.remember(key, layer)
        self.progress(label)
        return layer


def paths_in_root(root: Path, path: str) -> list[str]:
    """The paths (relative to `root`) an absolute COPY --from source names: glob matches,
    or the path itself, its folders' symlinks resolved inside the root, never outside."""
    rel = path.lstrip("/")
    if glob.has_magic(rel):
        matches = sorted(glob.glob(rel, root_dir=root))
        if not matches:
            raise ImageError(f"COPY --from: {path!r} matches nothing in the source",
                             hint="check the path in the stage or image it copies from")
        return [within_root(root, match) for match in matches]
    found = within_root(root, rel)
    if not os.path.lexists(root / found):
        raise ImageError(f"COPY --from: {path!r} does not exist in the source",
                         hint="check the path in the stage or image it copies from")
    return [found]


def within_root(root: Path, rel: str) -> str:
    """`rel` with the symlinks among its folders resolved as if `root` were '/'."""
    pending = [p for p in rel.split("/") if p not in ("", ".")]
    done: list[str] = []
    hops = 0
    while pending:
        part = pending.pop(0)
        if part == "..":
            if done:
                done.pop()
            continue
        candidate = root.joinpath(*done, part)
        if pending and candidate.is_symlink():
            hops += 1
            if hops > _MAX_LINKS:
                raise ImageError(f"COPY --from: {rel!r} has too many levels of symlinks")
            target = os.readlink(candidate)
            done = [] if target.startswith("/") else done
            pending = [p for p in target.split("/") if p not in ("", ".")] + pending
            continue
        done.append(part)
    return "/".join(done)


def _materialize(entries: list[Entry], folder: Path, *, link: bool) -> None:
    """The entries' files under `folder`: hard links where `link` (a read-only mount, the
    cheapest) and the file system allows, else copies; folders and links made anew."""
    folder.mkdir(parents=True)
    for entry in entries:
        path = folder / entry.name.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        if entry.kind == "dir":
            path.mkdir(exist_ok=True)
        elif entry.kind == "symlink":
            os.symlink(entry.linkname, path)
        elif entry.source is not None:
            try:
                if not link:
                    raise OSError("copied: a writable mount must not reach the context")
                os.link(entry.source, path)
            except OSError:
                shutil.copy2(entry.source, path)


def _copy_tree(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir() and not source.is_symlink():
        shutil.copytree(source, target, symlinks=True)
    else:
        shutil.copy2(source, target, follow_symlinks=False)


def archive_entries(archive: Path, dest: str, scratch: Path) -> list[Entry]:
    """The layer entries of a tar archive (plain, gzip, bzip2 or xz) unpacked under `dest`:
    file contents written to `scratch`, modes and owners as the archive has them."""
    base = dest.strip("/")
    found: dict[str, Entry] = {}
    if base:
        found[base] = Entry(base, "dir", 0o755)
    files: dict[str, Path] = {}  # member name -> its content in scratch (for hardlinks)
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive, "r:*") as tar:
            for number, member in enumerate(tar):
                name = safe_name(member.name)
                if name is None:
                    continue  # the archive's "./": dest itself
                full = posixpath.join(base, name) if base else name
                perms, uid, gid = member.mode & 0o7777, member.uid, member.gid
                if member.isdir():
                    found[full] = Entry(full, "dir", perms, uid, gid)
                elif member.issym():
                    found[full] = Entry(full, "symlink", perms, uid, gid,
                                        linkname=member.linkname)
                elif member.islnk():
                    source = files.get(safe_link(member))
                    if source is None:
                        raise ImageError(f"{archive.name}: {member.name} is a hardlink to "
                                         f"{member.linkname}, which comes before it nowhere")
                    found[full] = Entry(full, "file", perms, uid, gid, source=source,
                                        size=source.stat().st_size)
                elif member.isreg():
                    path = scratch / str(number)
                    data = tar.extractfile(member)
                    assert data is not None
                    with data, path.open("wb") as out:
                        shutil.copyfileobj(data, out)
                    files[name] = path
                    found[full] = Entry(full, "file", perms, uid, gid, source=path,
                                        size=member.size)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ImageError(f"{archive.name}: not a tar archive corral can unpack ({exc})",
                         hint="ADD unpacks .tar, .tar.gz/.tgz, .tar.bz2 and .tar.xz; COPY "
                         "copies a file as it is") from None
    return [found[name] for name in sorted(found)]


def fetch_url(url: str, folder: Path, checksum: str | None = None) -> Path:
    """Download `url` (http or https, redirects followed) into `folder`; checked against
    `checksum` ("sha256:HEX") when given. Raises ImageError saying what went wrong."""
    import urllib.error
    import urllib.request

    folder.mkdir(parents=True, exist_ok=True)
    target = folder / hashlib.sha256(url.encode()).hexdigest()[:24]
    hasher = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=60) as response, target.open("wb") as out:
            while chunk := response.read(1 << 20):
                hasher.update(chunk)
                out.write(chunk)
    except urllib.error.HTTPError as exc:
        raise ImageError(f"ADD {url}: the server answered {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ImageError(f"ADD {url}: cannot download it ({reason})",
                         hint="check the URL and this machine's network") from None
    if checksum is not None and f"sha256:{hasher.hexdigest()}" != checksum:
        raise ImageError(f"ADD {url}: its content is sha256:{hasher.hexdigest()}, not the "
                         f"--checksum {checksum}", hint="the file changed at its source, "
                         "or the checksum is wrong")
    return target


def _sha256_of(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as data:
        while chunk := data.read(1 << 20):
            hasher.update(chunk)
    return hasher.hexdigest()
