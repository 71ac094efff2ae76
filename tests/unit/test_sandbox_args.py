"""The bubblewrap command line and the layout of the sandbox's `/`, read as plain data: no
process is started here (the layout tests read small roots made in a temporary folder)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from corral.drivers.image_root import Entry, explain_exec_failure, resolve_inside
from corral.drivers.sandbox import (
    Layout,
    is_namespace_failure,
    plan_layout,
    sandbox_args,
    sandbox_errors,
)
from corral.ports.records import InstanceSpec

LAYOUT = Layout(root="/run/root", entries=[Entry("/bin", "bind"), Entry("/etc", "dir"),
                                           Entry("/etc/passwd", "bind"),
                                           Entry("/lib", "symlink", "usr/lib")])


def spec(**fields: object) -> InstanceSpec:
    base: dict[str, object] = {
        "id": "web-3", "service": "web", "release": 2, "image_digest": "sha256:ab",
        "rootfs": "/images/ab", "argv": ("python3", "/app/server.py"), "env": {"B": "2", "A": "1"},
        "workdir": "/app"}
    return InstanceSpec(**{**base, **fields})  # type: ignore[arg-type]


def args_of(layout: Layout = LAYOUT, **fields: object) -> list[str]:
    return sandbox_args(spec(**fields), layout, port=4000)


def pairs(args: list[str], flag: str, arity: int = 1) -> list[tuple[str, ...]]:
    """Every occurrence of `flag` with its `arity` operands, before the `--`."""
    options = args[: args.index("--")]
    return [tuple(options[i + 1 : i + 1 + arity]) for i, a in enumerate(options) if a == flag]


def make_root(folder: Path, *files: str, links: dict[str, str] | None = None) -> Path:
    """A root holding `files` (a name ending in '/' is a folder) and `links` (name -> target)."""
    for name in files:
        path = folder / name
        if name.endswith("/"):
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(name)
    for name, target in (links or {}).items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).symlink_to(target)
    return folder


# -- the command line --------------------------------------------------------------------

def test_the_root_s_entries_are_bound_read_only_on_a_slash_made_read_only_last() -> None:
    args = args_of()
    assert ("/run/root/bin", "/bin") in pairs(args, "--ro-bind", 2)
    assert ("/run/root/etc/passwd", "/etc/passwd") in pairs(args, "--ro-bind", 2)
    assert pairs(args, "--symlink", 2) == [("usr/lib", "/lib")]
    assert pairs(args, "--dir") == [("/etc",)]
    assert all(target != "/" for _, target in pairs(args, "--ro-bind", 2))
    options = args[: args.index("--")]
    assert pairs(args, "--remount-ro") == [("/",)]
    last_mount = max(i for i, a in enumerate(options) if a in ("--bind", "--ro-bind", "--tmpfs"))
    assert options.index("--remount-ro") > last_mount


def test_the_sandbox_gets_new_namespaces_but_shares_the_host_network() -> None:
    args = args_of()
    for flag in ("--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts"):
        assert flag in args
    assert "--unshare-net" not in args and "--unshare-all" not in args
    assert pairs(args, "--hostname") == [("web-3",)]


def test_the_app_runs_unprivileged_in_its_own_session() -> None:
    args = args_of(user="0:0")
    assert pairs(args, "--uid") == [("65534",)] and pairs(args, "--gid") == [("65534",)]
    assert pairs(args, "--cap-drop") == [("ALL",)]
    assert "--new-session" in args


def test_the_sandbox_does_not_die_with_the_controller() -> None:
    assert "--die-with-parent" not in args_of()


def test_proc_dev_a_read_only_sys_and_a_private_tmp_are_always_supplied() -> None:
    args = args_of(Layout(root="/r", entries=[]))
    assert pairs(args, "--proc") == [("/proc",)]
    assert pairs(args, "--dev") == [("/dev",)]
    assert pairs(args, "--ro-bind", 2) == [("/sys", "/sys")]
    assert pairs(args, "--tmpfs") == [("/tmp",)]


def test_the_host_s_resolver_files_are_bound_read_only() -> None:
    layout = Layout(root="/r", entries=[], host_files=[("/run/host0", "/etc/resolv.conf")])
    assert ("/run/host0", "/etc/resolv.conf") in pairs(args_of(layout), "--ro-bind", 2)


def test_volumes_are_bound_read_write_after_tmp_so_they_may_live_under_it() -> None:
    volumes = [("/run/volume0", "/tmp/cache"), ("/run/volume1", "/var/lib/app")]
    args = args_of(Layout(root="/r", entries=[], volumes=volumes))
    assert sorted(pairs(args, "--bind", 2)) == volumes
    assert args.index("--tmpfs") < args.index("/run/volume0")


def test_the_environment_is_cleared_then_set_with_the_drivers_port_winning() -> None:
    args = args_of(env={"A": "1", "PORT": "8000"})
    assert "--clearenv" in args
    assert args.index("--clearenv") < args.index("--setenv")
    assert pairs(args, "--setenv", 2) == [("A", "1"), ("PORT", "4000")]


def test_the_app_starts_in_its_workdir_with_its_argv_after_the_options() -> None:
    args = args_of()
    assert pairs(args, "--chdir") == [("/app",)]
    assert args[args.index("--") + 1 :] == ["python3", "/app/server.py"]


def test_the_exit_status_is_written_to_the_status_descriptor() -> None:
    assert pairs(args_of(), "--json-status-fd") == [("3",)]


# -- the layout of `/` ---------------------------------------------------------------------

def test_a_scratch_root_gets_folders_for_what_it_lacks_and_its_own_entries_bound(
        tmp_path: Path) -> None:
    root = make_root(tmp_path, "bin/busybox", "www/index.html")
    plan = plan_layout(spec(rootfs=str(root), workdir="/srv"), ["/etc/resolv.conf"], None)
    layout = plan.layout
    assert layout.entries == [Entry("/bin", "bind"), Entry("/www", "bind"), Entry("/etc", "dir"),
                              Entry("/srv", "dir")]
    assert layout.host_files == [("/etc/resolv.conf", "/etc/resolv.conf")]
    assert layout.root == str(root) and plan.stage == {}
    assert plan.skeleton == {"/proc": True, "/dev": True, "/sys": True, "/tmp": True,
                             "/etc/resolv.conf": False, "/srv": True}


def test_mount_points_the_image_has_are_mounted_over_without_expanding_their_folder(
        tmp_path: Path) -> None:
    root = make_root(tmp_path, "proc/", "tmp/", "etc/hosts", "etc/passwd", "app/")
    plan = plan_layout(spec(rootfs=str(root)), ["/etc/hosts"], None)
    assert plan.layout.entries == [Entry("/app", "bind"), Entry("/etc", "bind")]
    assert plan.skeleton == {"/dev": True, "/sys": True}


def test_a_missing_volume_mount_point_expands_only_the_folders_on_its_way(
        tmp_path: Path) -> None:
    root = make_root(tmp_path, "var/log/syslog", "var/cache/", "usr/bin/app")
    volume = spec(rootfs=str(root), workdir="/", volumes={"/host/v": "/var/lib/app"})
    layout = plan_layout(volume, [], None).layout
    assert layout.entries == [Entry("/usr", "bind"), Entry("/var", "dir"),
                              Entry("/var/cache", "bind"), Entry("/var/log", "bind"),
                              Entry("/var/lib", "dir")]
    assert layout.volumes == [("/host/v", "/var/lib/app")]


def test_a_mount_point_behind_an_image_symlink_lands_where_the_link_points(
        tmp_path: Path) -> None:
    root = make_root(tmp_path, "usr/lib/libc.so", links={"lib": "usr/lib"})
    volume = spec(rootfs=str(root), workdir="/", volumes={"/host/v": "/lib/app"})
    layout = plan_layout(volume, [], None).layout
    assert layout.volumes == [("/host/v", "/usr/lib/app")]
    assert layout.entries == [Entry("/lib", "symlink", "usr/lib"), Entry("/usr", "dir"),
                              Entry("/usr/lib", "dir"), Entry("/usr/lib/libc.so", "bind")]


def test_a_symlink_at_a_mount_point_is_replaced_not_followed(tmp_path: Path) -> None:
    root = make_root(tmp_path, "etc/passwd",
                     links={"etc/resolv.conf": "../run/systemd/resolve/stub-resolv.conf"})
    plan = plan_layout(spec(rootfs=str(root), workdir="/"), ["/etc/resolv.conf"], None)
    layout = plan.layout
    assert plan.skeleton["/etc/resolv.conf"] is False  # an empty file hides the link
    assert layout.entries == [Entry("/etc", "dir"), Entry("/etc/passwd", "bind")]
    assert layout.host_files == [("/etc/resolv.conf", "/etc/resolv.conf")]


def test_image_symlinks_never_lead_out_of_the_root(tmp_path: Path) -> None:
    root = make_root(tmp_path, "etc/", links={"etc/up": "../../../..", "abs": "/etc"})
    assert resolve_inside(str(root), "/etc/up/etc/shadow") == "/etc/shadow"
    assert resolve_inside(str(root), "/abs/x") == "/etc/x"
    (root / "loop").symlink_to("loop")
    assert resolve_inside(str(root), "/loop/x") == "/loop/x"  # a loop stops, never hangs


def test_as_root_every_source_is_staged_for_the_launcher(tmp_path: Path) -> None:
    root = make_root(tmp_path, "bin/app")
    started = spec(rootfs=str(root), workdir="/", volumes={"/v/data": "/data"})
    plan = plan_layout(started, ["/etc/hosts"], "/run")
    assert plan.stage == {"root": str(root), "volume0": "/v/data", "host0": "/etc/hosts"}
    assert plan.layout.root == "/run/root"
    assert plan.layout.volumes == [("/run/volume0", "/data")]
    assert plan.layout.host_files == [("/run/host0", "/etc/hosts")]


def test_as_root_the_root_is_bound_whole_over_an_overlay_only_if_it_lacks_something(
        tmp_path: Path) -> None:
    complete = make_root(tmp_path / "a", "proc/", "dev/", "sys/", "tmp/", "bin/app")
    plan = plan_layout(spec(rootfs=str(complete), workdir="/"), [], "/run")
    assert plan.skeleton == {}
    assert pairs(sandbox_args(spec(), plan.whole("/run"), port=1), "--ro-bind", 2)[0] == (
        "/run/root/", "/")
    scratch = make_root(tmp_path / "b", "bin/app")
    plan = plan_layout(spec(rootfs=str(scratch), workdir="/"), [], "/run")
    assert plan.skeleton == dict.fromkeys(["/proc", "/dev", "/sys", "/tmp"], True)
    whole = sandbox_args(spec(), plan.whole("/run"), port=1)
    assert pairs(whole, "--ro-bind", 2)[0] == ("/run/merged/", "/")
    assert "--dir" not in whole and "--symlink" not in whole


# -- explaining a failed start ----------------------------------------------------------

def test_a_bare_argv0_missing_from_the_image_is_named_with_the_path_searched(
        tmp_path: Path) -> None:
    root = make_root(tmp_path, "bin/busybox")
    (root / "bin/busybox").chmod(0o755)
    assert explain_exec_failure(str(root), "httpd", "/usr/bin:/bin") == (
        "argv[0] 'httpd' is not in the image (looked in PATH /usr/bin:/bin)")
    assert explain_exec_failure(str(root), "busybox", "/usr/bin:/bin") is None
    assert explain_exec_failure(str(root), "/bin/busybox", "") is None


def test_a_script_whose_interpreter_the_image_lacks_is_named(tmp_path: Path) -> None:
    root = make_root(tmp_path, "app/run")
    (root / "app/run").write_text("#!/bin/bash -e\necho hi\n")
    (root / "app/run").chmod(0o755)
    assert explain_exec_failure(str(root), "/app/run", "") == (
        "argv[0] /app/run starts with #!/bin/bash, which is not in the image")


def test_a_program_without_execute_bits_is_named(tmp_path: Path) -> None:
    root = make_root(tmp_path, "app/server")
    (root / "app/server").chmod(0o644)
    cause = explain_exec_failure(str(root), "/app/server", "")
    assert cause is not None and "not executable" in cause and "0644" in cause


def test_a_dynamically_linked_program_without_its_loader_is_named(tmp_path: Path) -> None:
    program = shutil.which("ls")
    assert program is not None
    root = make_root(tmp_path, "bin/")
    shutil.copy(os.path.realpath(program), root / "bin/ls")
    cause = explain_exec_failure(str(root), "/bin/ls", "")
    assert cause is not None and "dynamically linked" in cause and "ld-linux" in cause


# -- bwrap's own words ---------------------------------------------------------------------

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
