"""Routes of operate: chaos runs, the reconciler's state, a sweep on demand."""

from __future__ import annotations

from typing import Any

from corral.api.bodies import ChaosBody, NoBody
from corral.api.routes import Request, route
from corral.engine.controller import Controller
from corral.engine.operate.chaos import ChaosRequest, ChaosRun


@route("POST", "/v1/chaos", role="admin", stream=True, body=ChaosBody)
def chaos(controller: Controller, request: Request) -> None:
    run = ChaosRun(controller.ws.store, controller.fleets, controller.ws.driver,
                   controller.ws.router, controller.drift.guard, request.actor)
    summary = run.run(ChaosRequest(**request.body), request.emit)
    request.emit({"type": "result", **summary})


@route("GET", "/v1/reconcile", role="viewer")
def reconcile_state(controller: Controller, request: Request) -> dict[str, Any]:
    stats = controller.reconciler.stats
    return {"sweeps": stats.sweeps, "last_duration_s": stats.last_duration,
            "last_actions": stats.last_actions, "last_at": stats.last_at,
            "skipped": stats.skipped, "drift": controller.drift.found[-20:],
            "runtime_checks": controller.drift.runtime_passes}


@route("POST", "/v1/reconcile", role="deployer", body=NoBody)
def reconcile_now(controller: Controller, request: Request) -> dict[str, Any]:
    plan = controller.reconciler.sweep()
    return {"actions": [{"action": type(a).__name__, "service": a.service,
                         "cause": a.cause.kind, "reason": a.cause.detail} for a in plan.actions],
            "skipped": list(plan.skipped)}
