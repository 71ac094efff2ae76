"""Observe routes: /metrics (Prometheus text), logs, ledger, verify, DORA, one instance."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from corral.api.bodies import query_int
from corral.api.routes import Request, route
from corral.engine.controller import Controller
from corral.engine.observe import ledger as engine_ledger
from corral.engine.observe.cost import cost_report
from corral.engine.observe.dora import dora_report
from corral.engine.observe.instance_report import instance_report
from corral.engine.observe.logview import line_view, log_query, parse_since
from corral.ports.ledger import EventFilter


@route("GET", "/metrics", role="viewer", raw=True)
def metrics(controller: Controller, request: Request) -> tuple[str, bytes]:
    return controller.telemetry.metrics()


@route("GET", "/v1/logs", role="viewer")
def logs(controller: Controller, request: Request) -> dict[str, Any]:
    q = request.query
    query = log_query(q.get("service"), release=q.get("release"), instance=q.get("instance"),
                      since=q.get("since"), grep=q.get("grep"), stream=q.get("stream"),
                      limit=query_int(q, "limit", 100))
    query = dataclasses.replace(query, after_id=query_int(q, "after", 0))  # following
    return {"lines": [line_view(line) for line in controller.telemetry.logs.query(query)]}


@route("GET", "/v1/ledger", role="viewer")
def ledger(controller: Controller, request: Request) -> dict[str, Any]:
    q = request.query
    where = EventFilter(service=q.get("service"), action=q.get("action"), actor=q.get("actor"),
                        since=parse_since(q.get("since"), time.time()),
                        limit=query_int(q, "limit", 200))
    return {"entries": [engine_ledger.entry_view(e)
                        for e in engine_ledger.entries(controller.ws.store, where)]}


@route("GET", "/v1/ledger/verify", role="viewer")
def verify(controller: Controller, request: Request) -> dict[str, Any]:
    return engine_ledger.verdict_view(engine_ledger.verify(controller.ws.store))


@route("GET", "/v1/dora", role="viewer")
def dora(controller: Controller, request: Request) -> dict[str, Any]:
    now = time.time()
    since = parse_since(request.query.get("since", "30d"), now) or 0.0
    return dora_report(controller.ws.store, since=since, until=now,
                       service=request.query.get("service"))


@route("GET", "/v1/cost", role="viewer")
def cost(controller: Controller, request: Request) -> dict[str, Any]:
    now = time.time()
    since = parse_since(request.query.get("since", "30d"), now) or 0.0
    return cost_report(controller.ws.store, since=since, until=now,
                       service=request.query.get("service"))


@route("GET", "/v1/services/{service}/instances/{instance}", role="viewer")
def instance(controller: Controller, request: Request) -> dict[str, Any]:
    return instance_report(controller.ws.store, controller.telemetry.logs,
                           request.params["service"], request.params["instance"])
