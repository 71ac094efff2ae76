"""The controller's usage sampler on virtual time: each period it reads every instance in
the fleets and adds what it used to the store's hourly tallies. The driver's usage is a
table the test writes (real cgroups: tests/e2e/test_resources_cli.py)."""

from __future__ import annotations

from corral.engine.fleet import Fleets
from corral.engine.loop import FakeTimer
from corral.engine.observe.usage import UsageSampler
from corral.ports.records import Instance, InstanceState, Usage
from corral.stores import MemoryStore
from loopback import poll

M = 1 << 20


def instance(id_: str, created_at: float) -> Instance:
    return Instance(id_, "web", 1, "sha256:d", "127.0.0.1:1", InstanceState.READY, created_at)


def test_each_period_adds_what_every_instance_used_to_its_hour() -> None:
    timer = FakeTimer(start=7190.0)
    store = MemoryStore()
    fleets = Fleets(store, None, timer, "tester")
    fleets.add(instance("a", 7190.0))
    fleets.add(instance("b", 7190.0))
    now: dict[str, Usage] = {"a": Usage(memory=10 * M, cpu_seconds=1.0)}  # b: unmeasurable
    sampler = UsageSampler(store, fleets, now.get, timer, period=60.0, timer=timer)
    sampler.start()
    try:
        timer.advance(60.0)  # 7250
        poll(lambda: store.list_usage(0.0, 1e9))
        now["a"] = Usage(memory=20 * M, cpu_seconds=4.0)
        timer.advance(60.0)  # 7310
        poll(lambda: store.list_usage(0.0, 1e9)[0].samples == 2)
    finally:
        sampler.stop()

    [tallied] = store.list_usage(0.0, 1e9)
    assert (tallied.instance_id, tallied.hour, tallied.seconds) == ("a", 7200.0, 120.0)
    assert tallied.memory_byte_seconds == 60 * 10 * M + 60 * 20 * M
    assert tallied.cpu_seconds == 4.0  # 1 since its creation, then 3 more


def test_an_instance_that_left_the_fleets_is_no_longer_sampled() -> None:
    timer = FakeTimer(start=7200.0)
    store = MemoryStore()
    fleets = Fleets(store, None, timer, "tester")
    fleets.add(instance("a", 7200.0))
    sampler = UsageSampler(store, fleets, lambda _: Usage(memory=M, cpu_seconds=0.0), timer,
                           period=60.0)
    timer.advance(30.0)
    sampler.sample()
    fleets.move("a", InstanceState.STOPPED, "test")
    timer.advance(60.0)
    sampler.sample()

    assert [t.samples for t in store.list_usage(0.0, 1e9)] == [1]
