"""Both cgroup layouts against fake cgroupfs trees: which one is chosen, where instance
groups go, which files their limits are written to, and how usage and OOM kills read."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.drivers import cgroups
from corral.ports.records import Limits

LIMITS = Limits(memory=256 << 20, memory_max=384 << 20, cpus=0.5, pids=256)


def pure_v2(root: Path, controllers: str = "cpuset cpu io memory hugetlb pids") -> Path:
    """A stock Debian 12 host: one unified hierarchy at the root."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "cgroup.controllers").write_text(controllers + "\n")
    (root / "cgroup.subtree_control").write_text("")
    return root


def hybrid_v1(root: Path) -> Path:
    """This machine type: v1 controllers each in its own hierarchy, a v2 hierarchy beside
    them offering none of the three."""
    for name in ("cpu", "cpuacct", "memory", "pids", "devices"):
        (root / name).mkdir(parents=True)
        (root / name / "cgroup.procs").write_text("")
    (root / "unified").mkdir()
    (root / "unified" / "cgroup.controllers").write_text("hugetlb\n")
    return root


def test_a_pure_v2_host_uses_the_unified_hierarchy(tmp_path: Path) -> None:
    found = cgroups.detect(pure_v2(tmp_path))

    assert (found.version, found.bases) == (2, {"unified": tmp_path / "corral"})


def test_a_hybrid_host_whose_v2_side_lacks_controllers_uses_v1(tmp_path: Path) -> None:
    found = cgroups.detect(hybrid_v1(tmp_path))

    assert found.version == 1
    assert found.bases == {name: tmp_path / name / "corral"
                           for name in ("memory", "cpu", "cpuacct", "pids")}


def test_a_hybrid_host_whose_v2_side_has_the_controllers_uses_v2(tmp_path: Path) -> None:
    hybrid_v1(tmp_path)
    (tmp_path / "unified" / "cgroup.controllers").write_text("memory cpu pids\n")

    assert cgroups.detect(tmp_path).bases == {"unified": tmp_path / "unified" / "corral"}


def test_a_host_with_neither_says_what_it_lacks_and_what_runs_unlimited(tmp_path: Path) -> None:
    found = cgroups.detect(pure_v2(tmp_path, controllers="cpu io"))

    assert not found.is_usable
    assert "lacks memory, pids" in found.reason
    assert "without memory, CPU or process limits" in found.describe()


def test_preparing_v2_hands_the_controllers_down_to_the_corral_group(tmp_path: Path) -> None:
    found = cgroups.prepare(cgroups.detect(pure_v2(tmp_path)))

    assert found.version == 2
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+memory +cpu +pids"
    assert (tmp_path / "corral" / "cgroup.subtree_control").read_text() == "+memory +cpu +pids"


def test_preparing_a_layout_that_cannot_be_made_falls_back_to_none(tmp_path: Path) -> None:
    root = pure_v2(tmp_path / "cg")
    (root / "corral").write_text("a file where the group should be")

    found = cgroups.prepare(cgroups.detect(root))

    assert found.version == 0 and "cannot be used" in found.reason


def test_v2_limits_go_into_one_group(tmp_path: Path) -> None:
    layout = cgroups.prepare(cgroups.detect(pure_v2(tmp_path)))

    paths = layout.create("web-1", LIMITS)

    group = tmp_path / "corral" / "web-1"
    assert paths == {"unified": str(group)}
    written = {f.name: f.read_text() for f in group.iterdir()}
    assert written == {"memory.low": str(256 << 20), "memory.max": str(384 << 20),
                       "memory.swap.max": "0", "memory.oom.group": "1",
                       "cpu.max": "50000 100000", "cpu.weight": "50", "pids.max": "256"}


def test_v1_limits_go_into_each_controller_s_group(tmp_path: Path) -> None:
    layout = cgroups.prepare(cgroups.detect(hybrid_v1(tmp_path)))

    paths = layout.create("web-1", LIMITS)

    def files(name: str) -> dict[str, str]:
        return {f.name: f.read_text() for f in (tmp_path / name / "corral" / "web-1").iterdir()}
    assert set(paths) == {"memory", "cpu", "cpuacct", "pids"}
    assert files("memory") == {"memory.soft_limit_in_bytes": str(256 << 20),
                               "memory.limit_in_bytes": str(384 << 20),
                               "memory.memsw.limit_in_bytes": str(384 << 20)}
    assert files("cpu") == {"cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": "50000",
                            "cpu.shares": "512"}
    assert files("pids") == {"pids.max": "256"}
    assert files("cpuacct") == {}
    assert cgroups.procs_files(paths) == [f"{paths[n]}/cgroup.procs"
                                          for n in ("cpu", "cpuacct", "memory", "pids")]


def test_an_instance_without_limits_gets_groups_for_its_usage_only(tmp_path: Path) -> None:
    layout = cgroups.prepare(cgroups.detect(pure_v2(tmp_path)))

    paths = layout.create("web-1", Limits())

    assert list(Path(paths["unified"]).iterdir()) == []


def test_v2_usage_and_oom_kills_read_from_the_group(tmp_path: Path) -> None:
    group = tmp_path / "web-1"
    group.mkdir()
    for name, text in {"memory.current": "52428800", "memory.max": "67108864",
                       "memory.stat": "anon 40000000\ninactive_file 2428800\n",
                       "cpu.stat": "usage_usec 1500000\nuser_usec 1000000\n",
                       "cpu.max": "50000 100000", "pids.current": "7", "pids.max": "64",
                       "memory.events": "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n"}.items():
        (group / name).write_text(text)

    usage = cgroups.read_usage(2, {"unified": str(group)})

    assert usage.memory == 50_000_000 and usage.memory_limit == 64 << 20
    assert (usage.cpu_seconds, usage.cpus, usage.pids, usage.pids_limit) == (1.5, 0.5, 7, 64)
    assert usage.oom_kills == 1


def test_v1_usage_and_oom_kills_read_from_each_hierarchy(tmp_path: Path) -> None:
    paths = {}
    for name, files in {
            "memory": {"memory.usage_in_bytes": "30000000", "memory.limit_in_bytes": "33554432",
                       "memory.stat": "cache 100\ntotal_inactive_file 1000000\n",
                       "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"},
            "cpu": {"cpu.cfs_quota_us": "25000", "cpu.cfs_period_us": "100000"},
            "cpuacct": {"cpuacct.usage": "2500000000"},
            "pids": {"pids.current": "3", "pids.max": "max"}}.items():
        group = tmp_path / name / "web-1"
        group.mkdir(parents=True)
        for file, text in files.items():
            (group / file).write_text(text)
        paths[name] = str(group)

    usage = cgroups.read_usage(1, paths)

    assert (usage.memory, usage.memory_limit) == (29_000_000, 32 << 20)
    assert (usage.cpu_seconds, usage.cpus) == (2.5, 0.25)
    assert (usage.pids, usage.pids_limit, usage.oom_kills) == (3, None, 2)


@pytest.mark.parametrize("version", [1, 2])
def test_an_unlimited_group_reads_as_no_limit(tmp_path: Path, version: int) -> None:
    group = tmp_path / "g"
    group.mkdir()
    (group / "memory.max").write_text("max\n")
    (group / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    (group / "cpu.max").write_text("max 100000\n")
    (group / "cpu.cfs_quota_us").write_text("-1\n")
    names = ("unified",) if version == 2 else ("memory", "cpu")

    usage = cgroups.read_usage(version, dict.fromkeys(names, str(group)))

    assert (usage.memory_limit, usage.cpus, usage.oom_kills) == (None, None, 0)


def test_removing_groups_leaves_no_folder_and_never_raises(tmp_path: Path) -> None:
    group = tmp_path / "web-1"
    group.mkdir()

    cgroups.remove({"unified": str(group), "gone": str(tmp_path / "never")})

    assert not group.exists()
