"""The Router port's contract, run on every router: the in-memory fake, builtin and haproxy."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.errors import RouterError
from corral.ports.records import Backend
from corral.ports.router import Router
from corral.routers.builtin import BuiltinRouter
from corral.routers.fake import FakeRouter
from corral.routers.haproxy import HaproxyRouter


def free_listen() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture(params=["fake", pytest.param("builtin", marks=pytest.mark.integration),
                        pytest.param("haproxy", marks=pytest.mark.integration)])
def router(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Router]:
    if request.param == "fake":
        fake = FakeRouter()
        fake.ensure_running()
        yield fake
        return
    if request.param == "haproxy" and shutil.which("haproxy") is None:
        pytest.skip("haproxy is not installed")
    real: BuiltinRouter | HaproxyRouter = (
        BuiltinRouter(tmp_path / "run") if request.param == "builtin"
        else HaproxyRouter(tmp_path / "run"))
    real.ensure_running()
    try:
        yield real
    finally:
        real.stop()


BLUE = [Backend("127.0.0.1:9101", 1, "v1", "web-1-a"),
        Backend("127.0.0.1:9102", 1, "v1", "web-1-b")]
GREEN = [Backend("127.0.0.1:9201", 3, "v2", "web-2-a"),
         Backend("127.0.0.1:9101", 0, "v1", "web-1-a")]


def test_set_backends_then_backends_returns_them(router: Router) -> None:
    router.set_backends("web", free_listen(), BLUE)
    assert sorted(router.backends("web"), key=lambda b: b.address) == BLUE


def test_setting_backends_again_replaces_the_whole_set(router: Router) -> None:
    listen = free_listen()
    router.set_backends("web", listen, BLUE)
    router.set_backends("web", listen, GREEN)
    assert sorted(router.backends("web"), key=lambda b: b.address) == \
        sorted(GREEN, key=lambda b: b.address)


def test_an_empty_backend_set_is_allowed(router: Router) -> None:
    listen = free_listen()
    router.set_backends("web", listen, BLUE)
    router.set_backends("web", listen, [])
    assert router.backends("web") == []


def test_services_keep_separate_backends(router: Router) -> None:
    router.set_backends("web", free_listen(), BLUE)
    router.set_backends("api", free_listen(), GREEN[:1])
    assert router.backends("api") == GREEN[:1]
    assert len(router.backends("web")) == 2


def test_a_removed_service_has_no_backends(router: Router) -> None:
    router.set_backends("web", free_listen(), BLUE)
    router.remove_service("web")
    assert router.backends("web") == []
    assert router.in_flight("web") == {}


def test_removing_an_unknown_service_is_not_an_error(router: Router) -> None:
    router.remove_service("nothing")
    assert router.backends("nothing") == []


def test_a_removed_service_frees_its_listen_address_for_another(router: Router) -> None:
    listen = free_listen()
    router.set_backends("web", listen, BLUE)
    router.remove_service("web")
    router.set_backends("api", listen, GREEN)
    assert len(router.backends("api")) == 2


def test_stats_are_empty_for_a_new_service(router: Router) -> None:
    router.set_backends("web", free_listen(), BLUE)
    assert router.stats("web") == {}
    assert router.stats("unknown") == {}


def test_in_flight_has_a_zero_for_every_backend_of_an_idle_service(router: Router) -> None:
    router.set_backends("web", free_listen(), BLUE)
    assert router.in_flight("web") == {"127.0.0.1:9101": 0, "127.0.0.1:9102": 0}


def test_an_idle_backend_is_drained_at_once(router: Router) -> None:
    router.set_backends("web", free_listen(), BLUE)
    assert router.wait_drained("web", "127.0.0.1:9101", 0.0) is True


def test_two_services_cannot_share_a_listen_address(router: Router) -> None:
    listen = free_listen()
    router.set_backends("web", listen, BLUE)
    with pytest.raises(RouterError, match="already"):
        router.set_backends("api", listen, GREEN)
    assert router.backends("api") == []


def test_ensure_running_twice_is_harmless(router: Router) -> None:
    router.set_backends("web", free_listen(), BLUE)
    router.ensure_running()
    assert len(router.backends("web")) == 2
