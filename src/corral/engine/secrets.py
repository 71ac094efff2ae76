"""Secrets: sealing values with a key kept outside the project, pinning the version a
release runs, and opening values for an instance at its start.

The key is `CORRAL_SECRET_KEY` (32 bytes, urlsafe base64) or a 0600 file under the user's
config folder (`$XDG_CONFIG_HOME/corral/secret.key`, made on first use). Each version is
sealed with AES-256-GCM (the `cryptography` package), bound to its environment, name and
version as associated data, so a sealed value cannot be passed off as another. A value is
never logged, recorded in the ledger, nor put in an error message.
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from corral.core.release import secret_refs
from corral.engine.workspace import Workspace, current_actor
from corral.errors import CorralError, DeployError, NotFound
from corral.ports.records import Event
from corral.ports.secrets import SecretVersion

KEY_ENV = "CORRAL_SECRET_KEY"
NONCE_BYTES = 12


def key_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "corral" / "secret.key"


def load_key(create: bool = False) -> bytes:
    """The secret key: CORRAL_SECRET_KEY, else the key file (made with mode 0600 when
    `create`). Refuses a key file others can read."""
    given = os.environ.get(KEY_ENV)
    if given:
        return _decode_key(given, KEY_ENV)
    path = key_path()
    if not path.exists():
        if not create:
            raise CorralError(f"no secret key: {KEY_ENV} is not set and {path} does not exist",
                              hint="`corral secret set` makes the key file; a controller "
                              "on another account needs the same key")
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(base64.urlsafe_b64encode(os.urandom(32)).decode() + "\n")
    if path.stat().st_mode & 0o077:
        raise CorralError(f"the secret key {path} can be read by other users",
                          hint=f"chmod 600 {path}")
    return _decode_key(path.read_text().strip(), str(path))


def _decode_key(text: str, where: str) -> bytes:
    try:
        key = base64.urlsafe_b64decode(text)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise CorralError(f"the secret key in {where} is not 32 bytes in urlsafe base64",
                          hint="make one: python3 -c 'import base64, os; "
                          "print(base64.urlsafe_b64encode(os.urandom(32)).decode())'")
    return key


def _bound(ws: Workspace, name: str, version: int) -> bytes:
    """Associated data: a sealed value only opens as this environment, name and version."""
    return f"corral-secret:{ws.env or '-'}:{name}:{version}".encode()


def seal(key: bytes, ws: Workspace, name: str, version: int, value: bytes) -> bytes:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, value, _bound(ws, name, version))


def unseal(key: bytes, ws: Workspace, record: SecretVersion) -> bytes:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce, sealed = record.sealed[:NONCE_BYTES], record.sealed[NONCE_BYTES:]
    try:
        return AESGCM(key).decrypt(nonce, sealed, _bound(ws, record.name, record.version))
    except InvalidTag:
        raise CorralError(f"secret {record.name} v{record.version} of {_where(ws)} does not "
                          "open with this key", hint=f"use the key it was set with "
                          f"({KEY_ENV} or {key_path()})") from None


def _where(ws: Workspace) -> str:
    return f"environment {ws.env}" if ws.env else "this project"


# -- commands ----------------------------------------------------------------------
def set_secret(ws: Workspace, name: str, value: bytes, *, rotate: bool) -> SecretVersion:
    """Store the next version of `name`; `rotate` requires the secret to exist already."""
    if rotate and ws.secrets.get(name) is None:
        raise NotFound(f"no secret {name!r} in {_where(ws)} to rotate",
                       hint=f"set it first: corral secret set {name}")
    key = load_key(create=True)
    record = ws.secrets.add_version(name, lambda v: seal(key, ws, name, v, value), time.time())
    _record(ws, "secret.rotate" if rotate else "secret.set", name, {"version": record.version})
    return record


def remove_secret(ws: Workspace, name: str) -> int:
    removed = ws.secrets.remove(name)
    if not removed:
        raise NotFound(f"no secret {name!r} in {_where(ws)}", hint="corral secret list")
    _record(ws, "secret.rm", name, {"versions": removed})
    return removed


def secret_rows(ws: Workspace) -> list[dict[str, Any]]:
    """Names, versions, dates and the services that reference each: never values."""
    users = services_using(ws)
    return [{"name": r.name, "version": r.version, "created_at": r.created_at,
             "services": sorted(users.get(r.name, ()))} for r in ws.secrets.newest()]


def services_using(ws: Workspace) -> dict[str, set[str]]:
    """Secret name -> the services of this environment's spec that reference it."""
    users: dict[str, set[str]] = {}
    for service, spec in ws.loaded.spec.services.items():
        for ref in secret_refs(spec).values():
            users.setdefault(ref.secret, set()).add(service)
    return users


def _record(ws: Workspace, action: str, name: str, detail: dict[str, Any]) -> None:
    ws.store.append_event(Event(at=time.time(), actor=current_actor(), action=action,
                                subject=f"secret/{name}",
                                detail={**detail, **({"environment": ws.env} if ws.env else {})}))


# -- releases and instances --------------------------------------------------------
def pin_secret_versions(ws: Workspace, service: str, config: dict[str, Any]) -> dict[str, Any]:
    """`config` with each secret reference pinned to the newest version, so a rotation
    makes a new release. Raises DeployError naming a secret the environment lacks: before
    anything starts."""
    def pin(ref: Any) -> Any:
        if not isinstance(ref, dict) or "secret" not in ref:
            return ref
        found = ws.secrets.get(ref["secret"])
        if found is None:
            raise DeployError(f"{ws.qualified(service)} needs secret {ref['secret']!r}, which "
                              f"is not set in {_where(ws)}; nothing was started",
                              hint=f"corral secret set {ref['secret']}"
                              + (f" --env {ws.env}" if ws.env else ""))
        return {**ref, "version": found.version}

    return {**config, "env": {k: pin(v) for k, v in config.get("env", {}).items()},
            "files": {k: pin(v) for k, v in config.get("files", {}).items()}}


Opener = Callable[[str, int], str]


def secret_opener(ws: Workspace) -> Opener:
    """What the controller gives Instances: (name, version) -> the value, opened when an
    instance starts; the key is read once, at the first secret."""
    key: list[bytes] = []

    def open_secret(name: str, version: int) -> str:
        record = ws.secrets.get(name, version)
        if record is None:
            raise DeployError(f"secret {name!r} v{version} is no longer in {_where(ws)}",
                              hint=f"set it again (corral secret set {name}) and deploy")
        if not key:
            key.append(load_key())
        return unseal(key[0], ws, record).decode()

    return open_secret
