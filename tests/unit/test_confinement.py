"""Confinement decisions without a sandbox: the seccomp filter libseccomp compiles and its
cache, and what a host without a usable cgroup layout says about limits it cannot keep."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from corral.drivers import seccomp
from corral.drivers.cgroups import Cgroups
from corral.drivers.confinement import SECCOMP_FD, Confinement
from corral.ports.records import InstanceSpec, Limits


def spec(**fields: object) -> InstanceSpec:
    return InstanceSpec(id="web-1", service="web", release=1, image_digest="sha256:ab",
                        rootfs="/", argv=("app",), env={}, **fields)  # type: ignore[arg-type]


def test_a_filter_is_compiled_once_per_allowlist(tmp_path: Path) -> None:
    default = seccomp.filter_path(tmp_path)
    again = seccomp.filter_path(tmp_path, ())
    opened = seccomp.filter_path(tmp_path, ("ptrace",))

    assert default == again and default != opened
    program = default.read_bytes()
    assert len(program) % 8 == 0 and len(program) > 8 * len(seccomp.DENIED)  # BPF: 8 B each
    assert program != opened.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([default.name, opened.name])


def test_every_denied_name_is_a_syscall_libseccomp_knows() -> None:
    lib = seccomp._library()
    unknown = [n for n in seccomp.DENIED if lib.seccomp_syscall_resolve_name(n.encode()) == -1]
    assert unknown == []


def test_limits_on_a_host_without_a_layout_are_said_not_dropped(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    confinement = Confinement(tmp_path, layout=Cgroups(0, reason="no cgroupfs here"))

    with caplog.at_level(logging.WARNING):
        confined = confinement.confine(spec(limits=Limits(memory=64 << 20)))

    assert (confined.cgroup_version, confined.cgroups) == (0, {})
    assert "web-1 runs without its limits" in caplog.text
    assert "no cgroupfs here" in caplog.text
    assert confined.launcher_config() == {"cgroups": [], "seccomp": confined.seccomp,
                                          "seccomp_fd": SECCOMP_FD}


def test_seccomp_can_be_left_off(tmp_path: Path) -> None:
    confinement = Confinement(tmp_path, layout=Cgroups(0, reason="x"), use_seccomp=False)
    assert confinement.confine(spec()).seccomp is None


def test_the_same_instance_id_in_two_projects_gets_two_groups(tmp_path: Path) -> None:
    """cgroups are machine-wide: a second project's "web-1" must not share or remove the
    first one's group (a fake v1 tree: plain folders)."""
    tree = tmp_path / "cgroup"
    layout = Cgroups(1, {"memory": tree / "memory" / "corral", "pids": tree / "pids" / "corral"})
    shop, blog = tmp_path / "shop" / ".corral", tmp_path / "blog" / ".corral"
    first = Confinement(shop, layout=layout, use_seccomp=False).confine(spec())
    second = Confinement(blog, layout=layout, use_seccomp=False).confine(spec())

    assert set(first.cgroups.values()).isdisjoint(second.cgroups.values())
    assert all(Path(p).name.startswith("web-1.") for p in first.cgroups.values())
    Confinement.release(second.cgroups)
    assert all(Path(p).is_dir() for p in first.cgroups.values())
