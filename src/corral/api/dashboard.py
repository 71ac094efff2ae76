"""The dashboard's routes, served by the controller: server-rendered pages (api/pages.py),
live updates as server-sent events, and promote / abort / rollback for deployers.

A browser signs in with a token, kept in an HttpOnly, SameSite=Strict cookie; the server
checks it and the route's role exactly as for the JSON API (api/server.py), and refuses a
cookie-carried change that lacks htmx's own header, so another site's form cannot use it.
A viewer's pages carry no buttons, and the action routes refuse a viewer anyway.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from corral.api import pages
from corral.api.bodies import query_int
from corral.api.routes import ANYONE, Answer, Request, route
from corral.api.server import SESSION_COOKIE
from corral.core.access import can
from corral.engine.controller import Controller
from corral.engine.delivery.releases import release_rows
from corral.engine.delivery.rollback import RollbackRequest
from corral.engine.observe import ledger as engine_ledger
from corral.engine.observe.dora import dora_report
from corral.engine.observe.logview import line_view, log_query
from corral.errors import AccessDenied, CorralError
from corral.ports.ledger import EventFilter

STATIC = Path(__file__).parent / "static"
POLL = 0.2  # seconds between two looks at the status for live updates (goal: shown in 1 s)
KEEPALIVE = 15.0  # a comment on an idle event stream, so a gone browser is noticed
SESSION_SECONDS = 12 * 3600
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
                               "img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
    "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}
_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}


def _html(request: Request, title: str, body: str, here: str, status: int = 200) -> Answer:
    text = pages.page(title, body, here=here, actor=request.actor, role=request.role)
    return Answer(text.encode(), status=status, headers=_SECURITY_HEADERS)


# -- signing in --------------------------------------------------------------------
@route("GET", "/ui/signin", role=ANYONE, raw=True)
def signin_form(controller: Controller, request: Request) -> Answer:
    text = pages.page("Sign in", pages.signin(None), here="", actor=None, role=None)
    return Answer(text.encode(), headers=_SECURITY_HEADERS)


@route("POST", "/ui/signin", role=ANYONE, raw=True, form=True)
def signin(controller: Controller, request: Request) -> Answer:
    """Check the token as any API call would (failures count against the address), then
    keep it in the session cookie."""
    if request.gate is None:
        raise CorralError("the dashboard is served on the TCP listener only",
                          hint="corral up --listen 127.0.0.1:PORT")
    try:
        request.gate.authenticate(request.body.get("token", "").strip(), request.address)
    except AccessDenied as exc:
        text = pages.page("Sign in", pages.signin(exc.message), here="", actor=None, role=None)
        return Answer(text.encode(), status=exc.status, headers=_SECURITY_HEADERS)
    cookie = (f"{SESSION_COOKIE}={quote(request.body['token'].strip())}; Path=/; HttpOnly; "
              f"SameSite=Strict; Max-Age={SESSION_SECONDS}" + ("; Secure" if request.secure
                                                               else ""))
    return Answer(status=303, headers={"Location": "/", "Set-Cookie": cookie})


@route("POST", "/ui/signout", role=ANYONE, raw=True, form=True)
def signout(controller: Controller, request: Request) -> Answer:
    return Answer(status=303, headers={
        "Location": "/ui/signin",
        "Set-Cookie": f"{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"})


@route("GET", "/ui/static/{name}", role=ANYONE, raw=True)
def static(controller: Controller, request: Request) -> Answer:
    """The pinned assets only (named with their version, so browsers may keep them)."""
    name = request.params["name"]
    if name not in pages.ASSETS:
        return Answer(b"not found", "text/plain", status=404)
    return Answer((STATIC / name).read_bytes(), _TYPES[Path(name).suffix],
                  headers={"Cache-Control": "public, max-age=86400"})


# -- services, live ------------------------------------------------------------------
class _SharedView:
    """The services fragment made at most once per POLL for every open page with the same
    rights, however many pages are open (each has its own event-stream thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._made: dict[tuple[int, bool], tuple[float, str]] = {}

    def html(self, controller: Controller, role: str) -> str:
        key = (id(controller), can(role, "deployer"))
        with self._lock:
            at, text = self._made.get(key, (-POLL, ""))
            if time.monotonic() - at >= POLL:
                text = services_html(controller, role)
                self._made[key] = (time.monotonic(), text)
            return text


_shared = _SharedView()


def services_html(controller: Controller, role: str) -> str:
    status = controller.status()
    steps = {}
    for service in status["services"]:
        deployment = service.get("last_deployment")
        if deployment is not None:
            rows = controller.ws.store.list_steps(deployment["id"])[-12:]
            steps[service["name"]] = [{"kind": s.kind, "detail": s.detail, "at": s.at}
                                      for s in rows]
    return pages.services_fragment(status, steps, can(role, "deployer"), time.time())


@route("GET", "/", role="viewer", raw=True)
def services(controller: Controller, request: Request) -> Answer:
    return _html(request, "Services", pages.services_page(services_html(controller,
                                                                        request.role)), "/")


@route("GET", "/ui/events", role="viewer", events=True)
def events(controller: Controller, request: Request) -> None:
    """The services fragment each time it changes, as the event "services"."""
    last, quiet_since = None, time.monotonic()
    while _is_open(controller, request):
        html = _shared.html(controller, request.role)
        if html != last:
            request.emit({"event": "services", "data": html})
            last, quiet_since = html, time.monotonic()
        elif time.monotonic() - quiet_since > KEEPALIVE:
            request.emit({"comment": "keepalive"})
            quiet_since = time.monotonic()
        controller.stopping.wait(POLL)


def _is_open(controller: Controller, request: Request) -> bool:
    """An event stream goes on while its page is open, its token holds (a revoked or
    expired one ends it) and the controller runs."""
    return not request.is_gone() and request.is_allowed() and not controller.stopping.is_set()


# -- actions (deployer) --------------------------------------------------------------
def _flash(message: str, ok: bool) -> Answer:
    return Answer(pages.flash(message, ok).encode(), headers=_SECURITY_HEADERS)


@route("POST", "/ui/services/{service}/promote", role="deployer", raw=True, form=True)
def promote(controller: Controller, request: Request) -> Answer:
    return _signal(controller, request, "promote")


@route("POST", "/ui/services/{service}/abort", role="deployer", raw=True, form=True)
def abort(controller: Controller, request: Request) -> Answer:
    return _signal(controller, request, "abort")


def _signal(controller: Controller, request: Request, what: str) -> Answer:
    service = request.params["service"]
    try:
        number = controller.deployer.signal(service, what, request.actor)
    except CorralError as exc:
        return _flash(exc.message, ok=False)
    return _flash(f"{what} of {service} requested (deployment #{number})", ok=True)


@route("POST", "/ui/services/{service}/rollback", role="deployer", raw=True, form=True)
def rollback(controller: Controller, request: Request) -> Answer:
    """Roll back and answer once it ended (a warm fleet: one router update)."""
    service = request.params["service"]
    results: list[dict[str, Any]] = []

    def keep(event: dict[str, Any]) -> None:
        if event.get("type") == "result":
            results.append(event)

    try:
        controller.rollback.run(RollbackRequest(service, request.actor), keep)
    except CorralError as exc:
        return _flash(f"rollback of {service}: {exc.message}", ok=False)
    outcome = results[-1].get("outcome", "ended") if results else "ended"
    return _flash(f"rollback of {service}: {outcome}", ok=outcome == "succeeded")


# -- releases, ledger, DORA, logs --------------------------------------------------------
@route("GET", "/ui/services/{service}", role="viewer", raw=True)
def releases(controller: Controller, request: Request) -> Answer:
    service = request.params["service"]
    starts = controller.ws.store.find_events(EventFilter(service=service,
                                                         action="deployment.start"))
    deployers = {int(e.detail["to"]): e.actor for e in starts if "to" in e.detail}
    return _html(request, service, pages.releases_page(
        service, release_rows(controller.ws, service), deployers), "/")


@route("GET", "/ui/ledger", role="viewer", raw=True)
def ledger(controller: Controller, request: Request) -> Answer:
    store = controller.ws.store
    entries = [engine_ledger.entry_view(e) for e in engine_ledger.entries(
        store, EventFilter(limit=query_int(request.query, "limit", 200)))]
    verdict = engine_ledger.verdict_view(engine_ledger.verify(store))
    return _html(request, "Ledger", pages.ledger_page(entries, verdict), "/ui/ledger")


@route("GET", "/ui/dora", role="viewer", raw=True)
def dora(controller: Controller, request: Request) -> Answer:
    now, day = time.time(), 86400.0
    store = controller.ws.store
    report = dora_report(store, since=now - 30 * day, until=now)
    days = []
    for n in range(13, -1, -1):
        start = now - (n + 1) * day
        one = dora_report(store, since=start, until=start + day)
        failure = one["change_failure_rate"]
        days.append((time.strftime("%m-%d", time.localtime(start + day)),
                     one["deployment_frequency"]["deployments"], failure["failed"]))
    return _html(request, "DORA", pages.dora_page(report, days), "/ui/dora")


def _log_filters(request: Request) -> dict[str, str]:
    return {k: request.query[k] for k in ("service", "release", "instance")
            if request.query.get(k)}


@route("GET", "/ui/logs", role="viewer", raw=True)
def logs(controller: Controller, request: Request) -> Answer:
    filters = _log_filters(request)
    query = log_query(filters.get("service"), release=filters.get("release"),
                      instance=filters.get("instance"), limit=200)
    lines = [line_view(line) for line in controller.telemetry.logs.query(query)]
    follow = None
    if request.query.get("follow"):
        after = max([line["id"] for line in lines], default=0)
        follow = f"/ui/logs/events?{urlencode({**filters, 'after': after})}"
    return _html(request, "Logs", pages.logs_page(
        filters, sorted(controller.ws.store.services()), lines, follow), "/ui/logs")


@route("GET", "/ui/logs/events", role="viewer", events=True)
def follow_logs(controller: Controller, request: Request) -> None:
    """New lines matching the filters, as events "line", from the id `after` on."""
    filters = _log_filters(request)
    query = log_query(filters.get("service"), release=filters.get("release"),
                      instance=filters.get("instance"), limit=500)
    after, quiet_since = query_int(request.query, "after", 0), time.monotonic()
    while _is_open(controller, request):
        lines = controller.telemetry.logs.query(dataclasses.replace(query, after_id=after))
        if lines:
            request.emit({"event": "line", "data": "".join(
                pages.log_line(line_view(line)) for line in lines)})
            after, quiet_since = lines[-1].id, time.monotonic()
        elif time.monotonic() - quiet_since > KEEPALIVE:
            request.emit({"comment": "keepalive"})
            quiet_since = time.monotonic()
        controller.stopping.wait(POLL * 2)
