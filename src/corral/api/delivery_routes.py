"""Routes of progressive delivery: promote, abort, rollback. Edges only: the engine decides."""

from __future__ import annotations

from typing import Any

from corral.api.bodies import RollbackBody
from corral.api.routes import Request, route
from corral.engine.controller import Controller
from corral.engine.rollback import RollbackRequest


@route("POST", "/v1/services/{service}/promote")
def promote(controller: Controller, request: Request) -> dict[str, Any]:
    service = request.params["service"]
    return {"service": service, "deployment": controller.deployer.signal(service, "promote"),
            "signal": "promote"}


@route("POST", "/v1/services/{service}/abort")
def abort(controller: Controller, request: Request) -> dict[str, Any]:
    service = request.params["service"]
    return {"service": service, "deployment": controller.deployer.signal(service, "abort"),
            "signal": "abort"}


@route("POST", "/v1/rollback", stream=True, body=RollbackBody)
def rollback(controller: Controller, request: Request) -> None:
    controller.rollback.run(RollbackRequest(**request.body), request.emit)
