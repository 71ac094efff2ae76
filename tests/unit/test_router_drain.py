"""Waiting for a backend to drain (routers/drain.py), shared by the builtin and HAProxy
clients: counts are fed from a list, so nothing waits on a live router."""

from __future__ import annotations

from collections.abc import Callable

from corral.routers.drain import wait_drained


def counts(*in_flight: int) -> tuple[Callable[[], dict[str, int]], list[int]]:
    """An `in_flight` that answers each count in turn (the last one for ever), and the
    counts it was asked for."""
    asked: list[int] = []
    left = list(in_flight)

    def read() -> dict[str, int]:
        value = left.pop(0) if len(left) > 1 else left[0]
        asked.append(value)
        return {"127.0.0.1:9001": value, "127.0.0.1:9002": 5}
    return read, asked


def test_a_backend_is_drained_once_its_count_reaches_zero() -> None:
    read, asked = counts(3, 1, 0)
    assert wait_drained(read, "127.0.0.1:9001", 60.0, interval=0.0) is True
    assert asked == [3, 1, 0]


def test_a_backend_the_router_does_not_count_is_drained() -> None:
    read, asked = counts(3)
    assert wait_drained(read, "127.0.0.1:9999", 0.0) is True
    assert asked == [3]


def test_a_zero_deadline_asks_once_and_answers_whether_it_is_drained_now() -> None:
    read, asked = counts(2, 0)
    assert wait_drained(read, "127.0.0.1:9001", 0.0) is False
    assert asked == [2]


def test_another_backends_requests_do_not_hold_the_wait() -> None:
    read, _ = counts(0)
    assert wait_drained(read, "127.0.0.1:9001", 0.0) is True  # :9002 still has 5
