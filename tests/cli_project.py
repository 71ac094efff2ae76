"""A project folder driven through the corral CLI as a user would; shared by the e2e and
CLI-level integration tests (each adds what its area needs in a subclass)."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from loopback import free_port

# A scratch image nobody here wrote: one static busybox serving rootfs/www from a shell-form
# entrypoint (its shell execs httpd). SPECs insert it with .format(image=…).
BUSYBOX_HTTPD_IMAGE = """\
[images.web]
base = "scratch"
copy = [{ src = "rootfs/", dest = "/" }]
entrypoint = ["/bin/busybox", "sh", "-c", "exec /bin/busybox httpd -f -p $PORT -h /www"]
"""


def write_busybox_root(folder: Path, index: str) -> Path:
    """`folder`/rootfs holding only bin/busybox (static) and www/index.html; returns it."""
    rootfs = folder / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    shutil.copy(shutil.which("busybox") or "/bin/busybox", rootfs / "bin" / "busybox")
    (rootfs / "www").mkdir()
    (rootfs / "www" / "index.html").write_text(index)
    return rootfs


class CliProject:
    """`corral init` has made (or will make) a project in `folder`; its router port is free."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()

    def corral(self, *args: str, check: bool = True,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run the CLI; a user mistake or a failure must never show a traceback."""
        done = subprocess.run([sys.executable, "-m", "corral", *args], cwd=self.folder,
                              capture_output=True, text=True, timeout=300,
                              env={**os.environ, **(env or {})})
        assert "Traceback" not in done.stderr, done.stderr
        if check:
            assert done.returncode == 0, f"corral {args}: {done.stdout}\n{done.stderr}"
        return done

    def json(self, *args: str) -> Any:
        return json.loads(self.corral(*args, "--json").stdout)

    def edit(self, pattern: str, replacement: str) -> None:
        """Replace the one match of `pattern` in corral.toml."""
        spec = self.folder / "corral.toml"
        text, count = re.subn(pattern, replacement, spec.read_text())
        assert count == 1, pattern
        spec.write_text(text)

    def request(self, path: str = "/", release: str | None = None) -> tuple[int, str]:
        """GET through the router: (status, the app's X-App-Version)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            connection.request("GET", path, headers={"X-Corral-Release": release}
                               if release else {})
            response = connection.getresponse()
            response.read()
            return response.status, response.getheader("X-App-Version", "")
        finally:
            connection.close()


# The machine-wide corral cache the tests share: a debootstrap base is made once per machine.
MACHINE_CACHE = Path(os.environ.get("CORRAL_TEST_CACHE",
                                    Path.home() / ".cache" / "corral-tests")) / "corral-cache"


class CachedProject(CliProject):
    """A project whose builds use the tests' machine-wide cache (bases made once)."""

    def corral(self, *args: str, check: bool = True,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return super().corral(*args, check=check,
                              env={"CORRAL_CACHE": str(MACHINE_CACHE), **(env or {})})


def children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def app_pid(outer: int) -> int:
    """The app inside an instance: outer bwrap -> the sandbox's init -> the app."""
    (init,) = children_of(outer)
    return children_of(init)[0]
