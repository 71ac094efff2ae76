"""Router ports as a user meets them through the CLI (issue 19): two projects on one
`router.listen` (the second is refused, naming the first, and starts nothing), and `status`
telling what the router really serves, with or without a controller."""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli_project import CliProject
from loopback import poll

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


def project(folder: Path, version: str, port: int) -> CliProject:
    """A one-replica project in `folder` whose app answers X-App-Version: `version`."""
    folder.mkdir()
    made = CliProject(folder)
    made.port = port
    made.corral("init", "--name", folder.name, "--port", str(port))
    made.edit(r"replicas = 3", "replicas = 1")
    made.edit(r'APP_VERSION = "1"', f'APP_VERSION = "{version}"')
    return made


def versions(target: CliProject, times: int = 40) -> set[str]:
    answers = [target.request() for _ in range(times)]
    return {version if status == 200 else f"{status}" for status, version in answers}


def processes_of(folder: Path) -> list[str]:
    """The processes that run from `folder` or name it on their command line."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            cwd = os.readlink(f"/proc/{entry}/cwd")
        except OSError:
            continue
        if str(folder) in cmdline or cwd.startswith(str(folder)):
            found.append(f"{entry}: {cmdline}")
    return found


@pytest.fixture
def shop_and_blog(tmp_path: Path) -> Iterator[tuple[CliProject, CliProject]]:
    shop = project(tmp_path / "shop", "shop", CliProject(tmp_path).port)
    blog = project(tmp_path / "blog", "blog", shop.port)
    yield shop, blog
    blog.corral("down", check=False)
    shop.corral("down", check=False)


def test_a_second_project_on_the_same_router_port_is_refused_and_starts_nothing(
        shop_and_blog: tuple[CliProject, CliProject]) -> None:
    shop, blog = shop_and_blog
    shop.corral("up", "-d")
    shop.corral("deploy", "web")
    assert versions(shop) == {"shop"}

    # deploy: refused when it would listen, before any instance starts
    blog.corral("up", "-d")
    done = blog.corral("deploy", "web", check=False)
    assert done.returncode != 0
    assert (f"127.0.0.1:{shop.port} is already in use by the corral router of project "
            f"{shop.folder} (pid ") in done.stderr, done.stderr
    assert "router.listen" in done.stderr
    assert blog.json("status")["services"][0]["instances"] == []
    assert versions(shop) == {"shop"}, "the second project's router took part of the traffic"
    blog.corral("down")
    poll(lambda: processes_of(blog.folder) == [], 30, "the blog's controller to exit")

    # up: a project whose live release listens there is refused at start, and leaves nothing
    shop.corral("down")
    blog.corral("up", "-d")
    blog.corral("deploy", "web")
    assert versions(blog) == {"blog"}
    blog.corral("down")
    shop.corral("up", "-d")
    poll(lambda: versions(shop, 5) == {"shop"}, what="the shop's app serving again")
    done = blog.corral("up", "-d", check=False)
    assert done.returncode != 0
    assert (f"127.0.0.1:{shop.port} is already in use by the corral router of project "
            f"{shop.folder}") in done.stderr, done.stderr
    assert "live v1 of service web listens on" in done.stderr, done.stderr
    poll(lambda: processes_of(blog.folder) == [], 30,
         f"the blog's processes to exit: {processes_of(blog.folder)}")
    assert versions(shop) == {"shop"}

    # a router change: moving a live service onto the taken port is refused; it stays put
    shop.corral("down")
    own = CliProject(blog.folder).port
    blog.edit(f'listen = "127.0.0.1:{shop.port}"', f'listen = "127.0.0.1:{own}"')
    blog.corral("up", "-d")
    blog.corral("deploy", "web")
    shop.corral("up", "-d")
    poll(lambda: versions(shop, 5) == {"shop"}, what="the shop's app serving again")
    blog.edit(f'listen = "127.0.0.1:{own}"', f'listen = "127.0.0.1:{shop.port}"')
    done = blog.corral("deploy", "web", check=False)
    assert done.returncode != 0
    assert f"already in use by the corral router of project {shop.folder}" in done.stderr
    assert blog.json("status", "web")["services"][0]["listen"] == f"127.0.0.1:{own}"
    assert versions(shop) == {"shop"}
    blog.port = own
    assert versions(blog) == {"blog"}


def test_status_shows_the_address_the_router_serves_and_what_runs_without_a_controller(
        tmp_path: Path) -> None:
    shop = project(tmp_path / "shop", "shop", CliProject(tmp_path).port)
    try:
        shop.corral("up", "-d")
        shop.corral("deploy", "web")
        served = f"127.0.0.1:{shop.port}"
        with socket.socket() as squatter:  # the new address is taken: the change is refused
            squatter.bind(("127.0.0.1", 0))
            squatter.listen()
            taken = f"127.0.0.1:{squatter.getsockname()[1]}"
            shop.edit(re.escape(f'listen = "{served}"'), f'listen = "{taken}"')
            refused = shop.corral("deploy", "web", check=False)
            assert refused.returncode != 0 and f"{taken} is already in use" in refused.stderr
            status = shop.json("status", "web")
            web = status["services"][0]
            assert (web["listen"], status["router"]["listen"]) == (served, {"web": served})
            assert web["note"] == f"v2 asked for {taken}: deployment #2 failed"
            shown = shop.corral("status").stdout
            assert f"listen {served}" in shown and f"v2 asked for {taken}" in shown
            assert versions(shop) == {"shop"}

        before = [(i["id"], i["pid"]) for i in web["instances"]]
        router_pid = int((shop.folder / ".corral/run/router.pid").read_text())
        shop.corral("down", "--keep-instances")
        status = shop.json("status", "web")
        assert status["controller"]["running"] is False
        assert status["router"] == {"running": True, "pid": router_pid,
                                    "listen": {"web": served}}
        web = status["services"][0]
        assert [(i["id"], i["pid"]) for i in web["instances"]] == before
        assert [i["state"] for i in web["instances"]] == ["ready"]
        assert (web["listen"], web["live_release"], web["traffic"]) == (served, 1,
                                                                       {"v1": 100.0})
        shown = shop.corral("status").stdout
        assert (f"the controller is not running: the router (pid {router_pid}) keeps "
                "serving; 1 instance(s) still run") in " ".join(shown.split())
        assert f"listen {served}" in shown and before[0][0] in shown
        assert versions(shop) == {"shop"}
    finally:
        shop.corral("down", check=False)
    done = shop.corral("status", check=False)
    assert done.returncode == 1 and "the controller is not running" in done.stderr
