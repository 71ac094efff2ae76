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
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from corral.errors import CorralError, SpecError
from corral.sockets import fitting
from corral.spec.load import load_spec, locate_spec

if TYPE_CHECKING:  # the ports only type the adapters; importing them costs CLI start-up
    from corral.engine.access.tokens import TokenBook
    from corral.ports.driver import Driver
    from corral.ports.images import ImageStore
    from corral.ports.router import Router
    from corral.ports.secrets import SecretStore
    from corral.ports.store import Store
    from corral.spec.load import LoadedSpec


SECRETS_DB = "secrets.db"  # sealed secrets, in each environment's state folder


def state_dir_of(spec_file: str | Path) -> Path:
    """The state folder of the project whose spec is `spec_file`, named without parsing the
    spec (commands that only talk to the controller skip pydantic's start-up). Raises the
    SpecError load_spec gives for a missing file. Images and caches live here, shared by
    every environment; `env_state_dir_of` names one environment's own folder."""
    return _state_dir(locate_spec(spec_file).parent)


def env_state_dir_of(spec_file: str | Path, env: str | None) -> Path:
    """The state folder of the environment `--env` (or the default) names, unparsed."""
    chosen = environment_of(spec_file, env)
    return _env_dir(state_dir_of(spec_file), chosen)


def socket_path_of(spec_file: str | Path, env: str | None = None) -> Path:
    """Where the controller of that project (environment) listens (Workspace.socket_path,
    unparsed)."""
    return fitting(env_state_dir_of(spec_file, env) / "run" / "controller.sock")


def environment_of(spec_file: str | Path, requested: str | None) -> str | None:
    """The environment a command acts on, read from the TOML alone (no pydantic): --env,
    else the one marked default, else None for a spec without environments. The full
    validation (load_spec) says the same; this only names a folder sooner."""
    import tomllib

    try:
        data = tomllib.loads(locate_spec(spec_file).read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, OSError, UnicodeDecodeError):
        # A spec that does not parse names no environment: what still runs can be read
        # (`status` without a controller), and commands that need the spec say why not.
        return requested
    environments = data.get("environments") or {}
    default = next((n for n, e in environments.items() if isinstance(e, dict)
                    and e.get("default") is True), None)
    return _chosen(list(environments), default, requested)


def _chosen(names: list[str], default: str | None, requested: str | None) -> str | None:
    from corral.spec.environment_choice import choose_environment

    try:
        return choose_environment(names, default, requested)
    except ValueError as exc:
        raise SpecError(str(exc), hint="environments are the spec's [environments.NAME] "
                        "sections (docs/spec.md)") from None


def _state_dir(folder: Path) -> Path:
    return Path(os.environ.get("CORRAL_STATE_DIR", folder / ".corral"))


def _env_dir(state_dir: Path, env: str | None) -> Path:
    """An environment's own folder (store, instances, router, logs, volumes); the project's
    state folder itself for a spec without environments, as before they existed."""
    return state_dir if env is None else state_dir / "env" / env


@dataclass
class Workspace:
    """A spec and the state folder beside it."""

    loaded: LoadedSpec
    env: str | None = None  # the environment acted on; `loaded` is its effective spec
    # A pipeline's checkout of a commit works on the project's state, not one of its own.
    state_root: Path | None = None

    @classmethod
    def open(cls, spec_path: str | Path, env: str | None = None,
             state_root: Path | None = None) -> Workspace:
        """The workspace of one environment (--env, else the default): its effective spec
        (spec/environments.py) and its own state folder; images stay shared. `state_root`
        replaces the state folder beside the spec (a pipeline's checkout)."""
        from corral.spec.environments import effective_spec
        from corral.spec.load import spec_digest

        loaded = load_spec(spec_path)
        spec = loaded.spec
        default = next((n for n, e in spec.environments.items() if e.default), None)
        chosen = _chosen(list(spec.environments), default, env)
        if chosen is None:
            return cls(loaded, None, state_root)
        effective = effective_spec(spec, chosen)
        return cls(replace(loaded, spec=effective, digest=spec_digest(effective)), chosen,
                   state_root)

    @property
    def folder(self) -> Path:
        return self.loaded.folder

    @property
    def image_dir(self) -> Path:
        """The project's state folder: images and build caches, shared by environments
        (the same digest is promoted, never rebuilt)."""
        return self.state_root or _state_dir(self.folder)

    @property
    def state_dir(self) -> Path:
        """This environment's state: store, instances, router, logs, volumes."""
        return _env_dir(self.image_dir, self.env)

    def qualified(self, service: str) -> str:
        """`staging/web` in an environment, `web` without: the ledger subject users read."""
        return service if self.env is None else f"{self.env}/{service}"

    @property
    def run_dir(self) -> Path:
        path = self.state_dir / "run"
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        return path

    @property
    def socket_path(self) -> Path:
        return fitting(self.run_dir / "controller.sock")

    @property
    def store_url(self) -> str:
        """This environment's store. A configured one (CORRAL_STORE, `[project] store`) is a
        single database for the whole project, so environments, whose states must stay
        apart, are refused with one rather than mixed in it (or, for gc and the deploy
        gate, taken for never used)."""
        url = store_url(self.state_dir, self.loaded.spec.project.store)
        if self.env is not None and url != _local_store_url(self.state_dir):
            raise CorralError(
                f"environment {self.env!r}: a configured store (CORRAL_STORE or [project] "
                "store) holds one environment's state, and this spec has environments "
                f"({', '.join(sorted(self.loaded.spec.environments))})",
                hint="each environment keeps its own embedded store in .corral/env/NAME/; "
                "unset CORRAL_STORE and [project] store, or keep one spec per environment")
        return url

    def make_private(self) -> None:
        """0700 state folder, 0600 databases: the controller user's. state.db is made here
        only when it is the store (not with PostgreSQL)."""
        from corral.engine.access.private import make_private

        local = self.store_url == _local_store_url(self.state_dir)
        make_private(self.state_dir, ("state.db", "logs.db") if local else ("logs.db",))

    @cached_property
    def store(self) -> Store:
        from corral.stores.sql import SqlStore

        self.make_private()
        return SqlStore(self.store_url)

    @cached_property
    def secrets(self) -> SecretStore:
        """This environment's secrets, sealed (engine/secrets.py opens them)."""
        from corral.stores.secrets import SqliteSecretStore

        return SqliteSecretStore(self.state_dir / SECRETS_DB)

    @cached_property
    def tokens(self) -> TokenBook:
        from corral.engine.access.tokens import TokenBook

        return TokenBook(self.state_dir)

    @cached_property
    def images(self) -> ImageStore:
        from corral.images.store import LocalImageStore

        return LocalImageStore(self.image_dir)

    @cached_property
    def driver(self) -> Driver:
        spec = self.loaded.spec
        if spec.driver == "swarm":
            from corral.drivers.swarm import SwarmDriver

            swarm = spec.drivers.swarm
            return SwarmDriver(self.state_dir, registry=swarm.registry or "",
                               project=spec.project.name, docker_host=swarm.docker_host,
                               insecure_registry=swarm.insecure_registry,
                               start_timeout=swarm.start_timeout)
        if spec.driver == "container":
            from corral.drivers.container import ContainerDriver

            return ContainerDriver(self.state_dir, layout=self.image_dir / "images",
                                   docker_host=spec.drivers.container.docker_host)
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


def other_environment(ws: Workspace, env: str) -> Workspace:
    """The workspace of another environment of the same spec (and the same state root)."""
    return Workspace.open(ws.loaded.path, env, ws.state_root)


def store_if_any(ws: Workspace) -> Store | None:
    """The environment's store if it was ever used; never creates one (a read must not
    leave an empty database behind)."""
    return ws.store if (ws.state_dir / "state.db").exists() else None


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
    return os.environ.get("CORRAL_STORE") or configured or _local_store_url(state_dir)


def _local_store_url(state_dir: Path) -> str:
    return f"sqlite:///{state_dir / 'state.db'}"


def current_actor() -> str:
    """Who is acting, for the ledger: the OS user."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid:{os.getuid()}"
