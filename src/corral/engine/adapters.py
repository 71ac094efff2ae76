"""The adapters the engine's use cases reach beyond the Workspace's ports, named in one place.

workspace.py picks the adapters behind the ports (store, images, driver, router); this module
names the rest: the log store and its sinks, the metrics endpoint, the guard and watcher of
image roots, signing keys, the quarantine sweep and the registry transfer. No other engine
module imports an adapter package (an import-linter contract holds it), so a second
implementation replaces one function here. Each function imports its adapter when called:
a command pays only for what it uses. Nothing here decides anything.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from corral.ports.image_roots import HasImageRoots, RootGuard, RootWatcher

if TYPE_CHECKING:  # the types engine/images/registry.py names, re-exported for it
    from corral.images.oci.layout import Layout as Layout
    from corral.images.registry import BlobLocations as BlobLocations
    from corral.images.registry import (
        PullReport,
        PushReport,
        Reference,
        RegistryClient,
    )
    from corral.images.roots.quarantine import Sweep
    from corral.observe.loki import LokiSink
    from corral.observe.metrics_http import MetricsHttpServer
    from corral.ports.driver import Driver
    from corral.ports.logs import LogStore

Progress = Callable[[str], None]


# -- logs and metrics ------------------------------------------------------------------
def log_store(path: Path) -> LogStore:
    """The SQLite log store at `path`."""
    from corral.observe.logstore import SqliteLogStore

    return SqliteLogStore(path)


def copy_sqlite_database(path: Path) -> bytes:
    """The SQLite database at `path` (the log store, the sealed secrets) copied as of one
    moment, while others write it (for backups)."""
    from corral.observe.logcopy import copy_log_database as copy

    return copy(path)


def loki_sink(url: str, labels: dict[str, str] | None) -> LokiSink:
    from corral.observe.loki import LokiSink

    return LokiSink(url, labels=labels)


def metrics_server(listen: str, registry: Any) -> MetricsHttpServer:
    from corral.observe.metrics_http import MetricsHttpServer

    return MetricsHttpServer(listen, registry)


# -- image roots ---------------------------------------------------------------------
def root_guard(images: object) -> RootGuard | None:
    """The guard of an image store's local roots; None for a store without them."""
    if not isinstance(images, HasImageRoots):
        return None
    from corral.images.roots.guard import RootGuard as LocalRootGuard

    return LocalRootGuard.for_store(images)


def root_watcher() -> RootWatcher:
    """inotify when the kernel gives it, else polling."""
    from corral.images.roots.watch import make_watcher

    return make_watcher()


def sweep_quarantine(cache: Path, *, dry_run: bool) -> Sweep:
    """Delete (unless `dry_run`) the quarantined roots under `cache` no process mounts."""
    from corral.images.roots.quarantine import sweep_quarantine as sweep

    return sweep(cache, dry_run=dry_run)


# -- build freshness (images/fresh.py) -----------------------------------------------
def stamp_build_folder(folder: Path) -> dict[str, Any] | None:
    """The project folder, stamped before a build."""
    from corral.images.fresh import folder_stamp

    return folder_stamp(folder)


def stamp_build_inputs(before: dict[str, Any] | None,
                       origins: frozenset[str]) -> dict[str, Any] | None:
    """The inputs of a finished build, stamped; None when they cannot be."""
    from corral.images.fresh import stamp_inputs

    return stamp_inputs(before, origins)


def build_inputs_hold(inputs: dict[str, Any]) -> bool:
    from corral.images.fresh import inputs_hold

    return inputs_hold(inputs)


def image_intact(state_dir: Path, name: str, digest: str) -> bool:
    """`name:latest` is `digest` in the project's images, whole, with its SBOM."""
    from corral.images.fresh import image_intact as intact

    return intact(state_dir, name, digest)


def machine_cache_dir() -> Path:
    from corral.images.fresh import default_cache_dir

    return default_cache_dir()


# -- signing keys ------------------------------------------------------------------------
def generate_key(private: Path) -> tuple[Path, str]:
    """Write a new ed25519 key pair; (public key path, key id)."""
    from corral.images.oci.signing import generate_key as generate

    return generate(private)


def inline_public_key(source: str, folder: Path) -> str:
    """`ed25519:BASE64` for a public key given inline or as a PEM file under `folder`."""
    from corral.images.oci.signing import inline_form, load_public

    return inline_form(load_public(source, folder))


# -- registries ----------------------------------------------------------------------
def image_layout(folder: Path) -> Layout:
    """The OCI image layout at `folder` (no builder: a push does not import it)."""
    from corral.images.oci.layout import Layout

    return Layout(folder)


def blob_locations(path: Path) -> BlobLocations:
    from corral.images.registry import BlobLocations

    return BlobLocations(path)


def parse_reference(text: str) -> Reference:
    from corral.images.registry import parse_reference as parse

    return parse(text)


def registry_client(ref: Reference, *, insecure: bool,
                    chunk_size: int | None = None) -> RegistryClient:
    """A client of the registry `ref` names (`chunk_size`: the client's default if None)."""
    from corral.images.registry import RegistryClient

    if chunk_size is None:
        return RegistryClient(ref, insecure=insecure)
    return RegistryClient(ref, insecure=insecure, chunk_size=chunk_size)


def push_image(client: RegistryClient, layout: Layout, ref: Reference, digest: str, *,
               locations: BlobLocations, jobs: int, progress: Progress) -> PushReport:
    from corral.images.registry import push_image as push

    return push(client, layout, ref, digest, locations=locations, jobs=jobs,
                progress=progress)


def pull_image(client: RegistryClient, layout: Layout, ref: Reference, *, jobs: int,
               progress: Progress) -> PullReport:
    from corral.images.registry import pull_image as pull

    return pull(client, layout, ref, jobs=jobs, progress=progress)


# -- pipeline ------------------------------------------------------------------------
def sandbox_driver(state_dir: Path) -> Driver:
    """A process driver of its own (state under `state_dir`) for a pipeline's test
    commands: no controller's reconcile loop ever sees (and destroys) what it runs."""
    from corral.drivers.process import ProcessDriver

    return ProcessDriver(state_dir)
