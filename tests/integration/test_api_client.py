"""The CLI's controller client (stdlib http.client over a unix socket) against the real API
server: JSON answers, query strings, error objects turned back into CorralErrors, NDJSON
streams read event by event, and an absent controller reported as such.

The controller behind the server is a stand-in with the methods these routes call; the
server, its route table, its body validation, the socket and the client are the real ones."""

from __future__ import annotations

import dataclasses
import json
import os
import pwd
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from corral.api.bodies import ChaosBody, DeployBody, RollbackBody
from corral.api.client import ControllerClient, _UnixConnection
from corral.api.routes import route
from corral.api.server import ApiServer
from corral.engine.delivery.request import DeployRequest
from corral.engine.delivery.rollback import RollbackRequest
from corral.engine.operate.chaos import ChaosRequest
from corral.errors import ControllerError, CorralError, NotFound
from corral.ports.records import DeploymentOutcome, Event
from corral.stores.memory import MemoryStore

pytestmark = pytest.mark.integration


class _Rollback:
    def __init__(self) -> None:
        self.asked: list[Any] = []

    def run(self, request: Any, emit: Any) -> None:
        self.asked.append(request)
        emit({"type": "start", "service": request.service})
        if request.service == "broken":
            raise CorralError("no earlier release", hint="deploy twice first")
        emit({"type": "result", "outcome": "succeeded"})


class _Controller(SimpleNamespace):
    deployed: list[Any]

    def deploy(self, request: Any, emit: Any) -> None:
        self.deployed.append(request)
        emit({"type": "result", "outcome": "succeeded"})

    def status(self, service: str | None) -> dict[str, Any]:
        if service == "ghost":
            raise NotFound("no service 'ghost'", hint="check the name")
        return {"services": [], "asked": service}


@pytest.fixture()
def served(tmp_path: Path) -> Iterator[tuple[ControllerClient, _Controller]]:
    controller = _Controller(rollback=_Rollback(), deployed=[],
                             ws=SimpleNamespace(store=MemoryStore()), stopping=threading.Event())
    socket_path = tmp_path / "controller.sock"
    server = ApiServer(socket_path, controller)  # type: ignore[arg-type]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield ControllerClient(socket_path), controller
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=30)


def test_a_running_controller_is_up_and_answers_json_with_the_query_passed_on(
        served: tuple[ControllerClient, _Controller]) -> None:
    client, _ = served
    assert client.is_up()
    assert client.get("/v1/ping")["ok"] is True
    assert client.get("/v1/status", service="web a&b") == {"services": [], "asked": "web a&b"}
    assert client.get("/v1/status") == {"services": [], "asked": None}


def test_an_error_object_comes_back_as_the_same_corral_error(
        served: tuple[ControllerClient, _Controller]) -> None:
    client, _ = served
    with pytest.raises(NotFound) as raised:
        client.get("/v1/status", service="ghost")
    assert raised.value.message == "no service 'ghost'" and raised.value.hint == "check the name"
    with pytest.raises(NotFound):
        client.post("/v1/no/such/route", {})


def test_a_stream_yields_each_event_and_raises_its_error_event(
        served: tuple[ControllerClient, _Controller]) -> None:
    client, controller = served
    events = list(client.stream("/v1/rollback", {"service": "web"}))
    assert [e["type"] for e in events] == ["start", "result"]
    # the actor is the socket's peer, as the kernel names it: never a body field
    assert controller.rollback.asked[0].actor == f"unix:{pwd.getpwuid(os.getuid()).pw_name}"
    seen = []
    with pytest.raises(CorralError) as raised:
        for event in client.stream("/v1/rollback", {"service": "broken"}):
            seen.append(event["type"])
    assert seen == ["start"]
    assert raised.value.message == "no earlier release"


def test_no_controller_means_not_up_and_a_clear_error(tmp_path: Path) -> None:
    client = ControllerClient(tmp_path / "run" / "controller.sock")
    assert not client.is_up()
    with pytest.raises(ControllerError, match="the controller is not running"):
        client.get("/v1/status")
    with pytest.raises(ControllerError, match="the controller is not running"):
        list(client.stream("/v1/rollback", {"service": "web"}))


_DEPLOY: dict[str, Any] = {
    "service": "web", "image_digest": "sha256:" + "ab" * 32, "config": {"replicas": 2},
    "git_commit": None, "git_commit_time": 1700000000, "force": False,
    "strategy": "canary"}


def _post(client: ControllerClient, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
    connection = _UnixConnection(client.socket_path, 10)
    try:
        connection.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_a_valid_deploy_body_reaches_the_engine_as_its_request(
        served: tuple[ControllerClient, _Controller]) -> None:
    client, controller = served
    events = list(client.stream("/v1/deploy", _DEPLOY))
    assert events == [{"type": "result", "outcome": "succeeded"}]
    assert controller.deployed == [DeployRequest(**{**_DEPLOY, "git_commit_time": 1.7e9},
                                                 actor=f"unix:{pwd.getpwuid(os.getuid()).pw_name}")]


def test_an_actor_in_the_body_is_refused_so_no_client_names_who_acted(
        served: tuple[ControllerClient, _Controller]) -> None:
    client, controller = served
    for path, body in (("/v1/deploy", _DEPLOY), ("/v1/rollback", {"service": "web"})):
        status, answer = _post(client, path, json.dumps({**body, "actor": "someone"}).encode())
        assert (status, answer["error"]["field"]) == (400, "actor")
    assert controller.deployed == [] and controller.rollback.asked == []


@pytest.mark.parametrize(("body", "field", "message"), [
    ({k: v for k, v in _DEPLOY.items() if k != "image_digest"}, "image_digest", "required"),
    ({**_DEPLOY, "replicas": 3}, "replicas", "unknown field"),
    ({**_DEPLOY, "config": "replicas=2"}, "config", "dictionary"),
    ({**_DEPLOY, "force": "yes"}, "force", "boolean"),
    ({**_DEPLOY, "strategy": "big-bang"}, "strategy", "rolling, blue-green, canary"),
])
def test_a_bad_deploy_body_is_a_400_naming_its_field_and_nothing_is_deployed(
        served: tuple[ControllerClient, _Controller], body: dict[str, Any], field: str,
        message: str) -> None:
    client, controller = served
    status, answer = _post(client, "/v1/deploy", json.dumps(body).encode())
    assert status == 400
    assert answer["error"]["type"] == "BadRequest" and answer["error"]["field"] == field
    assert answer["error"]["message"].startswith(f"{field}: ")
    assert message in answer["error"]["message"]
    with pytest.raises(CorralError, match=f"^{field}: "):
        list(client.stream("/v1/deploy", body))
    assert controller.deployed == []


def test_a_body_that_is_not_a_json_object_is_a_400(
        served: tuple[ControllerClient, _Controller]) -> None:
    client, controller = served
    assert _post(client, "/v1/deploy", b"[1, 2]")[0] == 400
    assert _post(client, "/v1/rollback", b"not json")[0] == 400
    status, answer = _post(client, "/v1/rollback", json.dumps({"service": "web", "to": 0}).encode())
    assert (status, answer["error"]["field"]) == (400, "to")
    assert controller.deployed == [] and controller.rollback.asked == []


@pytest.mark.parametrize(("model", "request_type"), [
    (DeployBody, DeployRequest), (RollbackBody, RollbackRequest), (ChaosBody, ChaosRequest)])
def test_each_body_model_has_the_fields_and_defaults_of_the_engine_request_it_becomes(
        model: type[Any], request_type: type[Any]) -> None:
    # every field but the actor, which the server takes from the credentials
    fields = {f.name: f.default for f in dataclasses.fields(request_type) if f.name != "actor"}
    assert set(model.model_fields) == set(fields)
    for name, info in model.model_fields.items():
        if fields[name] is not dataclasses.MISSING:
            assert info.default == fields[name], name


def test_waiting_for_a_deployment_answers_its_outcome_once_ended_or_running_at_the_limit(
        served: tuple[ControllerClient, _Controller]) -> None:
    client, controller = served
    store = controller.ws.store
    event = Event(at=0.0, actor="me", action="deploy", subject="web", detail={})
    for _ in range(2):
        store.create_deployment("web", "canary", 1, 2, 2, 0.0, event)
    store.finish_deployment(1, DeploymentOutcome.ABORTED, 1.0, None, event)
    assert list(client.stream("/v1/deployments/1/wait", {})) == [
        {"type": "result", "deployment": 1, "outcome": "aborted"}]
    assert list(client.stream("/v1/deployments/2/wait", {"timeout": 0.2})) == [
        {"type": "result", "deployment": 2, "outcome": "running"}]
    with pytest.raises(NotFound, match="no deployment #3"):
        list(client.stream("/v1/deployments/3/wait", {}))
    with pytest.raises(NotFound, match="no deployment 'x'"):
        list(client.stream("/v1/deployments/x/wait", {}))
    with pytest.raises(CorralError, match=r"^timeout: "):
        list(client.stream("/v1/deployments/2/wait", {"timeout": -1}))


def test_routes_without_fields_take_only_an_empty_body_and_query_numbers_are_checked(
        served: tuple[ControllerClient, _Controller]) -> None:
    client, _ = served
    status, answer = _post(client, "/v1/services/web/abort", b'{"wait": true}')
    assert (status, answer["error"]["field"]) == (400, "wait")
    with pytest.raises(CorralError, match=r"^limit: must be a whole number, not 'ten'"):
        client.get("/v1/ledger", limit="ten")
    assert client.get("/v1/ledger", limit="5") == {"entries": []}
    status, answer = _post(client, "/v1/shutdown", b'{"keep_instances": "yes"}')
    assert (status, answer["error"]["field"]) == (400, "keep_instances")
    assert client.is_up()


def test_a_post_route_cannot_be_registered_without_its_body_model() -> None:
    with pytest.raises(TypeError, match="name the body model"):
        route("POST", "/v1/anything", role="deployer")
    with pytest.raises(TypeError, match="role 'root' is not one of"):
        route("GET", "/v1/anything", role="root")
