"""Capacity admission as tables: a strategy's peak from declared limits, and whether the
machine holds it. No processes, no machine: its numbers are given."""

from __future__ import annotations

import pytest

from corral.core.capacity import Admission, Footprint, limits_of, peak_footprint, refusal
from corral.ports.records import Capacity, Limits
from corral.spec.model import ServiceSpec

G = 1 << 30
HALF = Limits(memory=G // 2, cpus=0.5)
MACHINE = Capacity(memory=8 * G, memory_available=7 * G, cpus=4.0)


@pytest.mark.parametrize(("strategy", "replicas", "live", "surge", "memory", "cpus"), [
    ("rolling", 4, 4, 1, 5 * G // 2, 2.5),  # 4 + 1 surge
    ("rolling", 4, 0, 1, 2 * G, 2.0),  # a first release: its fleet only
    ("rolling", 4, 2, 2, 3 * G, 3.0),  # scaling up: max(2, 4) + 2
    ("blue-green", 4, 4, 1, 4 * G, 4.0),  # a whole fleet beside the old one
    ("canary", 4, 4, 1, 4 * G, 4.0),  # the canary grows to a whole fleet beside stable
])
def test_the_peak_of_each_strategy(strategy: str, replicas: int, live: int, surge: int,
                                   memory: int, cpus: float) -> None:
    assert peak_footprint(strategy, replicas, HALF, live, HALF, surge) == Footprint(memory, cpus)


def test_a_rolling_peak_counts_each_instance_at_the_larger_of_old_and_new() -> None:
    bigger = Limits(memory=G, cpus=0.25)
    assert peak_footprint("rolling", 2, bigger, 2, HALF, 1) == Footprint(3 * G, 1.5)


def test_memory_max_counts_when_memory_is_not_declared() -> None:
    assert Footprint.of(Limits(memory_max=G), 3) == Footprint(3 * G, 0.0)


NOTHING = Footprint()


def ask(peak: Footprint, starting: Footprint | None = None, others: Footprint = NOTHING,
        reserve: Footprint = NOTHING) -> str | None:
    return refusal(Admission("web", "blue-green", peak, starting or peak, others, MACHINE,
                             reserve))


def test_a_deployment_that_fits_is_admitted() -> None:
    assert ask(Footprint(6 * G, 3.0), Footprint(3 * G, 1.5), Footprint(G, 0.5), Footprint(G)) \
        is None


def test_a_peak_beyond_the_machine_is_refused_with_the_numbers() -> None:
    said = ask(Footprint(6 * G), Footprint(3 * G), others=Footprint(2 * G), reserve=Footprint(G))
    assert said == ("web's blue-green deployment needs memory 6G at its peak, beside 2G "
                    "reserved by other services and 1G kept for the system: 9G in all, more "
                    "than the machine's 8G")


def test_new_instances_need_memory_that_is_free_now() -> None:
    said = ask(Footprint(7 * G), Footprint(7 * G), reserve=Footprint(G // 2))
    assert said is not None and "only 6.5G is free now" in said


def test_cores_are_counted_like_memory() -> None:
    said = ask(Footprint(G, 3.5), others=Footprint(0, 0.5), reserve=Footprint(0, 0.5))
    assert said is not None and "4.5 in all, more than the machine's 4" in said


def test_limits_come_from_the_service_resources() -> None:
    service = ServiceSpec.model_validate({"image": "web", "resources": {
        "memory": "256M", "memory_max": "384M", "cpus": 0.5, "pids": 64}})
    assert limits_of(service) == Limits(256 << 20, 384 << 20, 0.5, 64)
    assert limits_of(ServiceSpec.model_validate({"image": "web"})).is_empty
