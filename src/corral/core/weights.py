"""Traffic weights: which instances get requests, and how many.

Each ready instance gets an equal weight, so a fleet's share of traffic is exactly its
share of ready capacity (the capacity invariant); instances that are starting, unhealthy
or draining stay known to the router with weight 0 so preview requests and in-flight
requests still reach them.
"""

from __future__ import annotations

from collections.abc import Sequence

from corral.ports.records import Backend, Instance, InstanceState

READY_WEIGHT = 100
_ROUTABLE = (InstanceState.STARTING, InstanceState.READY, InstanceState.UNHEALTHY,
             InstanceState.DRAINING)


def backends_for(instances: Sequence[Instance]) -> list[Backend]:
    """The router's backends for one service's instances.

    >>> from corral.ports.records import Instance as I, InstanceState as S
    >>> a = I("a", "web", 1, "sha256:x", "127.0.0.1:1", S.READY, 0.0)
    >>> b = I("b", "web", 2, "sha256:y", "127.0.0.1:2", S.STARTING, 0.0)
    >>> [(x.address, x.weight, x.release) for x in backends_for([a, b])]
    [('127.0.0.1:1', 100, 'v1'), ('127.0.0.1:2', 0, 'v2')]
    """
    return [
        Backend(address=i.address, weight=READY_WEIGHT if i.state is InstanceState.READY else 0,
                release=f"v{i.release}", instance=i.id)
        for i in sorted(instances, key=lambda i: (i.release, i.created_at, i.id))
        if i.state in _ROUTABLE
    ]


def traffic_shares(backends: Sequence[Backend]) -> dict[str, float]:
    """Percent of new requests per release label.

    >>> from corral.ports.records import Backend as B
    >>> traffic_shares([B("a", 100, "v1"), B("b", 100, "v2"), B("c", 0, "v2"), B("d", 100, "v2")])
    {'v1': 33.3, 'v2': 66.7}
    """
    total = sum(b.weight for b in backends)
    shares: dict[str, float] = {}
    for backend in backends:
        shares.setdefault(backend.release, 0.0)
        if total:
            shares[backend.release] += backend.weight * 100 / total
    return {label: round(share, 1) for label, share in shares.items()}
