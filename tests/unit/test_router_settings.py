"""Router settings: spec keys, their translation for the router, worker stats adding up."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from corral.routers.builtin.services import Timeouts
from corral.routers.builtin.stats import ReleaseCounters, merge_stats_json
from corral.spec.model import RouterSpec, Spec


def spec(**routers: dict[str, Any]) -> dict[str, Any]:
    return {"project": {"name": "shop"},
            "services": {name: {"image": "sha256:" + "a" * 64, "router": router}
                         for name, router in routers.items()}}


def test_all_services_must_use_the_same_router_kind() -> None:
    with pytest.raises(ValidationError, match=r"router\.kind must be the same"):
        Spec.model_validate(spec(web={"listen": "127.0.0.1:8080", "kind": "haproxy"},
                                 api={"listen": "127.0.0.1:8081"}))


def test_all_services_must_ask_for_the_same_number_of_workers() -> None:
    with pytest.raises(ValidationError, match=r"router\.workers"):
        Spec.model_validate(spec(web={"listen": "127.0.0.1:8080", "workers": 2},
                                 api={"listen": "127.0.0.1:8081", "workers": 4}))


def test_a_haproxy_router_with_tls_and_timeouts_is_accepted() -> None:
    loaded = Spec.model_validate(spec(web={
        "listen": "127.0.0.1:8443", "kind": "haproxy", "tls": {"cert": "c.pem", "key": "k.pem"},
        "timeouts": {"request": "2s", "header": "500ms"}}))
    router = loaded.services["web"].router
    assert router is not None and router.tls is not None and router.timeouts is not None
    assert router.timeouts.as_seconds() == {"first_byte": 2.0, "header": 0.5}


def test_an_unknown_router_kind_is_an_error() -> None:
    with pytest.raises(ValidationError):
        RouterSpec.model_validate({"listen": "127.0.0.1:8080", "kind": "nginx"})


def test_router_limits_take_known_keys_and_ignore_unknown_ones() -> None:
    limits = Timeouts.from_json({"first_byte": 2, "max_waiting": 7, "from_the_future": 1})
    assert (limits.first_byte, limits.max_waiting, limits.connect) == (2.0, 7, 3.0)
    assert isinstance(limits.max_waiting, int)


def test_stats_of_several_workers_add_up_bucket_by_bucket() -> None:
    a, b = ReleaseCounters(), ReleaseCounters()
    a.observe(200, 0.001)
    b.observe(500, 0.2)
    b.observe(200, 0.001)
    total = merge_stats_json([{"v1": a.to_json()}, {"v1": b.to_json(), "v2": a.to_json()}])
    assert (total["v1"]["requests"], total["v1"]["errors"]) == (3, 1)
    assert total["v1"]["latency_buckets"][0] == [0.005, 2]
    assert total["v1"]["latency_buckets"][-1] == ["+Inf", 3]
    assert total["v2"]["requests"] == 1
