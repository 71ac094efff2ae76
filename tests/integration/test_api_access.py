"""The API over real TCP (TLS) with real tokens: every route declares its role, and every
route refuses what its role does not let in, with a JSON error and before any handler runs.

The server, its route table, the gate, the token book (a real file) and TLS are the real
ones; the controller behind them is a stand-in with the few methods the allowed calls
reach, recording what it was asked (so a refused call is proved to have reached nothing).
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from corral.api.routes import ANYONE, Route, all_routes
from corral.api.server import MAX_BODY, Lifecycle, TcpApiServer, tls_context
from corral.core.access import ROLES, SIGNED, FailureWindow
from corral.engine.access.gate import Gate
from corral.engine.access.tokens import TokenBook
from corral.ports.ledger import EventFilter
from corral.stores.memory import MemoryStore
from loopback import self_signed

pytestmark = pytest.mark.integration

# The only routes a caller reaches before signing in: the dashboard's door and its files.
PUBLIC = {("GET", "/ui/signin"), ("POST", "/ui/signin"), ("POST", "/ui/signout"),
          ("GET", "/ui/static/{name}")}
# The only routes whose caller proves itself by an HMAC signature of the body, not a token.
SIGNED_ROUTES = {("POST", "/v1/pipeline/push")}
PUSH_SECRET = b"push-secret"


class _Pushes:
    """The controller's push queue as the route sees it: the secret, the branch, and what
    it was asked."""

    def __init__(self) -> None:
        self.secret, self.branch, self.received = PUSH_SECRET, "main", 0

    def push_received(self) -> None:
        self.received += 1


class _Rollback:
    def __init__(self) -> None:
        self.asked: list[Any] = []

    def run(self, request: Any, emit: Any) -> None:
        self.asked.append(request)
        emit({"type": "result", "outcome": "succeeded"})


class _Controller(SimpleNamespace):
    def status(self, service: str | None = None) -> dict[str, Any]:
        return {"services": []}

    def crash(self) -> None:
        raise RuntimeError("secret detail /etc/shadow")


class Api:
    """A TLS API server on a free loopback port, and raw requests to it."""

    def __init__(self, folder: Path, limit: int) -> None:
        self.store = MemoryStore()
        self.tokens = TokenBook(folder)
        self.controller = _Controller(rollback=_Rollback(), stopping=threading.Event(),
                                      ws=SimpleNamespace(store=self.store, tokens=self.tokens),
                                      pushes=_Pushes())
        cert, key = self_signed(folder)
        gate = Gate(self.tokens, self.store, time.time, FailureWindow(limit, 60.0))
        self.server = TcpApiServer("127.0.0.1", 0, self.controller,  # type: ignore[arg-type]
                                   gate, Lifecycle(), tls_context(cert, key))
        self.context = ssl.create_default_context(cafile=str(cert))
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def token(self, name: str, role: str, ttl: float | None = None) -> str:
        return self.tokens.create(name, role, time.time(), ttl)

    def call(self, method: str, path: str, token: str | None = None, body: Any = None,
             headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
        connection = http.client.HTTPSConnection("127.0.0.1", self.server.port, timeout=10,
                                                 context=self.context)
        try:
            sent = dict(headers or {})
            if token is not None:
                sent["Authorization"] = f"Bearer {token}"
            data = None if body is None else json.dumps(body).encode()
            connection.request(method, path, body=data, headers=sent)
            response = connection.getresponse()
            raw = response.read()
            kind = response.getheader("Content-Type", "")
            return response.status, json.loads(raw) if kind == "application/json" else {}
        finally:
            connection.close()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=30)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    served = Api(tmp_path_factory.mktemp("api"), limit=100_000)
    try:
        yield served
    finally:
        served.close()


@pytest.fixture(scope="module")
def tokens(api: Api) -> dict[str, str]:
    """A token of each kind the refusals need, made once."""
    made = {role: api.token(f"walk-{role}", role) for role in ROLES}
    made["expired"] = api.tokens.create("walk-expired", "admin", time.time() - 60, ttl=30)
    made["revoked"] = api.token("walk-revoked", "admin")
    api.tokens.revoke("walk-revoked", time.time())
    made["bad"] = "corral_" + "x" * 43
    return made


def _concrete(route: Route) -> str:
    return re.sub(r"\{\w+\}", "x", route.path)


def test_every_route_declares_a_known_role_and_only_the_dashboards_door_is_open() -> None:
    routes = all_routes()
    assert len(routes) >= 20
    assert all(r.role in (*ROLES, ANYONE, SIGNED) for r in routes)
    assert {(r.method, r.path) for r in routes if r.role == ANYONE} == PUBLIC
    assert {(r.method, r.path) for r in routes if r.role == SIGNED} == SIGNED_ROUTES
    mutating = [r for r in routes if r.is_mutating
                and (r.method, r.path) not in PUBLIC | SIGNED_ROUTES]
    assert mutating and all(r.role in ("deployer", "admin") for r in mutating)
    assert {r.path for r in routes if r.role == "admin"} >= {
        "/v1/tokens", "/v1/tokens/{name}/revoke", "/v1/chaos", "/v1/shutdown"}


@pytest.mark.parametrize("kind", ["none", "bad", "expired", "revoked", "viewer"])
def test_every_mutating_route_refuses_a_caller_without_the_role_with_a_json_error(
        api: Api, tokens: dict[str, str], kind: str) -> None:
    token = None if kind == "none" else tokens[kind]
    expected = 403 if kind == "viewer" else 401
    refused = []
    for route in all_routes():
        if not route.is_mutating or route.role in (ANYONE, SIGNED):
            continue
        status, answer = api.call(route.method, _concrete(route), token, body={})
        refused.append((route.path, status, answer.get("error", {}).get("type")))
    assert refused and all(r[1:] == (expected, "AccessDenied") for r in refused), refused
    assert api.controller.rollback.asked == []


def test_every_reading_route_refuses_a_caller_without_a_valid_token(
        api: Api, tokens: dict[str, str]) -> None:
    for route in all_routes():
        if route.is_mutating or route.role in (ANYONE, SIGNED):
            continue
        for token in (None, tokens["bad"], tokens["expired"], tokens["revoked"]):
            status, answer = api.call("GET", _concrete(route), token)
            if route.path.startswith("/ui/") or route.path == "/":
                assert status == 303, route.path  # a page sends the browser to sign in
            else:
                assert (status, answer["error"]["type"]) == (401, "AccessDenied"), route.path


def test_admin_routes_refuse_a_deployer(api: Api, tokens: dict[str, str]) -> None:
    for route in all_routes():
        if route.role == "admin":
            status, answer = api.call(route.method, _concrete(route), tokens["deployer"],
                                      body={} if route.is_mutating else None)
            assert (status, answer["error"]["type"]) == (403, "AccessDenied"), route.path


def test_the_actor_is_the_tokens_name_and_a_role_reaches_what_it_may(
        api: Api, tokens: dict[str, str]) -> None:
    assert api.call("GET", "/v1/status", tokens["viewer"]) == (200, {"services": []})
    status, _ = api.call("POST", "/v1/rollback", tokens["deployer"], body={"service": "web"})
    assert status == 200
    assert api.controller.rollback.asked[-1].actor == "walk-deployer"
    status, answer = api.call("POST", "/v1/rollback", tokens["deployer"],
                              body={"service": "web", "actor": "someone-else"})
    assert (status, answer["error"]["field"]) == (400, "actor")


def test_an_admin_makes_a_token_that_works_at_once_and_is_kept_only_as_a_hash(
        api: Api, tokens: dict[str, str]) -> None:
    status, made = api.call("POST", "/v1/tokens", tokens["admin"],
                            body={"name": "ci", "role": "deployer", "expires": 3600})
    assert status == 200 and made["token"].startswith("corral_")
    assert made["token"] not in api.tokens.path.read_text()
    assert api.tokens.path.stat().st_mode & 0o777 == 0o600
    assert api.call("GET", "/v1/ping", made["token"])[0] == 200
    listed = api.call("GET", "/v1/tokens", tokens["admin"])[1]["tokens"]
    assert {"name": "ci", "role": "deployer", "state": "valid"}.items() <= next(
        t for t in listed if t["name"] == "ci").items()
    assert all("digest" not in t and "token" not in t for t in listed)
    assert api.call("POST", "/v1/tokens/ci/revoke", tokens["admin"], body={})[0] == 200
    assert api.call("GET", "/v1/ping", made["token"])[0] == 401
    actions = [e.action for e in api.store.find_events(EventFilter(actor="walk-admin"))]
    assert actions[-2:] == ["token.create", "token.revoke"]


def test_a_browser_form_from_elsewhere_cannot_use_the_sign_in_cookie(
        api: Api, tokens: dict[str, str]) -> None:
    cookie = {"Cookie": f"corral_token={tokens['admin']}"}
    status, answer = api.call("POST", "/v1/rollback", body={"service": "web"}, headers=cookie)
    assert (status, answer["error"]["type"]) == (403, "AccessDenied")
    assert api.call("GET", "/v1/status", headers=cookie)[0] == 200
    status, _ = api.call("POST", "/v1/rollback", body={"service": "web"},
                         headers={**cookie, "HX-Request": "true"})
    assert status == 200


def test_a_body_over_the_limit_is_refused_unread_and_limits_answer_in_json(
        api: Api, tokens: dict[str, str]) -> None:
    raw = socket.create_connection(("127.0.0.1", api.server.port), timeout=10)
    with api.context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        tls.sendall(f"POST /v1/rollback HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                    f"{tokens['deployer']}\r\nContent-Length: {50 << 20}\r\n\r\n".encode())
        head = b""
        while chunk := tls.recv(65536):  # answered, and closed, with no body byte sent
            head += chunk
        head = head.decode()
    assert head.startswith("HTTP/1.1 413") and f"at most {MAX_BODY}" in head
    status, answer = api.call("GET", "/v1/status", tokens["viewer"],
                              headers={f"X-Pad-{n}": "y" * 1000 for n in range(20)})
    assert (status, answer["error"]["type"]) == (431, "BadRequest")
    status, answer = api.call("PUT", "/v1/status", tokens["viewer"])
    assert status == 501 and "error" in answer
    status, answer = api.call("POST", "/v1/tokens", tokens["admin"],
                              body={"name": "x", "role": "root"})
    assert (status, answer["error"]["field"]) == (400, "role")
    assert "TypeError" not in json.dumps(answer)


def test_an_unexpected_error_reaches_the_client_as_an_id_never_its_text(
        api: Api, tokens: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api.controller, "status", lambda service: api.controller.crash())
    status, answer = api.call("GET", "/v1/status", tokens["viewer"])
    assert status == 500 and answer["error"]["type"] == "InternalError"
    assert re.search(r"error id [0-9a-f]{8}", answer["error"]["message"])
    assert "secret" not in json.dumps(answer) and "Traceback" not in json.dumps(answer)


def test_an_address_that_keeps_failing_is_refused_even_a_right_token_and_recorded(
        tmp_path: Path) -> None:
    api = Api(tmp_path, limit=3)
    try:
        good = api.token("ops", "viewer")
        for _ in range(3):
            assert api.call("GET", "/v1/status", "corral_wrong")[0] == 401
        status, answer = api.call("GET", "/v1/status", good)
        assert (status, answer["error"]["type"]) == (429, "AccessDenied")
        failures = api.store.find_events(EventFilter(action="api.auth_failed"))
        assert [e.subject for e in failures] == ["127.0.0.1"] * 3
        assert api.call("GET", "/v1/status", "corral_wrong")[0] == 429
        assert len(api.store.find_events(EventFilter(action="api.auth_failed"))) == 3
    finally:
        api.close()


def test_an_event_stream_ends_once_its_token_is_revoked(api: Api) -> None:
    token = api.token("watcher", "viewer")
    raw = socket.create_connection(("127.0.0.1", api.server.port), timeout=30)
    with api.context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        tls.sendall(f"GET /ui/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}"
                    "\r\n\r\n".encode())
        received = b""
        while b"event: services" not in received:  # the page's first view
            chunk = tls.recv(65536)
            assert chunk, received
            received += chunk
        assert received.startswith(b"HTTP/1.1 200") and b"text/event-stream" in received
        api.tokens.revoke("watcher", time.time())
        while chunk := tls.recv(65536):  # the server ends the stream (EOF), unasked
            received += chunk


def _signature(body: bytes, secret: bytes) -> dict[str, str]:
    return {"X-Hub-Signature-256": "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()}


def test_a_push_without_its_signature_is_refused_whatever_token_and_recorded(
        tmp_path: Path) -> None:
    api = Api(tmp_path, limit=100)
    try:
        admin = api.token("ops", "admin")
        body = {"ref": "refs/heads/main"}
        raw = json.dumps(body).encode()
        for token, headers in [(None, {}), (admin, {}), (None, _signature(raw, b"wrong")),
                               (admin, _signature(raw + b" ", PUSH_SECRET))]:
            status, answer = api.call("POST", "/v1/pipeline/push", token, body=body,
                                      headers=headers)
            assert (status, answer["error"]["type"]) == (401, "AccessDenied"), token
            assert "CORRAL_WEBHOOK_SECRET" in answer["error"]["hint"]
        assert api.controller.pushes.received == 0  # no refused push reached the queue
        failures = api.store.find_events(EventFilter(action="api.auth_failed"))
        assert [(e.subject, e.detail["reason"]) for e in failures] == [
            ("127.0.0.1", "no valid push signature")] * 4
        status, answer = api.call("POST", "/v1/pipeline/push", body=body,
                                  headers=_signature(raw, PUSH_SECRET))
        assert (status, answer) == (200, {"queued": True, "branch": "main"})
        other = json.dumps({"ref": "refs/heads/topic", "commits": []}).encode()
        status, answer = api.call("POST", "/v1/pipeline/push", body=json.loads(other),
                                  headers=_signature(other, PUSH_SECRET))
        assert status == 200 and answer["queued"] is False and "topic" in answer["reason"]
        assert api.controller.pushes.received == 1
    finally:
        api.close()
