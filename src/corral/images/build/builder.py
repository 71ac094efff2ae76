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

from corral.images.build.bases import next_chain, resolve_base
from corral.images.build.config import image_config, image_env, image_manifest
from corral.images.build.context import StatIndex, copy_entries, inputs_digest
from corral.images.build.dockerfile import plan_dockerfile
from corral.images.build.dockerignore import IgnoreRules
from corral.images.build.layer import COMPRESSION_LEVEL, Compression, Layer, pack, source_date_epoch
from corral.images.build.plan import BuildPlan, PlanRun, spec_plan
from corral.images.build.provenance import provenance_labels
from corral.images.build.run import BUILD_ENV, Sandbox
from corral.images.oci.layout import Layout, canonical_json
from corral.spec.model import CopyStep, ImageSpec

Progress = Callable[[str], None]


class Builder:
    """Turns specs into manifests in `layout`, caching step layers in `steps`."""

    def __init__(self, layout: Layout, steps: Path, cache_dir: Path) -> None:
        self.layout = layout
        self.steps = steps
        self.cache_dir = cache_dir

    def plan(self, image: ImageSpec, context: Path) -> BuildPlan:
        if not image.dockerfile:
            return spec_plan(image)
        return plan_dockerfile(context / image.dockerfile, context, image, self._local_image)

    def build(self, image: ImageSpec, context: Path, labels: dict[str, str] | None,
              progress: Progress) -> tuple[str, int]:
        """Build `image`; return (manifest digest, manifest size)."""
        plan = self.plan(image, context)
        for warning in plan.warnings:
            progress(f"warning: {warning}")
        self.layout.ensure()
        base = resolve_base(plan.base_spec, context, self.layout, self.cache_dir, progress,
                            image.compression)
        layers, chain = list(base.layers), base.chain
        index = StatIndex(self.steps / "stat-index.json")
        with contextlib.ExitStack() as cleanup:
            cleanup.callback(index.save)
            sandbox: list[Sandbox] = []  # made by the first uncached run step, then kept
            for step in plan.steps:
                if isinstance(step, PlanRun):
                    layer = self._run_layer(step, base.config, layers, chain, sandbox, cleanup,
                                            image.compression, progress)
                else:
                    layer = self._copy_layer(step, chain, context, index, image.compression,
                                             progress, plan.ignore)
                    if sandbox:
                        sandbox[0].apply(self.layout.blob_path(layer.digest))
                layers.append(layer)
                chain = next_chain(chain, layer)
        all_labels = {**provenance_labels(image, context), **(labels or {})}
        config = image_config(base.config, plan.metadata, all_labels, layers)
        config_digest, config_size = self.layout.write_blob(canonical_json(config))
        manifest = image_manifest(config_digest, config_size, layers)
        return self.layout.write_blob(canonical_json(manifest))

    def _local_image(self, ref: str) -> str | None:
        full = ref if ":" in ref else f"{ref}:latest"
        if self.layout.find_tag(full) is None:
            return None
        return f"layout:{self.layout.root}:{full}"

    def _copy_layer(self, step: CopyStep, chain: str, context: Path, index: StatIndex,
                    compression: Compression, progress: Progress,
                    ignore: IgnoreRules | None = None) -> Layer:
        entries = copy_entries(step, context, ignore)
        files = sum(1 for e in entries if e.kind == "file")
        label = f"layer copy {step.src} → {step.dest}: {files} file{'s' * (files != 1)}"
        key = _step_key(chain, step.model_dump(mode="json", by_alias=True),
                        inputs_digest(entries, index), compression)
        cached = self._cached(key)
        if cached is not None:
            progress(f"{label} (cached)")
            return cached
        layer, tmp = pack(entries, self.layout.blobs, compression=compression)
        self.layout.adopt_file(tmp, layer.digest)
        self._remember(key, layer)
        progress(label)
        return layer

    def _run_layer(self, run: PlanRun, base_config: dict[str, Any], layers: list[Layer],
                   chain: str, sandbox: list[Sandbox], cleanup: contextlib.ExitStack,
                   compression: Compression, progress: Progress) -> Layer:
        """The layer of one run step: from the cache (brought into a live sandbox), or run.
        One sandbox root serves every uncached step, so the image is unpacked at most once."""
        step, workdir = run.step, run.workdir
        env = image_env(base_config, ImageSpec(env=run.env))
        label = f"layer run {step.command}"
        definition = {"run": step.command, "network": step.network, "env": env,
                      "workdir": workdir, "build_env": BUILD_ENV}
        key = _step_key(chain, definition, "", compression)
        layer = self._cached(key)
        if layer is not None:
            progress(f"{label} (cached)")
            if sandbox:
                sandbox[0].apply(self.layout.blob_path(layer.digest))
            return layer
        if not sandbox:
            paths = [self.layout.blob_path(below.digest) for below in layers]
            sandbox.append(cleanup.enter_context(Sandbox(paths, self.steps.parent / "work")))
        progress(f"{label}: running in bubblewrap{' with network' if step.network else ''}")
        layer, tmp, changed = sandbox[0].run(step, env, workdir, self.layout.blobs,
                                             compression)
        self.layout.adopt_file(tmp, layer.digest)
        self._remember(key, layer)
        progress(f"{label}: {changed} path{'s' * (changed != 1)} changed")
        return layer

    def _cached(self, key: str) -> Layer | None:
        try:
            layer = Layer(**json.loads((self.steps / f"{key}.json").read_text()))
        except (FileNotFoundError, ValueError, TypeError):
            return None
        return layer if self.layout.has_blob(layer.digest) else None

    def _remember(self, key: str, layer: Layer) -> None:
        self.steps.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.steps, prefix=".tmp-")
        with os.fdopen(fd, "w") as out:
            json.dump(asdict(layer), out)
        os.rename(tmp, self.steps / f"{key}.json")


def _step_key(chain: str, step: object, inputs: str, compression: Compression) -> str:
    # The mtime and the compression change the layer bytes, so they are part of the key.
    material = {"parent": chain, "step": step, "inputs": inputs, "mtime": source_date_epoch(),
                "compression": compression if compression == "none" else
                f"{compression}-{COMPRESSION_LEVEL}"}
    return hashlib.sha256(canonical_json(material)).hexdigest()
