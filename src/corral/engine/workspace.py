"""Where a project's state lives, and the adapters wired to it.

The only place that picks the adapters behind the ports (store, images, driver, router);
engine/adapters.py names the other adapter functions the use cases call (log store, root
guard, signing, registry transfer). Every other engine module talks to the ports and their
ability Protocols; an import-linter contract holds it. Paths follow ARCHITECTURE.md: .corral/
beside the spec file.
"""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from corral.spec.load import load_spec, locate_spec

if TYPE_CHECKING:  # the ports only type the adapters; importing them costs CLI start-up
    from corral.ports.driver import Driver
    from corral.ports.images import ImageStore
    from corral.ports.router import Router
    from corral.ports.store import Store
    from corral.spec.load import LoadedSpec


def state_dir_of(spec_file: str | Path) -> Path:
    """The state folder of the project whose spec is `spec_file`, named without parsing the
    spec (commands that only talk to the controller skip pydantic's start-up). Raises the
    SpecError load_spec gives for a missing file."""
    return _state_dir(locate_spec(spec_file).parent)


def socket_path_of(spec_file: str | Path) -> Path:
    """Where the controller of that project listens (Workspace.socket_path, unparsed)."""
    return state_dir_of(spec_file) / "run" / "controller.sock"


def _state_dir(folder: Path) -> Path:
    return Path(os.environ.get("CORRAL_STATE_DIR", folder / ".corral"))


@dataclass
class Workspace:
    """A spec and the state folder beside it."""

    loaded: LoadedSpec

    @classmethod
    def open(cls, spec_path: str | Path) -> Workspace:
        return cls(load_spec(spec_path))

    @property
    def folder(self) -> Path:
        return self.loaded.folder

    @property
    def state_dir(self) -> Path:
        return _state_dir(self.folder)

    @property
    def run_dir(self) -> Path:
        path = self.state_dir / "run"
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def socket_path(self) -> Path:
        return self.run_dir / "controller.sock"

    @cached_property
    def store(self) -> Store:
        from corral.stores.sql import SqlStore

        self.state_dir.mkdir(parents=True, exist_ok=True)
        return SqlStore(store_url(self.state_dir, self.loaded.spec.project.store))

    @cached_property
    def images(self) -> ImageStore:
        from corral.images.store import LocalImageStore

        return LocalImageStore(self.state_dir)

    @cached_property
    def driver(self) -> Driver:
        from corral.drivers.process import ProcessDriver

        return ProcessDriver(self.state_dir)

    @cached_property
    def router(self) -> Router:
        # One router per machine; the spec guarantees every service agrees on kind/workers.
        routing = {name: s.router for name, s in self.loaded.spec.services.items() if s.router}
        first = next(iter(routing.values()), None)
        kind, workers = (first.kind, first.workers) if first else ("builtin", 0)
        if kind == "haproxy":
            from corral.routers.haproxy import HaproxyRouter

            return HaproxyRouter(self.run_dir, threads=workers, routing=routing,
                                 base=self.folder)
        from corral.routers.builtin.client import BuiltinRouter

        return BuiltinRouter(self.run_dir, workers=workers, routing=routing, base=self.folder)


@dataclass
class StateFolder:
    """A project's state folder without its spec (which may not even parse): enough to read
    what still runs there when no controller does (`corral status`)."""

    path: Path

    @cached_property
    def store(self) -> Store:
        from corral.stores.sql import SqlStore

        return SqlStore(store_url(self.path, None))

    @cached_property
    def driver(self) -> Driver:
        from corral.drivers.process import ProcessDriver

        return ProcessDriver(self.path)

    @cached_property
    def router(self) -> Router:
        """The kind that left its pid file here, unconfigured: for reads only."""
        run_dir = self.path / "run"
        if (run_dir / "haproxy.pid").exists():
            from corral.routers.haproxy import HaproxyRouter

            return HaproxyRouter(run_dir)
        from corral.routers.builtin.client import BuiltinRouter

        return BuiltinRouter(run_dir)


def sqlite_store(state_dir: Path) -> Store:
    """The embedded SQLite store in `state_dir`, whatever the project is configured with
    (a restore drill's scratch copy)."""
    from corral.stores.sql import SqlStore

    state_dir.mkdir(parents=True, exist_ok=True)
    return SqlStore(f"sqlite:///{state_dir / 'state.db'}")


def store_url(state_dir: Path, configured: str | None) -> str:
    """The state database: CORRAL_STORE, else the spec's `[project] store`, else the
    embedded SQLite file in the state folder."""
    return (os.environ.get("CORRAL_STORE") or configured
            or f"sqlite:///{state_dir / 'state.db'}")


def current_actor() -> str:
    """Who is acting, for the ledger: the OS user."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid:{os.getuid()}"
