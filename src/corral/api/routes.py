"""The API's route table. Each area registers its routes with `@route` in its own module
(api/project_routes.py, …), listed in ROUTE_MODULES; the server only dispatches.

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
from corral.engine.controller import Controller

ROUTE_MODULES = ["corral.api.project_routes", "corral.api.delivery_routes",
                 "corral.api.observe_routes", "corral.api.operate_routes"]

Emit = Callable[[dict[str, Any]], None]


@dataclass
class Request:
    params: dict[str, str]
    query: dict[str, str]
    body: dict[str, Any]
    emit: Emit = field(default=lambda event: None)


Handler = Callable[[Controller, Request], Any]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    stream: bool
    raw: bool  # the handler returns (content type, bytes) instead of JSON
    body: type[Body] | None = None  # the model the JSON body must validate against


ROUTES: list[Route] = []


def route(method: str, path: str, *, stream: bool = False, raw: bool = False,
          body: type[Body] | None = None) -> Callable[[Handler], Handler]:
    """Register a handler for METHOD PATH; `{name}` in PATH captures one segment.
    A POST route names the model its body must validate against (api/bodies.py)."""
    if method == "POST" and body is None:
        raise TypeError(f"POST {path}: name the body model (api/bodies.py NoBody for none)")
    pattern = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path) + "$")

    def register(handler: Handler) -> Handler:
        ROUTES.append(Route(method, pattern, handler, stream, raw, body))
        return handler

    return register


def find(method: str, path: str) -> tuple[Route, dict[str, str]] | None:
    if not ROUTES:
        for module in ROUTE_MODULES:
            importlib.import_module(module)
    for candidate in ROUTES:
        if candidate.method == method:
            match = candidate.pattern.match(path)
            if match:
                return candidate, match.groupdict()
    return None
