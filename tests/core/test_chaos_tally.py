"""Chaos arithmetic (core/chaos.py): each kill's window of requests and failures, as tables."""

from __future__ import annotations

from typing import Any

import pytest

from corral.core.chaos import count_between, is_failure, tally_requests

RECORDS = [(1.0, 200), (2.0, 0), (2.5, 502), (3.0, 301), (4.0, 200), (6.0, 503)]


@pytest.mark.parametrize(("status", "failed"), [
    (0, True), (199, True), (200, False), (204, False), (302, False), (399, False),
    (400, True), (404, True), (502, True)])
def test_a_request_fails_without_an_answer_or_with_an_answer_outside_2xx_and_3xx(
        status: int, failed: bool) -> None:
    assert is_failure(status) is failed


@pytest.mark.parametrize(("start", "end", "counts"), [
    (0.0, 10.0, (6, 3)), (2.0, 3.0, (2, 2)), (3.0, 6.0, (2, 0)), (6.0, 6.0, (0, 0)),
    (6.0, 6.5, (1, 1))])
def test_a_window_counts_the_answers_from_its_start_up_to_but_not_at_its_end(
        start: float, end: float, counts: tuple[int, int]) -> None:
    assert count_between(RECORDS, start, end) == counts


@pytest.mark.parametrize(("kills", "end", "per_kill"), [
    ([{"at": 2.0}], 10.0, [(5, 3)]),
    ([{"at": 2.0}, {"at": 4.0}], 10.0, [(3, 2), (2, 1)]),
    ([{"at": 2.0}, {"at": None}], 5.0, [(4, 2), (None, None)]),
    ([{"at": None}, {"at": 3.0}], 7.0, [(None, None), (3, 1)]),
    ([], 10.0, []),
])
def test_each_kill_counts_until_the_next_kill_and_the_last_until_the_end(
        kills: list[dict[str, Any]], end: float, per_kill: list[tuple[Any, Any]]) -> None:
    tally = tally_requests(kills, RECORDS, end)
    assert [(k.get("requests"), k.get("failed_requests")) for k in tally["kills"]] == per_kill
    assert tally["requests"] == 6 and tally["failed_requests"] == 3
    assert tally["failed_statuses"] == {"0": 1, "502": 1, "503": 1}


def test_the_kills_passed_in_are_left_as_they_were() -> None:
    kills = [{"n": 1, "at": 2.0}]
    tally_requests(kills, RECORDS, 10.0)
    assert kills == [{"n": 1, "at": 2.0}]
