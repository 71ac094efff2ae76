"""Routes of progressive delivery: promote, abort, rollback, and waiting for a deployment
to end. Edges only: the engine decides and waits."""

from __future__ import annotations

from typing import Any

from corral.api.bodies import NoBody, RollbackBody, WaitBody
from corral.api.routes import Request, route
from corral.engine.controller import Controller
from corral.engine.delivery.outcome import await_outcome
from corral.engine.delivery.rollback import RollbackRequest
from corral.errors import NotFound


@route("POST", "/v1/services/{service}/promote", role="deployer", body=NoBody)
def promote(controller: Controller, request: Request) -> dict[str, Any]:
    service = request.params["service"]
    deployment = controller.deployer.signal(service, "promote", request.actor)
    return {"service": service, "deployment": deployment, "signal": "promote"}


@route("POST", "/v1/services/{service}/abort", role="deployer", body=NoBody)
def abort(controller: Controller, request: Request) -> dict[str, Any]:
    service = request.params["service"]
    deployment = controller.deployer.signal(service, "abort", request.actor)
    return {"service": service, "deployment": deployment, "signal": "abort"}


@route("POST", "/v1/rollback", role="deployer", stream=True, body=RollbackBody)
def rollback(controller: Controller, request: Request) -> None:
    controller.rollback.run(RollbackRequest(**request.body, actor=request.actor), request.emit)


@route("POST", "/v1/deployments/{deployment}/wait", role="deployer", stream=True,
       body=WaitBody)
def wait(controller: Controller, request: Request) -> None:
    """One event, {"type": "result", "outcome"}, once the deployment ended or the body's
    timeout passed ("running"); a controller shutting down answers at once."""
    number = request.params["deployment"]
    if not number.isdigit():
        raise NotFound(f"no deployment {number!r}", hint="a deployment is named by its number")
    outcome = await_outcome(controller.ws.store, int(number), request.body["timeout"],
                            wait=controller.stopping.wait)
    request.emit({"type": "result", "deployment": int(number), "outcome": str(outcome)})
