"""The contract suites' shared fixture: every store port is run on both stores."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.ports.store import Store
from corral.stores import MemoryStore, SqlStore


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """The in-memory fake and the SQLite store; suites of other ports name their own."""
    made: Store = (MemoryStore() if request.param == "memory"
                   else SqlStore(f"sqlite:///{tmp_path / '.corral' / 'state.db'}"))
    yield made
    made.close()
