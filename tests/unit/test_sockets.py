"""corral.sockets.fitting: a socket in a deep project folder still binds, in that folder."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from corral.sockets import HAPROXY_SOCKET_MAX, SUN_PATH_MAX, fitting


def deep_folder(root: Path) -> Path:
    folder = root / ("d" * 60) / ("e" * 60) / ".corral" / "run"
    folder.mkdir(parents=True)
    return folder


def test_a_short_path_is_kept(tmp_path: Path) -> None:
    assert fitting(tmp_path / "router.sock") == tmp_path / "router.sock"


def test_a_long_path_binds_through_a_short_name_and_the_socket_stays_in_its_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    folder = deep_folder(tmp_path)
    long = folder / "controller.sock"
    assert len(os.fsencode(long)) > SUN_PATH_MAX
    short = fitting(long)
    assert len(os.fsencode(short)) <= HAPROXY_SOCKET_MAX and short.name == "controller.sock"
    assert fitting(long) == short  # every process finds the same name
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(short))
        server.listen(1)
        assert long.is_socket()  # the file is in the run folder, not beside the link
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect(str(fitting(long)))


def test_the_link_folder_must_be_private(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    shared = tmp_path / "runtime"
    (shared / "corral").mkdir(parents=True)
    (shared / "corral").chmod(0o777)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(shared))
    with pytest.raises(OSError, match="not a folder private"):
        fitting(deep_folder(tmp_path) / "router.sock")
