"""Who a run step runs as: the USER resolved into what gosu is given, and the bubblewrap
namespace flags for corral as root (with and without the identity user namespace) and as
an ordinary user. Pure argument building; the sandboxes themselves run in
tests/integration/test_run_as_user.py."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from corral.images.build import run_user
from corral.images.build.run_user import RunAs, as_user, namespace_args, run_as


def _passwd_layer(folder: Path) -> Path:
    path = folder / "layer.tar"
    with tarfile.open(path, "w") as tar:
        for name, text in {"etc/passwd": "app:x:1234:1234::/home/app:/bin/sh\n",
                           "etc/group": "app:x:1234:\ncrew:x:4321:app\n"}.items():
            info = tarfile.TarInfo(name)
            info.size = len(text)
            tar.addfile(info, io.BytesIO(text.encode()))
    return path


@pytest.mark.parametrize(("user", "expected"), [
    ("app", RunAs(1234, 1234, "1234")),  # gosu takes the groups from the image's files
    ("app:crew", RunAs(1234, 4321, "1234:4321")),
    ("1234", RunAs(1234, 0, "1234")),  # an id without a passwd entry: group 0, as Docker
    ("7:8", RunAs(7, 8, "7:8")),
])
def test_a_user_becomes_ids_and_what_gosu_is_given(tmp_path: Path, user: str,
                                                   expected: RunAs) -> None:
    assert run_as(user, [_passwd_layer(tmp_path)]) == expected


def test_as_root_a_step_joins_the_identity_namespace_and_a_user_step_goes_through_gosu(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(run_user.os, "geteuid", lambda: 0)
    monkeypatch.setattr(run_user.shutil, "which", lambda name, path=None: f"/usr/sbin/{name}")
    flags = namespace_args(9, False, RunAs(1234, 1234, "1234"))
    assert flags[:2] == ["--userns", "9"] and "--unshare-net" in flags
    assert "--unshare-all" not in flags  # it would ask bubblewrap for a namespace of its own
    assert "--unshare-net" not in namespace_args(9, True, None)
    assert namespace_args(None, False, None) == ["--unshare-all"]  # no namespace to be had
    binds, command = as_user(("/bin/sh", "-c", "id"), RunAs(1234, 1234, "1234"), tmp_path)
    assert binds == ["--ro-bind", "/usr/sbin/gosu", run_user.SWITCH_USER]
    assert command == (run_user.SWITCH_USER, "1234", "/bin/sh", "-c", "id")
    assert as_user(("id",), RunAs(0, 0, "0"), tmp_path) == ([], ("id",))
    assert as_user(("id",), None, tmp_path, "/root") == ([], ("id",))


def test_a_home_in_the_environment_is_kept_under_gosu_through_the_images_env(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(run_user.os, "geteuid", lambda: 0)
    monkeypatch.setattr(run_user.shutil, "which", lambda name, path=None: f"/usr/sbin/{name}")
    app = RunAs(1234, 1234, "1234")
    # without an env program in the image, gosu's HOME (from /etc/passwd) stands
    assert as_user(("id",), app, tmp_path, "/srv")[1] == (run_user.SWITCH_USER, "1234", "id")
    (tmp_path / "usr" / "bin").mkdir(parents=True)
    (tmp_path / "usr" / "bin" / "env").write_text("")
    assert as_user(("id",), app, tmp_path, "/srv")[1] == (
        run_user.SWITCH_USER, "1234", "/usr/bin/env", "HOME=/srv", "id")
    assert as_user(("id",), app, tmp_path)[1] == (run_user.SWITCH_USER, "1234", "id")


def test_without_root_bubblewrap_maps_corral_to_the_steps_user(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run_user.os, "geteuid", lambda: 1000)
    assert namespace_args(None, True, RunAs(7, 8, "7:8")) == [
        "--unshare-all", "--unshare-user", "--uid", "7", "--gid", "8", "--share-net"]
    assert namespace_args(None, False, None)[-4:] == ["--uid", "0", "--gid", "0"]
    assert as_user(("id",), RunAs(7, 8, "7:8"), Path("/")) == ([], ("id",))


def test_without_gosu_a_user_step_says_what_to_install(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run_user.os, "geteuid", lambda: 0)
    monkeypatch.setattr(run_user.shutil, "which", lambda name, path=None: None)
    with pytest.raises(run_user.ImageError, match="needs gosu") as refused:
        as_user(("id",), RunAs(7, 8, "7:8"), Path("/"))
    assert "apt-get install gosu" in str(refused.value)
