"""A deploy lock's holder kind is read from the holder names corral writes (delivery/locks.py),
and a deployment waits out only a background loop's brief hold."""

from __future__ import annotations

import pytest

from corral.engine.delivery.locks import (
    WARM_KEEPER,
    HolderKind,
    deployment_holder,
    holder_kind,
    reconciler_holder,
    resumed_holder,
    rollback_holder,
)
from corral.stores.rules import describe_lock_holder


@pytest.mark.parametrize(("holder", "kind"), [
    (deployment_holder("alice", "web", "v3", "a1b2c3"), HolderKind.DEPLOYMENT),
    (deployment_holder("ci bot, on behalf of bob", "web-api", "v12", "00ff00"),
     HolderKind.DEPLOYMENT),
    (resumed_holder(7), HolderKind.DEPLOYMENT),
    (rollback_holder("alice", "web", 2, "a1b2c3"), HolderKind.ROLLBACK),
    (reconciler_holder(4242), HolderKind.RECONCILER),
    (WARM_KEEPER, HolderKind.WARM_KEEPER),
    ("someone else", HolderKind.OTHER),
    ("rolling deployer", HolderKind.OTHER),  # words alone make no kind
])
def test_the_kind_of_a_holder_is_read_from_its_name_and_from_a_refusal(
        holder: str, kind: HolderKind) -> None:
    assert holder_kind(holder) is kind
    assert holder_kind(describe_lock_holder(holder, 1_800_000_000.0)) is kind


def test_only_background_loops_hold_the_lock_briefly() -> None:
    assert {k for k in HolderKind if k.is_brief} == {HolderKind.RECONCILER,
                                                     HolderKind.WARM_KEEPER}
