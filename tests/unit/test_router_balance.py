"""Smooth weighted round-robin, as the builtin router picks backends."""

from __future__ import annotations

from collections import Counter

from corral.routers.builtin.balance import SmoothWeighted


def picks(sw: SmoothWeighted, candidates: list[tuple[str, int]], n: int) -> list[str | None]:
    return [sw.pick(candidates) for _ in range(n)]


def test_heavy_backends_are_spread_out_not_bunched() -> None:
    assert "".join(p or "" for p in picks(SmoothWeighted(), [("a", 5), ("b", 1), ("c", 1)],
                                          7)) == "aabacaa"


def test_picks_follow_the_weights_exactly_over_a_full_cycle() -> None:
    counts = Counter(picks(SmoothWeighted(), [("a", 3), ("b", 1)], 400))
    assert counts == {"a": 300, "b": 100}


def test_a_backend_with_weight_zero_is_never_picked() -> None:
    assert set(picks(SmoothWeighted(), [("a", 0), ("b", 2)], 20)) == {"b"}


def test_no_candidate_with_weight_gives_none() -> None:
    assert SmoothWeighted().pick([("a", 0)]) is None
    assert SmoothWeighted().pick([]) is None


def test_an_excluded_backend_does_not_stall_the_others() -> None:
    sw = SmoothWeighted()
    picks(sw, [("a", 1), ("b", 1)], 3)
    assert set(picks(sw, [("b", 1)], 3)) == {"b"}
    assert Counter(picks(sw, [("a", 1), ("b", 1)], 100)) == {"a": 50, "b": 50}

