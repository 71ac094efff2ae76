"""Weighted selection of a backend: smooth weighted round-robin, as nginx does it.

Pure and deterministic: no I/O, no clock, no randomness. The caller says which backends are
candidates for this pick (weight > 0, not already tried); this only remembers the running
"current weight" of each address between picks.
"""

from __future__ import annotations

from collections.abc import Sequence


class SmoothWeighted:
    """Smooth weighted round-robin over (address, weight) candidates.

    Each pick adds every candidate's weight to its current weight, takes the candidate with
    the highest current weight and subtracts the total from it. For weights a=5, b=1, c=1
    the sequence is a a b a c a a: heavy backends are spread out, not bunched.

    >>> sw = SmoothWeighted()
    >>> "".join(sw.pick([("a", 5), ("b", 1), ("c", 1)]) or "" for _ in range(7))
    'aabacaa'
    """

    def __init__(self) -> None:
        self._current: dict[str, int] = {}

    def pick(self, candidates: Sequence[tuple[str, int]]) -> str | None:
        best: str | None = None
        best_current = 0
        total = 0
        for address, weight in candidates:
            if weight <= 0:
                continue
            current = self._current.get(address, 0) + weight
            self._current[address] = current
            total += weight
            if best is None or current > best_current:
                best, best_current = address, current
        if best is not None:
            self._current[best] = best_current - total
        return best

    def forget_except(self, addresses: set[str]) -> None:
        """Drop the state of addresses no longer present, so a returning one starts fresh."""
        for address in [a for a in self._current if a not in addresses]:
            del self._current[address]
