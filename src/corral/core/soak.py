"""Has an image soaked in an environment? Live periods from the ledger, and the verdict
`require_passed` + `min_soak` ask for before a deployment to the next environment.

Pure: the ledger's `release.live` entries, the releases' digests, the releases marked bad
and the time are passed in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class LivePeriod:
    """`digest` was live (health-gated: a release is set live only once its deployment
    succeeded) from `start` to `end` (None: still live)."""

    release: int
    digest: str
    start: float
    end: float | None


def live_periods(changes: Sequence[tuple[float, int]],
                 digests: Mapping[int, str]) -> list[LivePeriod]:
    """One period per `release.live` change (time, release), each ending at the next.

    >>> live_periods([(10.0, 1), (50.0, 2)], {1: "sha256:a", 2: "sha256:b"})
    ... # doctest: +NORMALIZE_WHITESPACE
    [LivePeriod(release=1, digest='sha256:a', start=10.0, end=50.0),
     LivePeriod(release=2, digest='sha256:b', start=50.0, end=None)]
    """
    ordered = sorted(changes)
    return [LivePeriod(release, digests.get(release, ""), at,
                       ordered[i + 1][0] if i + 1 < len(ordered) else None)
            for i, (at, release) in enumerate(ordered)]


def soaked_for(periods: Sequence[LivePeriod], digest: str, now: float) -> float:
    """The longest unbroken time `digest` was live; back-to-back periods of the same digest
    (two releases sharing an image, e.g. a config change) count as one.

    >>> p = [LivePeriod(1, "a", 0.0, 10.0), LivePeriod(2, "a", 10.0, 25.0),
    ...      LivePeriod(3, "b", 25.0, None)]
    >>> soaked_for(p, "a", 100.0), soaked_for(p, "b", 100.0), soaked_for(p, "c", 100.0)
    (25.0, 75.0, 0.0)
    """
    best, run_start, run_end = 0.0, None, None
    for period in sorted(periods, key=lambda p: p.start):
        end = now if period.end is None else period.end
        if period.digest != digest:
            run_start = None
            continue
        if run_start is None or run_end != period.start:
            run_start = period.start
        run_end = end
        best = max(best, end - run_start)
    return best


def soak_refusal(environment: str, digest: str, periods: Sequence[LivePeriod],
                 bad_digests: Mapping[str, str], min_soak: float, now: float) -> str | None:
    """Why `digest` has not passed `environment` (None when it has): it was never live
    there, a rollback there marked it bad, or it was live for less than `min_soak`.

    >>> p = [LivePeriod(1, "a", 0.0, None)]
    >>> soak_refusal("staging", "a", p, {}, 30.0, 100.0) is None
    True
    >>> soak_refusal("staging", "a", p, {}, 300.0, 100.0)
    'was live in staging for 1m40s, less than min_soak 5m'
    >>> soak_refusal("staging", "b", p, {}, 0.0, 100.0)
    'was never live and healthy in staging'
    """
    if digest in bad_digests:
        return f"was marked bad in {environment}: {bad_digests[digest]}"
    if not any(p.digest == digest for p in periods):
        return f"was never live and healthy in {environment}"
    soaked = soaked_for(periods, digest, now)
    if soaked < min_soak:
        return (f"was live in {environment} for {format_span(soaked)}, less than min_soak "
                f"{format_span(min_soak)}")
    return None


def format_span(seconds: float) -> str:
    """A duration as the spec writes it.

    >>> format_span(100.0), format_span(300.0), format_span(4.2), format_span(7200.0)
    ('1m40s', '5m', '4.2s', '2h')
    """
    if seconds < 60:
        return f"{seconds:.1f}".rstrip("0").rstrip(".") + "s"
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else "",
             f"{secs}s" if secs else ""]
    return "".join(parts)
