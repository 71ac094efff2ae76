"""The CLI's controller client (stdlib http.client over a unix socket) against the real API
server: JSON answers, query strings, error objects turned back into CorralErrors, NDJSON
streams read event by event, and an absent controller reported as such.

The controller behind the server is a stand-in with the two methods these routes call; the
server, its route table, the socket and the client are the real ones."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from corral.api.client import ControllerClient
from corral.api.server import ApiServer
from corral.errors import ControllerError, CorralError, NotFound

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
    def status(self, service: str | None) -> dict[str, Any]:
        if service == "ghost":
            raise NotFound("no service 'ghost'", hint="check the name")
        return {"services": [], "asked": service}


@pytest.fixture()
def served(tmp_path: Path) -> Iterator[tuple[ControllerClient, _Controller]]:
    controller = _Controller(rollback=_Rollback())
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
    events = list(client.stream("/v1/rollback", {"service": "web", "actor": "me"}))
    assert [e["type"] for e in events] == ["start", "result"]
    assert controller.rollback.asked[0].actor == "me"
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
