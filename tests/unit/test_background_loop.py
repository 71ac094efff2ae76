"""The controller's background loop and its timers: steps run on the period of the timer
they wait on, a failing step never ends the loop, and `wake` and `stop` act at once. Time is
a FakeTimer: the tests wait for passes (polling with a deadline), never for time."""

from __future__ import annotations

import threading

from corral.engine.loop import BackgroundLoop, FakeTimer
from loopback import poll


def test_a_step_runs_when_virtual_time_reaches_its_period_and_not_before() -> None:
    clock = FakeTimer(start=1000.0)
    ran_at: list[float] = []

    def step() -> None:
        ran_at.append(clock())

    loop = BackgroundLoop("test", step, 5.0, timer=clock)
    loop.start()
    try:
        clock.advance(2.0)
        clock.advance(2.0)  # 4 s: not yet
        clock.advance(1.0)
        poll(lambda: ran_at)
        clock.advance(5.0)
        poll(lambda: len(ran_at) == 2)
    finally:
        loop.stop()
    assert ran_at == [1005.0, 1010.0]  # a run at 1004 would have made the next one 1009


def test_a_step_that_raises_is_logged_and_the_loop_goes_on(caplog) -> None:  # type: ignore[no-untyped-def]
    calls: list[int] = []

    def step() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a bad pass")

    loop = BackgroundLoop("test", step, 0.01, what="test sweep", immediately=True)
    loop.start()
    try:
        poll(lambda: len(calls) >= 2)
    finally:
        loop.stop()
    assert "test sweep failed" in caplog.text and "a bad pass" in caplog.text


def test_a_step_may_ask_for_its_next_wait() -> None:
    clock = FakeTimer(start=0.0)
    ran_at: list[float] = []

    def step() -> float:
        ran_at.append(clock())
        return 1.0

    loop = BackgroundLoop("test", step, 60.0, timer=clock, immediately=True)
    loop.start()
    try:
        poll(lambda: ran_at)
        clock.advance(1.0)
        poll(lambda: len(ran_at) == 2)
    finally:
        loop.stop()
    assert ran_at == [0.0, 1.0]


def test_wake_runs_the_step_at_once_and_stop_ends_a_loop_waiting_on_frozen_time() -> None:
    clock = FakeTimer()
    ran = threading.Event()
    loop = BackgroundLoop("test", ran.set, 3600.0, timer=clock)
    loop.start()
    loop.wake()
    poll(ran.is_set)
    loop.stop(timeout=5.0)
    assert loop.stopping and loop.passes == 1
    assert not loop._thread.is_alive()
