"""The bubblewrap command line, read as plain data: no process is started here."""

from __future__ import annotations

from corral.drivers.sandbox import is_namespace_failure, sandbox_args, sandbox_errors
from corral.ports.records import InstanceSpec


def spec(**fields: object) -> InstanceSpec:
    base: dict[str, object] = {
        "id": "web-3", "service": "web", "release": 2, "image_digest": "sha256:ab",
        "rootfs": "/images/ab", "argv": ("python3", "/app/server.py"), "env": {"B": "2", "A": "1"},
        "workdir": "/app"}
    return InstanceSpec(**{**base, **fields})  # type: ignore[arg-type]


def pairs(args: list[str], flag: str, arity: int = 1) -> list[tuple[str, ...]]:
    """Every occurrence of `flag` with its `arity` operands, before the `--`."""
    options = args[: args.index("--")]
    return [tuple(options[i + 1 : i + 1 + arity]) for i, a in enumerate(options) if a == flag]


def test_the_image_root_is_mounted_read_only_as_slash() -> None:
    args = sandbox_args(spec(), root="/run/root", volumes=[], port=4000)
    assert pairs(args, "--ro-bind", 2) == [("/run/root", "/")]
    assert "--bind" not in args


def test_the_sandbox_gets_new_namespaces_but_shares_the_host_network() -> None:
    args = sandbox_args(spec(), root="/r", volumes=[], port=4000)
    for flag in ("--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts"):
        assert flag in args
    assert "--unshare-net" not in args and "--unshare-all" not in args
    assert pairs(args, "--hostname") == [("web-3",)]


def test_the_app_runs_unprivileged_in_its_own_session() -> None:
    args = sandbox_args(spec(user="0:0"), root="/r", volumes=[], port=4000)
    assert pairs(args, "--uid") == [("65534",)] and pairs(args, "--gid") == [("65534",)]
    assert pairs(args, "--cap-drop") == [("ALL",)]
    assert "--new-session" in args


def test_the_sandbox_does_not_die_with_the_controller() -> None:
    assert "--die-with-parent" not in sandbox_args(spec(), root="/r", volumes=[], port=4000)


def test_proc_dev_and_a_private_tmp_are_mounted() -> None:
    args = sandbox_args(spec(), root="/r", volumes=[], port=4000)
    assert pairs(args, "--proc") == [("/proc",)]
    assert pairs(args, "--dev") == [("/dev",)]
    assert pairs(args, "--tmpfs") == [("/tmp",)]


def test_volumes_are_bound_read_write_after_tmp_so_they_may_live_under_it() -> None:
    volumes = [("/run/volume0", "/var/lib/app"), ("/run/volume1", "/tmp/cache")]
    args = sandbox_args(spec(), root="/r", volumes=volumes, port=4000)
    assert pairs(args, "--bind", 2) == volumes
    assert args.index("--tmpfs") < args.index("--bind")


def test_the_environment_is_cleared_then_set_with_the_drivers_port_winning() -> None:
    args = sandbox_args(spec(env={"A": "1", "PORT": "8000"}), root="/r", volumes=[], port=4000)
    assert "--clearenv" in args
    assert args.index("--clearenv") < args.index("--setenv")
    assert pairs(args, "--setenv", 2) == [("A", "1"), ("PORT", "4000")]


def test_the_app_starts_in_its_workdir_with_its_argv_after_the_options() -> None:
    args = sandbox_args(spec(), root="/r", volumes=[], port=4000)
    assert pairs(args, "--chdir") == [("/app",)]
    assert args[args.index("--") + 1 :] == ["python3", "/app/server.py"]


def test_the_exit_status_is_written_to_the_status_descriptor() -> None:
    assert pairs(sandbox_args(spec(), root="/r", volumes=[], port=1), "--json-status-fd") == [
        ("3",)]


def test_only_bwrap_and_launcher_lines_count_as_sandbox_errors() -> None:
    stderr = ("Traceback (most recent call last):\n"
              "bwrap: execvp no-such-program: No such file or directory\n"
              "corral launcher: cannot exec bwrap: [Errno 13] Permission denied\n")
    assert sandbox_errors(stderr) == [
        "bwrap: execvp no-such-program: No such file or directory",
        "corral launcher: cannot exec bwrap: [Errno 13] Permission denied"]


def test_a_refused_user_namespace_is_told_apart_from_a_broken_image() -> None:
    refused = ["bwrap: No permissions to creating new namespace, likely because the kernel "
               "does not allow non-privileged user namespaces."]
    assert is_namespace_failure(refused)
    assert is_namespace_failure(["bwrap: setting up uid map: Permission denied"])
    assert not is_namespace_failure(["bwrap: Can't chdir to /app: No such file or directory"])
