"""The API's route table. Each area registers its routes with `@route` in its own module
(api/project_routes.py, …), listed in ROUTE_MODULES; the server only dispatches.

Every route declares the role it needs (core/access.py ROLES, or ANYONE for the sign-in
page and the dashboard's static files, or SIGNED for a git host's push webhook, which
proves itself by an HMAC signature of its body): the server refuses a request before its body is
read unless the caller's role is at least that (tests/integration/test_api_access.py walks
the whole table). A handler learns who calls from `request.actor` (a token's name, or
`unix:USER` on the socket), never from the body.

A handler gets the controller and a Request (path params, query, JSON body, and `emit`
for streaming routes) and returns a JSON-able dict (or None for streaming routes). A route
that takes a body names its model (api/bodies.py): the server validates the body before
the handler runs, so the handler sees it checked and with its defaults filled in.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from corral.api.bodies import Body
from corral.core.access import ROLES, SIGNED
from corral.engine.controller import Controller

ROUTE_MODULES = ["corral.api.project_routes", "corral.api.delivery_routes",
                 "corral.api.observe_routes", "corral.api.operate_routes",
                 "corral.api.access_routes", "corral.api.dashboard",
                 "corral.api.pipeline_routes"]

ANYONE = "anyone"
"""The role of the few routes a caller reaches before signing in."""

Emit = Callable[[dict[str, Any]], None]


@dataclass
class Request:
    params: dict[str, str]
    query: dict[str, str]
    body: dict[str, Any]
    emit: Emit = field(default=lambda event: None)
    actor: str = "anonymous"  # who calls: from the credentials, never from the body
    role: str = ANYONE
    headers: dict[str, str] = field(default_factory=dict)  # lowercase names
    after: list[Callable[[], None]] = field(default_factory=list)  # run once answered
    is_gone: Callable[[], bool] = field(default=lambda: False)  # a stream's client left
    is_allowed: Callable[[], bool] = field(default=lambda: True)  # its token still holds
    lifecycle: Any = None  # the server's Lifecycle (POST /v1/shutdown asks it to stop)
    address: str = "unix"  # the client's address (the dashboard's sign-in counts failures)
    gate: Any = None  # the TCP server's Gate (None on the unix socket)
    secure: bool = False  # the connection is TLS (the sign-in cookie is then Secure)


Handler = Callable[[Controller, Request], Any]


@dataclass(frozen=True)
class Answer:
    """What a raw route may return besides (content type, bytes): a status and headers too
    (the dashboard's redirects and its sign-in cookie)."""

    data: bytes = b""
    content_type: str = "text/html; charset=utf-8"
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    stream: bool
    raw: bool  # the handler returns (content type, bytes) instead of JSON
    role: str  # the least role that may call it (core/access.py ROLES, ANYONE or SIGNED)
    body: type[Body] | None = None  # the model the JSON body must validate against
    form: bool = False  # the body is an HTML form (the dashboard), read as a dict of str
    path: str = ""
    events: bool = False  # a stream of server-sent events (text/event-stream), not NDJSON

    @property
    def is_mutating(self) -> bool:
        return self.method != "GET"


ROUTES: list[Route] = []


def route(method: str, path: str, *, role: str, stream: bool = False, raw: bool = False,
          body: type[Body] | None = None, form: bool = False,
          events: bool = False) -> Callable[[Handler], Handler]:
    """Register a handler for METHOD PATH, callable by `role` and above; `{name}` in PATH
    captures one segment. A POST route names the model its body must validate against
    (api/bodies.py), or reads an HTML form."""
    if method == "POST" and body is None and not form:
        raise TypeError(f"POST {path}: name the body model (api/bodies.py NoBody for none)")
    if role not in (*ROLES, ANYONE, SIGNED):
        raise TypeError(f"{method} {path}: role {role!r} is not one of {ROLES}, ANYONE "
                        "or SIGNED")
    pattern = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path) + "$")

    def register(handler: Handler) -> Handler:
        ROUTES.append(Route(method, pattern, handler, stream or events, raw, role, body, form,
                            path, events))
        return handler

    return register


def all_routes() -> list[Route]:
    """The whole table, every area's module imported (once)."""
    if not _loaded:
        for module in ROUTE_MODULES:
            importlib.import_module(module)
        _loaded.append(True)
    return ROUTES


_loaded: list[bool] = []


def find(method: str, path: str) -> tuple[Route, dict[str, str]] | None:
    for candidate in all_routes():
        if candidate.method == method:
            match = candidate.pattern.match(path)
            if match:
                return candidate, match.groupdict()
    return None
