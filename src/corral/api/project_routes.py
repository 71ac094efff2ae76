"""Routes of the project as a whole: ping, status, releases, deploy."""

from __future__ import annotations

import os
from typing import Any

from corral.api.bodies import DeployBody, ShutdownBody
from corral.api.routes import Request, route
from corral.engine.controller import Controller
from corral.engine.delivery.request import DeployRequest


@route("GET", "/v1/ping", role="viewer")
def ping(controller: Controller, request: Request) -> dict[str, Any]:
    return {"ok": True, "pid": os.getpid()}


@route("GET", "/v1/status", role="viewer")
def status(controller: Controller, request: Request) -> dict[str, Any]:
    return controller.status(request.query.get("service"))


@route("GET", "/v1/services/{service}/releases", role="viewer")
def releases(controller: Controller, request: Request) -> dict[str, Any]:
    from corral.engine.delivery.releases import release_rows

    return {"releases": release_rows(controller.ws, request.params["service"])}


@route("POST", "/v1/deploy", role="deployer", stream=True, body=DeployBody)
def deploy(controller: Controller, request: Request) -> None:
    controller.deploy(DeployRequest(**request.body, actor=request.actor), request.emit)


@route("POST", "/v1/shutdown", role="admin", body=ShutdownBody)
def shutdown(controller: Controller, request: Request) -> dict[str, Any]:
    """Stop the controller once this answer is sent (with its instances, unless
    keep_instances)."""
    keep = bool(request.body["keep_instances"])
    request.after.append(lambda: request.lifecycle.request(keep))
    return {"ok": True}
