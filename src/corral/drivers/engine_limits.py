"""A service's `resources` as the Docker engine takes them: the container driver's create
options and the Swarm driver's task resources, shared so both enforce what the process
driver's cgroups do.

Same meaning as drivers/cgroups.py: `memory` is reserved (a soft limit), the hard limit is
`memory_max` else `memory`, with no swap beyond it; `cpus` is a quota in cores; `pids` caps
processes and threads. A limit left None is not passed: the engine's default (none) holds.
"""

from __future__ import annotations

from typing import Any

from corral.ports.records import Limits

NANO = 1_000_000_000  # the engine counts CPUs in billionths of a core


def container_limits(limits: Limits) -> dict[str, Any]:
    """Keyword arguments of docker-py's `containers.create` (HostConfig) for `limits`.

    >>> container_limits(Limits(memory=256 << 20, memory_max=384 << 20, cpus=0.5, pids=64))
    ... # doctest: +NORMALIZE_WHITESPACE
    {'mem_reservation': 268435456, 'mem_limit': 402653184, 'memswap_limit': 402653184,
     'nano_cpus': 500000000, 'pids_limit': 64}
    >>> container_limits(Limits(memory=64 << 20))  # memory alone is also the hard limit
    {'mem_reservation': 67108864, 'mem_limit': 67108864, 'memswap_limit': 67108864}
    >>> container_limits(Limits())
    {}
    """
    args: dict[str, Any] = {}
    if limits.memory is not None:
        args["mem_reservation"] = limits.memory
    hard = limits.memory_limit
    if hard is not None:
        args["mem_limit"] = hard
        args["memswap_limit"] = hard  # memory+swap equal to memory: no swap, as cgroups do
    if limits.cpus is not None:
        args["nano_cpus"] = _nano(limits.cpus)
    if limits.pids is not None:
        args["pids_limit"] = limits.pids
    return args


def task_resources(limits: Limits) -> dict[str, Any]:
    """A Swarm TaskTemplate's `Resources` for `limits`: limits the task's container gets,
    reservations the scheduler places by (a node without room keeps the task pending). Pids
    is a task limit since Engine API 1.41; an older manager ignores it.

    >>> task_resources(Limits(memory=256 << 20, memory_max=384 << 20, cpus=0.5, pids=64))
    ... # doctest: +NORMALIZE_WHITESPACE
    {'Limits': {'MemoryBytes': 402653184, 'NanoCPUs': 500000000, 'Pids': 64},
     'Reservations': {'MemoryBytes': 268435456, 'NanoCPUs': 500000000}}
    >>> task_resources(Limits(pids=32))
    {'Limits': {'Pids': 32}}
    >>> task_resources(Limits())
    {}
    """
    hard: dict[str, int] = {}
    reserved: dict[str, int] = {}
    if limits.memory_limit is not None:
        hard["MemoryBytes"] = limits.memory_limit
    if limits.memory is not None:
        reserved["MemoryBytes"] = limits.memory
    if limits.cpus is not None:
        hard["NanoCPUs"] = reserved["NanoCPUs"] = _nano(limits.cpus)
    if limits.pids is not None:
        hard["Pids"] = limits.pids
    return {k: v for k, v in (("Limits", hard), ("Reservations", reserved)) if v}

def _nano(cpus: float) -> int:
    return round(cpus * NANO)
