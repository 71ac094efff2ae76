"""`corral backup`, `backup verify` and `restore` as a user runs them: a backup taken while
the controller runs and a blue-green deployment waits at its gate is restored into another
folder after the first machine is gone; the restored project pulls its images by digest
from a real registry, starts its instances, resumes the deployment, and continues the same
ledger chain. A truncated or altered backup is refused with a clear error."""

from __future__ import annotations

import gzip
import io
import json
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cli_project import BUSYBOX_HTTPD_IMAGE, CliProject, write_busybox_root
from loopback import poll
from postgres import PostgresCluster
from registry_process import RegistryProcess, is_installed

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
if not is_installed():
    pytest.skip("docker-registry is not installed", allow_module_level=True)

SPEC = """\
[project]
name = "shop"

{image}
[services.web]
image = "web"
replicas = 2
router = {{ listen = "127.0.0.1:{port}" }}
health = {{ path = "/", interval = "300ms", timeout = "1s", healthy_after = 1 }}
strategy = "blue-green"
blue_green = {{ auto_promote = false, preview = false }}
"""


class Project(CliProject):
    def page(self) -> str:
        import http.client

        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            connection.request("GET", "/")
            return connection.getresponse().read().decode()
        except OSError:
            return ""
        finally:
            connection.close()

    def service(self) -> dict[str, Any]:
        return self.json("status", "web")["services"][0]  # type: ignore[no-any-return]

    def waiting_with_v2_ready(self) -> bool:
        status = self.service()
        last = status["last_deployment"]
        return bool(last and last["outcome"] == "running" and any(
            i["release"] == "v2" and i["state"] == "ready" for i in status["instances"]))


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    started = RegistryProcess(tmp_path_factory.mktemp("registry"))
    yield started
    started.stop()


@pytest.fixture(scope="module")
def backup(tmp_path_factory: pytest.TempPathFactory, registry: RegistryProcess
           ) -> Iterator[tuple[Project, Path, list[dict[str, Any]]]]:
    """Machine A: v1 live, v2 waiting at its gate; a backup taken then; then A is gone."""
    first = Project(tmp_path_factory.mktemp("machine-a"))
    write_busybox_root(first.folder, "v1\n")
    (first.folder / "corral.toml").write_text(SPEC.format(port=first.port,
                                                          image=BUSYBOX_HTTPD_IMAGE))
    first.corral("build")
    first.corral("push", f"{registry.address}/shop/web:v1", "--image", "web")
    first.corral("up", "-d")
    try:
        first.corral("deploy", "web")
        poll(lambda: first.page() == "v1\n", 60, "v1 serving on machine A")
        (first.folder / "rootfs/www/index.html").write_text("v2\n")
        first.corral("build")
        first.corral("push", f"{registry.address}/shop/web:v2", "--image", "web")
        deploy = subprocess.Popen([sys.executable, "-m", "corral", "deploy", "web"],
                                  cwd=first.folder, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        poll(first.waiting_with_v2_ready, 120, "v2 ready at the blue-green gate")
        file = first.folder.parent / "shop.backup.tar.gz"
        first.corral("backup", "-o", str(file))
        ledger = first.json("ledger")["entries"]
    finally:
        first.corral("down", check=False)  # machine A is lost
    deploy.wait(60)
    yield first, file, ledger


def test_a_backup_verifies_and_names_what_it_holds(
        backup: tuple[Project, Path, list[dict[str, Any]]]) -> None:
    first, file, _ = backup
    summary = first.json("backup", "verify", str(file))
    assert summary["ok"] is True and summary["project"] == "shop"
    assert summary["live"] == {"web": 1} and summary["releases"] == 2
    assert "state.json" in summary["members"] and "logs.db" in summary["members"]


def test_a_restored_project_serves_resumes_and_continues_the_ledger(
        backup: tuple[Project, Path, list[dict[str, Any]]],
        tmp_path_factory: pytest.TempPathFactory, registry: RegistryProcess) -> None:
    first, file, ledger_a = backup
    second = Project(tmp_path_factory.mktemp("machine-b"))
    second.port = first.port  # the releases listen where they listened on machine A
    shutil.copy(first.folder / "corral.toml", second.folder / "corral.toml")
    restored = second.json("restore", str(file))
    assert restored["live"] == {"web": 1}
    assert len(restored["images"]) == 2  # v1 (live) and v2 (the deployment's target)
    for digest, outcome in restored["images"].items():  # machine B had no image at all
        assert outcome == f"pulled from {registry.address}/shop/web@{digest}"
    second.corral("up", "-d")
    try:
        poll(lambda: second.page() == "v1\n", 120, "v1 serving on machine B")
        poll(second.waiting_with_v2_ready, 120, "the resumed deployment at its gate on B")
        second.corral("promote", "web")
        poll(lambda: second.service()["live_release"] == 2, 120, "v2 live on promote")
        poll(lambda: second.page() == "v2\n", 60, "v2 serving on machine B")
        verdict = second.json("ledger", "verify")
        assert verdict["ok"] is True
        head = restored["ledger"]["head_seq"]
        ledger_b = second.json("ledger")["entries"]
        assert ledger_a[head - 1]["action"] != "backup.taken"  # the backup's own entry is A's
        assert ledger_b[:head] == ledger_a[:head]  # the same chain, continued on B
        assert ledger_b[head]["action"] == "backup.restored"

        # The restore drill, run on the restored project while it serves.
        drill = second.json("drill", "restore")
        assert drill["ok"] is True and drill["services"] == {"web": "serves"}
        assert drill["ledger"]["ok"] is True and drill["rto_seconds"] > 0
        recorded = second.json("ledger", "--action", "drill")["entries"]
        assert [e["detail"]["rto_seconds"] for e in recorded] == [drill["rto_seconds"]]
        assert second.page() == "v2\n"  # the drill touched nothing that runs
        assert not list(Path("/tmp").glob("corral-drill-*"))
    finally:
        second.corral("down", check=False)


def test_a_truncated_backup_is_refused_with_a_clear_error(
        backup: tuple[Project, Path, list[dict[str, Any]]], tmp_path: Path) -> None:
    first, file, _ = backup
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(file.read_bytes()[: file.stat().st_size // 2])
    done = first.corral("backup", "verify", str(cut), check=False)
    assert done.returncode == 4
    assert "truncated" in done.stderr and "hint" in done.stderr


def test_an_altered_backup_is_refused_and_restores_nothing(
        backup: tuple[Project, Path, list[dict[str, Any]]], tmp_path: Path) -> None:
    first, file, _ = backup
    altered = tmp_path / "altered.tar.gz"
    altered.write_bytes(rewrite(file, "state.json", lambda text: text.replace(
        '"replicas":2', '"replicas":9', 1)))
    done = first.corral("backup", "verify", str(altered), check=False)
    assert done.returncode == 4 and "state.json does not match its sha256" in done.stderr
    empty = Project(tmp_path / "empty")
    empty.folder.mkdir()
    shutil.copy(first.folder / "corral.toml", empty.folder / "corral.toml")
    refused = empty.corral("restore", str(altered), check=False)
    assert refused.returncode == 4
    assert not (empty.folder / ".corral" / "logs.db").exists()


def rewrite(file: Path, member: str, change: Any) -> bytes:
    """The archive at `file` with `member`'s text changed and everything else as it was."""
    out = io.BytesIO()
    with tarfile.open(file, "r:gz") as source, \
            tarfile.open(fileobj=out, mode="w:gz") as target:
        for info in source:
            data = source.extractfile(info).read()  # type: ignore[union-attr]
            if info.name == member:
                data = change(data.decode()).encode()
                info.size = len(data)
            target.addfile(info, io.BytesIO(data))
    assert gzip.decompress(out.getvalue())
    return out.getvalue()


def test_a_backup_into_a_project_that_has_history_is_refused(
        backup: tuple[Project, Path, list[dict[str, Any]]]) -> None:
    first, file, _ = backup
    done = first.corral("restore", str(file), check=False)
    assert done.returncode != 0 and "not empty" in done.stderr
    assert json.loads(first.corral("ledger", "verify", "--json").stdout)["ok"] is True


def test_a_sqlite_backup_restores_into_an_empty_postgresql_database(
        backup: tuple[Project, Path, list[dict[str, Any]]], tmp_path: Path,
        postgres: PostgresCluster) -> None:
    first, file, ledger_a = backup
    target = Project(tmp_path / "on-postgresql")
    target.folder.mkdir()
    shutil.copy(first.folder / "corral.toml", target.folder / "corral.toml")
    env = {"CORRAL_STORE": postgres.create_database()}
    restored = json.loads(target.corral("restore", str(file), "--json", env=env).stdout)
    head = restored["ledger"]["head_seq"]
    verdict = json.loads(target.corral("ledger", "verify", "--json", env=env).stdout)
    assert verdict["ok"] is True and verdict["checked"] == head + 1  # + backup.restored
    entries = json.loads(target.corral("ledger", "--json", env=env).stdout)["entries"]
    assert entries[:head] == ledger_a[:head]
    assert not (target.folder / ".corral" / "state.db").exists()  # the state is in PostgreSQL
