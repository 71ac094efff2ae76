"""The spec's `resources`, `allow_syscalls` and `[capacity]`: sizes read in binary units,
nonsense refused with the key and a hint."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from corral.spec.model import CapacitySpec, ServiceSpec


def service(**keys: object) -> ServiceSpec:
    return ServiceSpec.model_validate({"image": "web", **keys})


def test_resources_read_sizes_and_cores() -> None:
    res = service(resources={"memory": "256M", "memory_max": "1.5G", "cpus": 0.5,
                             "pids": 256}).resources
    assert res is not None
    assert (res.memory, res.memory_max, res.cpus, res.pids) == (256 << 20, 3 << 29, 0.5, 256)


@pytest.mark.parametrize(("resources", "said"), [
    ({"memory": "lots"}, "is not a size"),
    ({"memory": "256M", "memory_max": "128M"}, "must not be below memory"),
    ({"memory": "1M"}, "at least 4M"),
    ({"cpus": 0}, "greater than 0"),
    ({"pids": 2}, "greater than or equal to 8"),
    ({"memroy": "1G"}, "Extra inputs are not permitted"),
])
def test_wrong_resources_are_refused(resources: dict[str, object], said: str) -> None:
    with pytest.raises(ValidationError, match=said):
        service(resources=resources)


def test_allow_syscalls_takes_syscall_names_only() -> None:
    assert service(allow_syscalls=["ptrace", "keyctl"]).allow_syscalls == ("ptrace", "keyctl")
    with pytest.raises(ValidationError, match="not a system call name"):
        service(allow_syscalls=["PTRACE; rm"])


def test_capacity_reserve_defaults_to_nothing() -> None:
    assert CapacitySpec() == CapacitySpec(reserve_memory=0, reserve_cpus=0.0)
    assert CapacitySpec.model_validate({"reserve_memory": "1G"}).reserve_memory == 1 << 30
