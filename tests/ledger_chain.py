"""The ledger's hash chain checked entry by entry, for the store contract and SQL store tests."""

from __future__ import annotations

from corral.ports.records import Event
from corral.stores import GENESIS_HASH


def assert_unbroken_chain(entries: list[Event]) -> None:
    assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
    previous = GENESIS_HASH
    for entry in entries:
        assert entry.prev_hash == previous
        assert entry.hash == entry.compute_hash()
        previous = entry.hash
