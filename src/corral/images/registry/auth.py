"""Registry credentials and the two auth schemes of the distribution spec: basic and bearer.

Credentials come from CORRAL_REGISTRY_USER / CORRAL_REGISTRY_PASSWORD, else from the
credentials file (CORRAL_REGISTRY_AUTH, default ~/.config/corral/registries.json), else from
Docker's ~/.docker/config.json. The bearer flow follows a `WWW-Authenticate: Bearer realm=…`
challenge to the token realm. Nothing here is ever logged or written.
"""

from __future__ import annotations

import base64
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from corral.errors import ImageError
from corral.images.registry.http import HttpClient, TransportError, with_query

_PARAM = re.compile(r'([A-Za-z_]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str

    def basic(self) -> str:
        pair = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(pair).decode()


@dataclass(frozen=True)
class Challenge:
    scheme: str  # "basic" or "bearer", lowercase
    params: dict[str, str]


def credentials_file() -> Path:
    configured = os.environ.get("CORRAL_REGISTRY_AUTH")
    return Path(configured) if configured else Path.home() / ".config/corral/registries.json"


def find_credentials(registry: str) -> Credentials | None:
    """The credentials for `registry` (host[:port]), or None for anonymous access."""
    user = os.environ.get("CORRAL_REGISTRY_USER")
    if user:
        return Credentials(user, os.environ.get("CORRAL_REGISTRY_PASSWORD", ""))
    corral = _read_json(credentials_file())
    entry = corral.get("registries", {}).get(registry) if corral else None
    if isinstance(entry, dict) and "username" in entry:
        return Credentials(str(entry["username"]), str(entry.get("password", "")))
    docker = _read_json(Path.home() / ".docker" / "config.json")
    auths = docker.get("auths", {}) if docker else {}
    entry = auths.get(registry) or auths.get(f"https://{registry}")
    if isinstance(entry, dict) and entry.get("auth"):
        user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
        return Credentials(user, password)
    return None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ImageError(f"registry credentials file {path} is unreadable: {exc}",
                         hint='it holds {"registries": {"HOST:PORT": {"username": …, '
                         '"password": …}}}') from None
    return value if isinstance(value, dict) else {}


def parse_challenge(header: str) -> Challenge | None:
    """`Bearer realm="…",service="…",scope="…"` or `Basic realm="…"` into a Challenge."""
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() not in ("basic", "bearer"):
        return None
    params = {m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
              for m in _PARAM.finditer(rest)}
    return Challenge(scheme.lower(), params)


def fetch_token(http: HttpClient, challenge: Challenge, credentials: Credentials | None,
                registry: str) -> str:
    """The Docker token flow: GET realm?service=…&scope=…, with basic credentials if any."""
    realm = challenge.params.get("realm")
    if not realm:
        raise ImageError(f"registry {registry} asked for a bearer token without a realm")
    query = [(key, challenge.params[key]) for key in ("service",) if key in challenge.params]
    query += [("scope", scope) for scope in challenge.params.get("scope", "").split() if scope]
    headers = {"Authorization": credentials.basic()} if credentials else {}
    try:
        response = http.request("GET", with_query(realm, query), headers=headers)
        response.read()
    except TransportError as exc:
        raise ImageError(f"token server {realm} of registry {registry} is unreachable: "
                         f"{exc}") from None
    if response.status_code in (401, 403):
        raise ImageError(f"token server {realm} refused the credentials for {registry} "
                         f"({response.status_code})", hint=CREDENTIALS_HINT)
    if response.status_code != 200:
        raise ImageError(f"token server {realm} answered {response.status_code}")
    try:
        body = response.json()
        return str(body.get("token") or body["access_token"])
    except (ValueError, KeyError, AttributeError):
        raise ImageError(f"token server {realm} sent no token") from None


CREDENTIALS_HINT = ("set CORRAL_REGISTRY_USER and CORRAL_REGISTRY_PASSWORD, or add the "
                    "registry to ~/.config/corral/registries.json (see docs/commands/push.md)")
