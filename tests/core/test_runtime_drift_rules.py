"""Runtime drift as tables: a launch snapshot and what the driver sees now in, differences
out. What the program does to itself is never drift; changes from outside always are."""

from __future__ import annotations

from dataclasses import replace

import pytest

from corral.core.drift import (
    ExpectedRuntime,
    capability_names,
    intruders,
    mount_drift,
    runtime_drift,
)
from corral.ports.runtime import (
    Credentials,
    LaunchSnapshot,
    Mount,
    RuntimeFacts,
    SandboxProcess,
)

NOBODY = Credentials(uids=(65534,) * 4, gids=(65534,) * 4, capabilities=0)
ROOT = Credentials(uids=(0,) * 4, gids=(0,) * 4, capabilities=(1 << 41) - 1)
MOUNTS = (Mount("/", "tmpfs", "tmpfs", True, ("nosuid", "nodev")),
          Mount("/bin", "/c/roots/ab/bin", "ext4", True, ("nosuid", "nodev")),
          Mount("/proc", "proc", "proc", False, ("nosuid", "nodev", "noexec")),
          Mount("/tmp", "tmpfs", "tmpfs", False, ("nosuid", "nodev")),
          Mount("/data", "/c/volumes/web/data", "ext4", False, ("nosuid", "nodev")))
LAUNCHED = LaunchSnapshot(namespaces={"user": 11, "mnt": 12, "pid": 13}, mounts=MOUNTS,
                          credentials=NOBODY, image_digest="sha256:" + "a" * 64)
SHELL = ("/bin/busybox", "sh", "-c", "exec /bin/busybox httpd -f -p $PORT -h /www")
EXPECTED = ExpectedRuntime(image_digest="sha256:" + "a" * 64)


def proc(pid: int, argv: tuple[str, ...] = ("httpd",), credentials: Credentials = NOBODY,
         *, from_init: bool = True, session_inside: bool = True, user_ns: bool = True,
         exec_check: bool = False) -> SandboxProcess:
    return SandboxProcess(pid=pid, argv=argv, credentials=credentials,
                          in_user_namespace=user_ns, from_init=from_init,
                          session_inside=session_inside, exec_check=exec_check)


def facts(*processes: SandboxProcess, mounts: tuple[Mount, ...] = MOUNTS,
          launched: LaunchSnapshot | None = LAUNCHED, argv: tuple[str, ...] = SHELL,
          env: dict[str, str] | None = None) -> RuntimeFacts:
    return RuntimeFacts(instance_id="web-1", pid=100, argv=argv,
                        env=env if env is not None else {"PORT": "8000"}, uid=65534,
                        gid=65534, root="/c/roots/ab", mounts=mounts, launched=launched,
                        processes=processes or (proc(100, SHELL),))


# -- what the program does to itself: never drift ------------------------------------

@pytest.mark.parametrize("now", [
    pytest.param(facts(), id="as launched"),
    pytest.param(facts(proc(100, ("/bin/busybox", "httpd", "-f", "-p", "8000")),
                       argv=("/bin/busybox", "httpd", "-f", "-p", "8000"),
                       env={"PORT": "8000", "SHLVL": "1", "PWD": "/www"}),
                 id="a shell-form entrypoint exec'd its server, SHLVL set, cwd changed"),
    pytest.param(facts(proc(100, ("python3", "-c", "...")), argv=("python3", "-c", "..."),
                       env={"PORT": "8000", "MODE": "set by the app"}),
                 id="a python app set os.environ and exec'd"),
    pytest.param(facts(proc(100, ("nginx: master process",)),
                       argv=("nginx: master process",)),
                 id="a program rewrote its argv"),
    pytest.param(facts(proc(100, ("gunicorn: master",)),
                       *(proc(101 + n, ("gunicorn: worker",)) for n in range(4))),
                 id="a server forked workers"),
    pytest.param(facts(proc(100), proc(150, ("orphan",))),
                 id="a daemonized grandchild reparented to the init"),
    pytest.param(facts(proc(100), proc(151, ("chromium-sandbox",),
                                       replace(NOBODY, capabilities=ROOT.capabilities),
                                       user_ns=False)),
                 id="a child holds capabilities in a user namespace of its own"),
    pytest.param(facts(proc(100), proc(160, ("nsenter",), ROOT, from_init=False,
                                       session_inside=False, exec_check=True),
                       proc(161, ("test", "-e", "/tmp/ok"), from_init=False,
                            session_inside=False, exec_check=True)),
                 id="corral's own exec health check is running in it"),
    pytest.param(facts(proc(100, credentials=replace(NOBODY, capabilities=0)),
                       launched=replace(LAUNCHED, credentials=replace(NOBODY,
                                                                      capabilities=1 << 10))),
                 id="the app dropped a capability it was launched with"),
])
def test_what_a_program_does_to_itself_is_not_drift(now: RuntimeFacts) -> None:
    assert runtime_drift(EXPECTED, now) == []


def test_an_instance_without_a_launch_snapshot_cannot_be_judged() -> None:
    assert runtime_drift(EXPECTED, facts(proc(9, ("sh",), ROOT, from_init=False),
                                         launched=None)) == []


# -- changes from outside: drift, saying what ------------------------------------------

@pytest.mark.parametrize(("now", "expected"), [
    pytest.param(facts(proc(100), proc(812, ("nsenter", "-t", "100", "-m", "-p"), ROOT,
                                       from_init=False, session_inside=False),
                       proc(813, ("sh",), ROOT, from_init=False, session_inside=False)),
                 ["process 812 entered from outside: nsenter -t 100 -m -p (uid 0)",
                  "process 813 entered from outside: sh (uid 0)"],
                 id="a shell entered with nsenter"),
    pytest.param(facts(proc(100), proc(820, ("sleep", "100"), NOBODY, session_inside=False)),
                 ["process 820 entered from outside: sleep 100 (uid 65534)"],
                 id="what it left behind was reparented to the init but kept its session"),
    pytest.param(facts(proc(100), proc(830, ("sh",), replace(NOBODY, uids=(65534, 0, 0, 0)))),
                 ["process 830 (sh) runs as uid 65534/0/0/0, the instance was launched as "
                  "65534"],
                 id="a process gained uid 0"),
    pytest.param(facts(proc(100), proc(831, ("sh",), replace(NOBODY, gids=(0,) * 4))),
                 ["process 831 (sh) runs as gid 0, the instance was launched as 65534"],
                 id="a process gained gid 0"),
    pytest.param(facts(proc(100, credentials=replace(NOBODY, capabilities=1 << 21 | 1 << 12))),
                 ["process 100 (httpd) holds capabilities it was not launched with: "
                  "cap_net_admin, cap_sys_admin"],
                 id="the app gained capabilities"),
    pytest.param(facts(mounts=(*MOUNTS, Mount("/mnt", "/home/admin", "ext4", False))),
                 ["mount /mnt added: /home/admin (ext4, rw)"],
                 id="a mount was added"),
    pytest.param(facts(mounts=MOUNTS[:-1]),
                 ["mount /data removed: /c/volumes/web/data (ext4, rw, nosuid, nodev)"],
                 id="a volume was unmounted"),
    pytest.param(facts(mounts=(*MOUNTS[:1], replace(MOUNTS[1], read_only=False),
                               *MOUNTS[2:])),
                 ["mount /bin changed: /c/roots/ab/bin (ext4, ro, nosuid, nodev) is now "
                  "/c/roots/ab/bin (ext4, rw, nosuid, nodev)"],
                 id="the image root was remounted read-write"),
    pytest.param(facts(mounts=(*MOUNTS[:1], replace(MOUNTS[1], source="/evil/bin"),
                               *MOUNTS[2:])),
                 ["mount /bin changed: /c/roots/ab/bin (ext4, ro, nosuid, nodev) is now "
                  "/evil/bin (ext4, ro, nosuid, nodev)"],
                 id="another root was mounted over the image's"),
    pytest.param(facts(launched=replace(LAUNCHED, image_digest="sha256:" + "b" * 64)),
                 ["it was started from image sha256:bbbbbbbbbbbb, the release's image is "
                  "sha256:aaaaaaaaaaaa"],
                 id="it runs another image than its release"),
])
def test_a_change_from_outside_is_drift_named_in_words(now: RuntimeFacts,
                                                      expected: list[str]) -> None:
    assert runtime_drift(EXPECTED, now) == expected


def test_an_intruder_is_named_once_not_again_for_its_uid() -> None:
    now = facts(proc(100), proc(900, ("bash",), ROOT, from_init=False))
    assert runtime_drift(EXPECTED, now) == ["process 900 entered from outside: bash (uid 0)"]
    assert [p.pid for p in intruders(now)] == [900]


def test_the_session_rule_holds_only_when_the_app_s_own_session_began_inside() -> None:
    left = proc(820, ("sleep", "100"), session_inside=False)
    assert [p.pid for p in intruders(facts(proc(100), left))] == [820]
    unknown = replace(LAUNCHED, sessions_inside=False)
    assert intruders(facts(proc(100, session_inside=False), left, launched=unknown)) == []


def test_mounts_are_compared_as_a_table_whatever_their_order() -> None:
    assert mount_drift(MOUNTS, tuple(reversed(MOUNTS))) == []
    doubled = (*MOUNTS, MOUNTS[3])
    assert mount_drift(MOUNTS, doubled) == ["mount /tmp added: tmpfs (tmpfs, rw, nosuid, nodev)"]


def test_capabilities_are_named_as_the_kernel_names_them() -> None:
    assert capability_names(0) == []
    assert capability_names(1 | 1 << 40 | 1 << 45) == ["cap_chown", "cap_checkpoint_restore",
                                                       "cap_45"]
