"""Traffic weights: which instances get requests, and how many.

Without fleet weights each ready instance gets an equal weight (rolling). With fleet
weights (canary, blue-green) each fleet's percent is split across its ready instances,
after clamping it to the fleet's ready capacity (the capacity invariant). Instances that
are starting, unhealthy or draining stay known to the router with weight 0 so preview
requests and in-flight requests still reach them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from fractions import Fraction

from corral.ports.records import Backend, Instance, InstanceState

READY_WEIGHT = 100
SCALE = 10_000  # instance weights are integers: a fleet's percent is spread over SCALE units
_ROUTABLE = (InstanceState.STARTING, InstanceState.READY, InstanceState.UNHEALTHY,
             InstanceState.DRAINING)


def capacity_caps(ready: Mapping[int, int], replicas: int) -> dict[int, Fraction]:
    """The most traffic (percent) each fleet's ready instances can carry.

    Full load needs `replicas` ready instances, so a fleet with `n` ready can carry n/replicas
    of it; when fewer than `replicas` are ready in all, the load can only be spread in
    proportion to what is ready. Worked example, replicas=3: v1 with 3 ready and v2 with 1
    ready can carry 100% and 33⅓%; v1 with 1 and v2 with 1 can carry 50% each.

    >>> {k: str(v) for k, v in capacity_caps({1: 3, 2: 1}, 3).items()}
    {1: '100', 2: '100/3'}
    >>> {k: str(v) for k, v in capacity_caps({1: 1, 2: 1}, 3).items()}
    {1: '50', 2: '50'}
    """
    total = sum(ready.values())
    denominator = min(max(replicas, 1), total)
    if denominator == 0:
        return {release: Fraction(0) for release in ready}
    return {release: min(Fraction(100), Fraction(100 * n, denominator))
            for release, n in ready.items()}


def fleet_shares(desired: Mapping[int, int], ready: Mapping[int, int],
                 replicas: int) -> dict[int, Fraction]:
    """Percent of traffic per release: `desired`, clamped to capacity, summing to 100.

    What a fleet cannot carry goes to the fleets that can, the most desired first, then the
    newest; percents asked of fleets with nothing ready are shared the same way, and fleets
    with no ready instance get 0. Worked example, replicas=3: desired v1 90% and v2 10% with
    three v1 and one v2 ready stays 90/10; desired v2 100% with only one v2 ready (three v1
    warm) gives v2 33⅓% and v1 the remaining 66⅔%.

    >>> {k: str(v) for k, v in fleet_shares({2: 100}, {1: 3, 2: 1}, 3).items()}
    {1: '200/3', 2: '100/3'}
    """
    caps = capacity_caps({r: n for r, n in ready.items() if n > 0}, replicas)
    if not caps:
        return {}
    asked = sum(desired.get(r, 0) for r in caps)
    # Percents of fleets that cannot take traffic are dropped; the rest are scaled to 100.
    wanted = {r: Fraction(desired.get(r, 0) * 100, asked) if asked else Fraction(0)
              for r in caps}
    shares = {r: min(wanted[r], cap) for r, cap in caps.items()}
    order = sorted(caps, key=lambda r: (-desired.get(r, 0), -r))
    for release in order:
        missing = 100 - sum(shares.values())
        if missing <= 0:
            break
        shares[release] += min(missing, caps[release] - shares[release])
    return shares


def backends_for(instances: Sequence[Instance], fleet_weights: Mapping[int, int] | None = None,
                 replicas: int = 0, *, preview: bool = True) -> list[Backend]:
    """The router's backends for one service's instances. With `preview` off, instances
    that would get weight 0 (a blue-green fleet before its switch, a warm old fleet) are
    left out, so no `X-Corral-Release` request can reach them; draining ones stay listed
    until their in-flight requests are done.

    >>> from corral.ports.records import Instance as I, InstanceState as S
    >>> a = I("a", "web", 1, "sha256:x", "127.0.0.1:1", S.READY, 0.0)
    >>> b = I("b", "web", 2, "sha256:y", "127.0.0.1:2", S.STARTING, 0.0)
    >>> [(x.address, x.weight, x.release) for x in backends_for([a, b])]
    [('127.0.0.1:1', 100, 'v1'), ('127.0.0.1:2', 0, 'v2')]
    >>> c = I("c", "web", 2, "sha256:y", "127.0.0.1:3", S.READY, 0.0)
    >>> [(x.address, x.weight) for x in backends_for([a, b, c], {1: 90, 2: 10}, 1)]
    [('127.0.0.1:1', 9000), ('127.0.0.1:2', 0), ('127.0.0.1:3', 1000)]
    """
    routable = sorted((i for i in instances if i.state in _ROUTABLE),
                      key=lambda i: (i.release, i.created_at, i.id))
    ready: dict[int, int] = {}
    for instance in routable:
        if instance.state is InstanceState.READY:
            ready[instance.release] = ready.get(instance.release, 0) + 1
    per_instance: dict[int, int] = {release: READY_WEIGHT for release in ready}
    if fleet_weights is not None:
        shares = fleet_shares(fleet_weights, ready, replicas or sum(ready.values()))
        per_instance = {r: round(share * SCALE / 100 / ready[r]) for r, share in shares.items()}
    backends = [
        Backend(address=i.address,
                weight=per_instance.get(i.release, 0) if i.state is InstanceState.READY else 0,
                release=f"v{i.release}", instance=i.id)
        for i in routable
    ]
    if preview:
        return backends
    draining = {i.address for i in routable if i.state is InstanceState.DRAINING}
    return [b for b in backends if b.weight > 0 or b.address in draining]


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
