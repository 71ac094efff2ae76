"""A real registry for tests: Debian's `docker-registry` on a loopback port with its own
storage folder, stopped by pid."""

from __future__ import annotations

import http.client
import shutil
import subprocess
from pathlib import Path

from loopback import free_port, poll


def is_installed() -> bool:
    return shutil.which("docker-registry") is not None


class RegistryProcess:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.address = f"127.0.0.1:{free_port()}"
        (folder / "config.yml").write_text(
            "version: 0.1\nlog:\n  level: warn\n"
            f"storage:\n  filesystem:\n    rootdirectory: {folder / 'storage'}\n"
            f"http:\n  addr: {self.address}\n")
        with (folder / "registry.log").open("wb") as log:
            self.process = subprocess.Popen(
                ["docker-registry", "serve", str(folder / "config.yml")],
                stdout=log, stderr=subprocess.STDOUT)
        poll(self._answers, 30, "docker-registry to answer")

    def _answers(self) -> bool:
        host, port = self.address.split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=2)
        try:
            connection.request("GET", "/v2/")
            return connection.getresponse().status == 200
        except OSError:
            return False
        finally:
            connection.close()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
