"""Builds an ImageSpec into an OCI image: base layers, one layer per step, config, manifest.

Each step's layer is cached under a key of (the layers below it, the step definition, a
content hash of its inputs), so an unchanged rebuild packs nothing and a one-file change
rebuilds from that step on. Steps run in plan order (plan.py: spec keys give copy steps,
then run steps; a Dockerfile gives its own order). It writes into the layout; it never
tags (the store does).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from corral.images.build.bases import Base, resolve_base
from corral.images.build.config import image_config, image_env, image_manifest
from corral.images.build.context import StatIndex, copy_entries, inputs_digest
from corral.images.build.dockerfile import plan_dockerfile
from corral.images.build.dockerignore import IgnoreRules
from corral.images.build.layer import Compression, Layer, pack
from corral.images.build.overlay import make_sandbox
from corral.images.build.passwd import resolve_user
from corral.images.build.plan import BuildPlan, CacheMount, PlanRun, spec_plan
from corral.images.build.provenance import provenance_labels
from corral.images.build.run import BUILD_ENV, Bind, Sandbox
from corral.images.build.run_user import run_as
from corral.images.build.sbom import LayerScans
from corral.images.build.stages import (
    DEFAULT_OPTIONS,
    BoundFiles,
    BuildOptions,
    StageRun,
    step_key,
)
from corral.images.fresh import file_origin, stamped, volatile_origin
from corral.images.oci.layout import Layout, canonical_json
from corral.images.roots.unpack import remove_tree

__all__ = ["BuildOptions", "Builder", "step_key"]
from corral.spec.model import CopyStep, ImageSpec

Progress = Callable[[str], None]

# What a run step's sandbox gives it, versioned in every run step's cache key, so a layer
# made under other rules is never reused: 2 = the image's own /tmp (no tmpfs over it), a
# WORKDIR's missing folders made as the step's USER, a HOME in the environment kept under
# gosu (1, unnamed in keys: a private /tmp, WORKDIR as root, HOME from /etc/passwd).
RUN_SANDBOX = 2


class Builder:
    """Turns specs into manifests in `layout`, caching step layers in `steps`."""

    def __init__(self, layout: Layout, steps: Path, cache_dir: Path) -> None:
        self.layout = layout
        self.steps = steps
        self.cache_dir = cache_dir
        # Where the last build read what is not in its project folder, and whether it read
        # what no stamp covers (images/fresh.py); `build` starts it afresh.
        self.origins: set[str] = set()

    def plan(self, image: ImageSpec, context: Path, options: BuildOptions = DEFAULT_OPTIONS,
             progress: Progress = lambda _: None,
             bases: dict[str, Base] | None = None) -> BuildPlan:
        """The build plan; `bases` remembers the registry and layout bases it resolved (to
        read their Env), so the build that follows does not resolve them again."""
        if not image.dockerfile:
            return spec_plan(image)
        known = {} if bases is None else bases

        def base_config(base: str) -> dict[str, Any]:
            if base not in known:
                known[base] = resolve_base(ImageSpec(base=base), context, self.layout,
                                           self.cache_dir, progress,
                                           update=options.update_bases,
                                           insecure=options.insecure)
                self.note_origin(known[base])
            return known[base].config

        self.origins.add(file_origin(context / image.dockerfile))
        return plan_dockerfile(context / image.dockerfile, context, image, self._local_image,
                               base_config)

    def build(self, image: ImageSpec, context: Path, labels: dict[str, str] | None,
              progress: Progress, options: BuildOptions = DEFAULT_OPTIONS,
              scans: LayerScans | None = None) -> tuple[str, int]:
        """Build `image`; return (manifest digest, manifest size). `scans`: where the SBOM's
        layer scans of the registry and layout bases start, while the steps run."""
        self.layout.ensure()
        self.origins = set()
        bases: dict[str, Base] = {}
        plan = self.plan(image, context, options, progress, bases)
        if scans is not None:
            for layer in (layer for base in bases.values() for layer in base.layers):
                scans.start(self.layout.blob_path(layer.digest), layer.diff_id)
        for warning in plan.warnings:
            progress(f"warning: {warning}")
        for note in plan.notes:
            progress(note)
        with contextlib.ExitStack() as cleanup:
            run = StageRun(self, context, image.compression, progress, options, plan, cleanup,
                           bases)
            built, base_config = run.stage(plan)
        all_labels = {**provenance_labels(image, context), **(labels or {})}
        config = image_config(base_config, plan.metadata, all_labels, built.layers,
                              stop_signal=plan.stop_signal, author=plan.author)
        user = config["config"].get("User")
        if user:
            config["config"]["User"] = resolve_user(user, [
                self.layout.blob_path(layer.digest) for layer in built.layers])
        config_digest, config_size = self.layout.write_blob(canonical_json(config))
        manifest = image_manifest(config_digest, config_size, built.layers)
        return self.layout.write_blob(canonical_json(manifest))

    def note_volatile(self, why: str) -> None:
        """The build read something no freshness stamp covers (images/fresh.py)."""
        self.origins.add(volatile_origin(why))

    def note_copy(self, step: CopyStep, context: Path) -> None:
        """A copy (or a bind mount) from the context that a freshness stamp cannot cover
        makes the build volatile (images/fresh.py)."""
        if not stamped(step, context):
            self.note_volatile(f"copy {step.src}")

    def note_origin(self, base: Base) -> None:
        if base.origin:
            self.origins.add(base.origin)

    def _local_image(self, ref: str) -> str | None:
        full = ref if ":" in ref else f"{ref}:latest"
        if self.layout.find_tag(full) is None:
            return None
        return f"layout:{self.layout.root}:{full}"

    def copy_layer(self, step: CopyStep, chain: str, context: Path, index: StatIndex,
                    compression: Compression, progress: Progress,
                    ignore: IgnoreRules | None = None) -> Layer:
        entries = copy_entries(step, context, ignore)
        self.note_copy(step, context)
        files = sum(1 for e in entries if e.kind == "file")
        label = f"layer copy {step.src} → {step.dest}: {files} file{'s' * (files != 1)}"
        key = step_key(chain, step.model_dump(mode="json", by_alias=True),
                        inputs_digest(entries, index), compression)
        cached = self.cached_layer(key)
        if cached is not None:
            progress(f"{label} (cached)")
            return cached
        layer, tmp = pack(entries, self.layout.blobs, compression=compression)
        self.layout.adopt_file(tmp, layer.digest)
        self.remember(key, layer)
        progress(label)
        return layer

    def run_layer(self, run: PlanRun, base_config: dict[str, Any], layers: list[Layer],
                   chain: str, sandbox: list[Sandbox], cleanup: contextlib.ExitStack,
                   compression: Compression, progress: Progress,
                   lower: int | None = None,
                   mounted: Callable[[], list[BoundFiles]] = list) -> Layer:
        """The layer of one run step: from the cache (brought into a live sandbox), or run.
        One sandbox root serves every uncached step, so the image is unpacked at most once.
        `lower`: how many of `layers` (the stage's base) make the sandbox's read-only root;
        the rest are applied over it (default: all of them below). `mounted`: the files of
        the step's bind mounts, with their content hashes (the step's key holds them)."""
        step, workdir = run.step, run.workdir
        env = image_env(base_config, ImageSpec(env=run.env))
        label = f"layer run {step.command}" + (f" (as {run.user})" if run.user else "")
        definition: dict[str, Any] = {"run": step.command, "network": step.network,
                                      "env": env, "workdir": workdir, "build_env": BUILD_ENV,
                                      "sandbox": RUN_SANDBOX}
        if run.argv is not None:  # keys of plain `sh -c` steps stay as they were
            definition["argv"] = list(run.argv)
        if run.caches:
            definition["caches"] = [cache.key() for cache in run.caches]
        if run.user is not None:  # the chain pins /etc/passwd, so the name is enough
            definition["user"] = run.user
        if run.tmpfs:
            definition["tmpfs"] = list(run.tmpfs)
        bound = mounted() if run.binds else []
        if bound:
            definition["binds"] = [{"target": b.target, "inputs": b.inputs, "rw": b.writable}
                                   for b in bound]
        key = step_key(chain, definition, "", compression)
        layer = self.cached_layer(key)
        if layer is not None:
            progress(f"{label} (cached)")
            if sandbox:
                sandbox[0].apply(self.layout.blob_path(layer.digest))
            return layer
        if not sandbox:
            sandbox.append(self._sandbox(layers, len(layers) if lower is None else lower,
                                         cleanup))
        progress(f"{label}: running in bubblewrap{' with network' if step.network else ''}")
        binds = [Bind(self._cache_folder(cache), cache.target) for cache in run.caches]
        binds += [Bind(b.make(), b.target, readonly=not b.writable) for b in bound]
        binds += [Bind(None, target) for target in run.tmpfs]
        user = None if run.user is None else run_as(run.user, [
            self.layout.blob_path(layer.digest) for layer in layers])
        layer, tmp, changed = sandbox[0].run(step, env, workdir, self.layout.blobs,
                                             compression, argv=run.argv, binds=binds, user=user)
        self.layout.adopt_file(tmp, layer.digest)
        self.remember(key, layer)
        progress(f"{label}: {changed} path{'s' * (changed != 1)} changed")
        return layer

    def _sandbox(self, layers: list[Layer], lower: int, cleanup: contextlib.ExitStack) -> Sandbox:
        """A sandbox over the first `lower` layers (read-only, shared by the stages of this
        build on the same base), the layers above them applied in it. Those are a stage's own
        few small layers: applying them costs less than composing a whole root per stage."""
        below = [(self.layout.blob_path(layer.digest), layer.diff_id) for layer in layers[:lower]]
        made = cleanup.enter_context(make_sandbox(below, self.steps.parent / "work",
                                                  self.steps.parent / "layers",
                                                  self._shared_lower(below, cleanup)))
        for layer in layers[lower:]:
            made.apply(self.layout.blob_path(layer.digest))
        return made

    def _shared_lower(self, below: list[tuple[Path, str]], cleanup: contextlib.ExitStack) -> Path:
        """Where the read-only root of `below` is composed for overlay sandboxes: stages of
        one build on the same base share it; it goes when the build ends (registered before
        any sandbox over it, so it is removed after they are unmounted)."""
        key = hashlib.sha256("\n".join(diff_id for _, diff_id in below).encode()).hexdigest()
        folder = self.steps.parent / "work" / f"lowers-{os.getpid()}"
        if not folder.exists():
            cleanup.callback(remove_tree, folder)
        return folder / key[:24]

    def _cache_folder(self, cache: CacheMount) -> Path:
        """The host folder of a RUN --mount=type=cache id, kept between builds, with the
        owner and mode the mount asks for (when corral may give them)."""
        digest = hashlib.sha256(cache.id.encode()).hexdigest()[:24]
        folder = self.cache_dir / "run-cache" / digest
        folder.mkdir(parents=True, exist_ok=True)
        if cache.access is not None:
            uid, gid, mode = cache.access
            if os.geteuid() == 0:  # without root, bubblewrap maps our folders to the user
                os.chown(folder, uid, gid)
            folder.chmod(mode)
        return folder

    def cached_layer(self, key: str) -> Layer | None:
        try:
            layer = Layer(**json.loads((self.steps / f"{key}.json").read_text()))
        except (FileNotFoundError, ValueError, TypeError):
            return None
        return layer if self.layout.has_blob(layer.digest) else None

    def remember(self, key: str, layer: Layer) -> None:
        self.steps.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.steps, prefix=".tmp-")
        with os.fdopen(fd, "w") as out:
            json.dump(asdict(layer), out)
        os.rename(tmp, self.steps / f"{key}.json")
