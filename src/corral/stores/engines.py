"""Which database a store URL names, and the engine opened the way that database needs:
SQLite (the embedded default, sqlite.py) or PostgreSQL (for teams, postgresql.py).
Nothing here knows the schema.
"""

from __future__ import annotations

from sqlalchemy import Engine
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, make_url

from corral.errors import StoreError
from corral.stores.postgresql import postgresql_engine
from corral.stores.sqlite import sqlite_engine

_HINT = ('use "sqlite:////absolute/path/state.db" or '
         '"postgresql://USER@HOST/DATABASE" (a unix socket: "postgresql:///DB?host=/FOLDER")')


def open_engine(url: str, busy_timeout: float) -> Engine:
    """An engine on the state database at `url`; StoreError names an unusable URL."""
    parsed = parse_store_url(url)
    if parsed.get_backend_name() == "sqlite":
        return sqlite_engine(parsed, busy_timeout)
    return postgresql_engine(parsed, busy_timeout)


def parse_store_url(url: str) -> URL:
    """`url` parsed; StoreError unless it names SQLite or PostgreSQL."""
    try:
        parsed = make_url(url)
    except sa_exc.ArgumentError as exc:
        raise StoreError(f"{url!r} is not a database URL", hint=_HINT) from exc
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise StoreError(f"the state database {url!r} uses {parsed.get_backend_name()!r}, "
                         "which corral does not support", hint=_HINT)
    return parsed


def describe(engine: Engine) -> str:
    """How errors name the database: its file, or its URL without the password."""
    if engine.dialect.name == "sqlite":
        return engine.url.database or str(engine.url)
    return engine.url.render_as_string(hide_password=True)
