"""The pipeline with real git: a bare repository as the remote, commits pushed to it, real
builds, a test command in a sandbox, real deployments to staging and prod, smoke checks and
an approval gate. A failing test deploys nothing; a failing smoke check in staging leaves
prod untouched; `corral watch` follows the branch (poll and signed webhook), a newer commit
supersedes a waiting one, and after `corral rollback` only a newer commit moves prod; a
signed push to the controller's API runs the pipeline, an unsigned one is refused."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cli_project import CliProject
from loopback import free_port, poll

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

SECRET = "push-signing-secret"
PUSH_PATH = "/v1/pipeline/push"  # the controller's webhook (`corral watch`'s is /webhook)

SPEC = """\
[project]
name = "shop"

[images.web]
base = "scratch"
copy = [{{ src = "rootfs/", dest = "/" }}]
entrypoint = ["/bin/busybox", "sh", "-c", "exec /bin/busybox httpd -f -p $PORT -h /www"]

[services.web]
image = "web"
router = {{ listen = "127.0.0.1:{staging}" }}
health = {{ path = "/", interval = "200ms", timeout = "1s", healthy_after = 1 }}

[environments.staging]
default = true

[environments.prod]
require_passed = ["staging"]
[environments.prod.services.web]
listen = "127.0.0.1:{prod}"

[pipeline]
source = "{origin}"
branch = "main"
poll = "1h"   # the watch test moves it with webhooks only: no waiting on a clock

[[pipeline.stages]]
kind = "build"

[[pipeline.stages]]
kind = "test"
command = ["/bin/busybox", "grep", "-q", "ok", "/www/index.html"]
timeout = "30s"

[[pipeline.stages]]
kind = "deploy"
env = "staging"

[[pipeline.stages]]
kind = "smoke"
env = "staging"
path = "/health.html"
timeout = "2s"

[[pipeline.stages]]
kind = "promote"
from = "staging"
env = "prod"
approve = true
"""


class Repo:
    """The developer's clone of the bare remote: commit a page, push."""

    def __init__(self, folder: Path, origin: Path) -> None:
        self.folder = folder
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], check=True)
        subprocess.run(["git", "clone", "-q", str(origin), str(folder)], check=True,
                       capture_output=True)
        self.git("checkout", "-q", "-b", "main")

    def git(self, *args: str) -> str:
        return subprocess.run(["git", "-c", "user.name=dev", "-c", "user.email=dev@example",
                               *args], cwd=self.folder, check=True, capture_output=True,
                              text=True).stdout.strip()

    def push(self, index: str, health: bool = True) -> str:
        www = self.folder / "rootfs" / "www"
        (www / "index.html").write_text(index)
        (www / "health.html").unlink(missing_ok=True)
        if health:
            (www / "health.html").write_text("fine\n")
        self.git("add", "-A")
        self.git("commit", "-q", "-m", index.strip())
        self.git("push", "-q", "origin", "main")
        return self.git("rev-parse", "HEAD")


class Shop(CliProject):
    def __init__(self, folder: Path, repo: Repo) -> None:
        super().__init__(folder)
        self.repo = repo
        self.prod_port = free_port()
        self.api_port = free_port()  # staging's controller on TCP, where a git host pushes

    def page(self, port: int) -> str:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            connection.request("GET", "/")
            return connection.getresponse().read().decode()
        finally:
            connection.close()

    def runs(self) -> list[dict[str, Any]]:
        """The run records as `pipeline status --json` prints them, read from their files
        (polling through the CLI would cost a process start per look)."""
        folder = self.folder / ".corral" / "pipeline" / "runs"
        runs = []
        for path in sorted(folder.glob("*.json"), key=lambda p: int(p.stem)):
            try:
                runs.append(json.loads(path.read_text()))
            except ValueError:  # being created this instant
                continue
        return runs

    def run(self, commit: str | None = None) -> dict[str, Any]:
        """`corral pipeline run`, approving its gate when it waits there; the run record."""
        before = {r["id"] for r in self.runs()}
        process = subprocess.Popen([sys.executable, "-m", "corral", "pipeline", "run",
                                    *([commit] if commit else [])], cwd=self.folder,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            approve_when_waiting(self, before, process)
            _, stderr = process.communicate(timeout=300)
        finally:
            if process.poll() is None:
                process.kill()
        assert "Traceback" not in stderr, stderr
        (run,) = [r for r in self.runs() if r["id"] not in before]
        return run

    def digest(self, env: str) -> str:
        rows = self.json("releases", "web", "--env", env)["releases"]
        return str(next(r["image"] for r in rows if r["live"]))


def approve_when_waiting(shop: Shop, before: set[int], process: subprocess.Popen[str]) -> None:
    approved: set[int] = set()

    def state() -> str | None:
        if process.poll() is not None:
            return "done"
        mine = [r for r in shop.runs() if r["id"] not in before]
        # once: the run record says "waiting" until the runner sees the approval, and by a
        # second `approve` it may have moved on (an approval then rightly refused)
        if mine and mine[-1]["state"] == "waiting" and mine[-1]["id"] not in approved:
            shop.corral("approve", str(mine[-1]["id"]))
            approved.add(mine[-1]["id"])
        return None

    poll(state, 300, "the run to end (approving its gate)")


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    base = tmp_path_factory.mktemp("pipeline")
    origin = base / "origin.git"
    repo = Repo(base / "dev", origin)
    shop = Shop(base / "ops", repo)
    rootfs = repo.folder / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    (rootfs / "www").mkdir()
    import shutil

    shutil.copy(shutil.which("busybox") or "/bin/busybox", rootfs / "bin" / "busybox")
    spec = SPEC.format(staging=shop.port, prod=shop.prod_port, origin=origin)
    (repo.folder / "corral.toml").write_text(spec)
    (repo.folder / ".gitignore").write_text(".corral/\n")
    shop.commits = {"v1": repo.push("ok v1\n")}
    shop.folder.mkdir()
    (shop.folder / "corral.toml").write_text(spec)  # the ops folder: same spec, own state
    shop.corral("up", "-d", "--env", "staging", "--listen", f"127.0.0.1:{shop.api_port}",
                env={"CORRAL_WEBHOOK_SECRET": SECRET})
    shop.corral("up", "-d", "--env", "prod")
    yield shop
    for env in ("staging", "prod"):
        shop.corral("down", "--env", env, check=False)


def test_a_commit_goes_through_every_stage_to_prod_with_one_digest(shop: Shop) -> None:
    run = shop.run()
    assert run["state"] == "succeeded", run
    assert run["commit"] == shop.commits["v1"]
    assert shop.json("pipeline", "status")["runs"] == shop.runs()
    assert [(s["kind"], s["outcome"]) for s in run["stages"]] == [
        ("build", "passed"), ("test", "passed"), ("deploy", "passed"), ("smoke", "passed"),
        ("promote", "passed")]
    assert shop.page(shop.port) == shop.page(shop.prod_port) == "ok v1\n"
    digest = shop.digest("staging")
    assert shop.digest("prod") == digest
    assert run["stages"][0]["digests"]["web"] == digest  # built once, promoted as is
    entries = [e for e in shop.json("ledger", "--env", "prod")["entries"]
               if e["action"] == "pipeline.stage"]
    assert entries[-1]["detail"]["kind"] == "promote"
    assert entries[-1]["detail"]["commit"] == shop.commits["v1"]
    assert entries[-1]["detail"]["digests"] == {"web": digest}
    assert entries[-1]["detail"]["outcome"] == "passed"
    assert entries[-1]["detail"]["seconds"] >= 0
    staging_kinds = [e["detail"]["kind"] for e in shop.json("ledger", "--env", "staging")[
        "entries"] if e["action"] == "pipeline.stage"]
    assert staging_kinds == ["build", "test", "deploy", "smoke"]
    # DORA's lead time in prod runs from the commit's time to live there
    lead = shop.json("dora", "--env", "prod")["lead_time"]["median_seconds"]
    assert lead is not None and 0 <= lead <= run["ended_at"] - run["commit_time"] + 1


def test_a_failing_test_stage_deploys_nothing(shop: Shop) -> None:
    shop.commits["v2"] = shop.repo.push("bad v2\n")
    run = shop.run()
    assert run["state"] == "failed"
    assert [s["outcome"] for s in run["stages"]] == ["passed", "failed", "pending",
                                                      "pending", "pending"]
    assert "exit code 1" in run["stages"][1]["reason"]
    assert shop.page(shop.port) == shop.page(shop.prod_port) == "ok v1\n"


def test_a_failing_smoke_check_in_staging_leaves_prod_untouched(shop: Shop) -> None:
    prod_digest = shop.digest("prod")
    shop.commits["v3"] = shop.repo.push("ok v3\n", health=False)
    run = shop.run()
    assert run["state"] == "failed"
    assert [s["outcome"] for s in run["stages"]] == ["passed", "passed", "passed", "failed",
                                                      "pending"]
    assert "status 404" in run["stages"][3]["reason"]
    assert shop.page(shop.port) == "ok v3\n"
    assert shop.page(shop.prod_port) == "ok v1\n" and shop.digest("prod") == prod_digest


def _webhook(address: str, body: bytes, secret: str | None, path: str = "/webhook") -> int:
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        mac = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        headers["X-Hub-Signature-256"] = "sha256=" + mac
    host, _, port = address.rpartition(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        connection.request("POST", path, body=body, headers=headers)
        return connection.getresponse().status
    finally:
        connection.close()


def test_watch_follows_pushes_supersedes_and_lets_a_rollback_stand(shop: Shop) -> None:
    address = f"127.0.0.1:{free_port()}"
    push = json.dumps({"ref": "refs/heads/main"}).encode()
    head_file = shop.folder / ".corral" / "pipeline" / "watched-head"
    shop.commits["v4"] = shop.repo.push("ok v4\n")
    watcher = subprocess.Popen([sys.executable, "-m", "corral", "watch", "--webhook", address],
                               cwd=shop.folder, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "CORRAL_WEBHOOK_SECRET": SECRET})
    try:
        # the watcher's first look finds v4; its run waits at prod's approval gate
        run4 = poll(lambda: next((r for r in shop.runs() if r["commit"] == shop.commits["v4"]
                                  and r["state"] == "waiting"), None), 120, "v4's run waiting")
        assert _webhook(address, push, None) == 401  # unsigned: ignored
        assert _webhook(address, push, "wrong") == 401
        for name in ("v5", "v6"):  # v5 waits behind v4, then v6 replaces it
            shop.commits[name] = shop.repo.push(f"ok {name}\n")
            assert _webhook(address, push, SECRET) == 204
            poll(lambda n=name: head_file.exists() and head_file.read_text() ==  # type: ignore[misc]
                 shop.commits[n], 30, f"the watcher to see {name}")
        superseded = [r for r in shop.runs() if r["commit"] == shop.commits["v5"]]
        assert [r["state"] for r in superseded] == ["superseded"]
        shop.corral("approve", str(run4["id"]))
        run6 = poll(lambda: next((r for r in shop.runs() if r["commit"] == shop.commits["v6"]
                                  and r["state"] == "waiting"), None), 120, "v6's run waiting")
        assert shop.page(shop.prod_port) == "ok v4\n"
        shop.corral("approve", str(run6["id"]))
        poll(lambda: shop.page(shop.prod_port) == "ok v6\n", 120, "prod on v6")

        # rollback wins: prod goes back to v4 and stays there until a newer commit
        rolled = shop.corral("rollback", "web", "--env", "prod", check=False)
        assert rolled.returncode == 0, rolled.stdout + rolled.stderr
        assert shop.page(shop.prod_port) == "ok v4\n"
        again = shop.run(shop.commits["v6"])  # even asked explicitly, v6 is not redeployed
        assert again["state"] == "skipped"
        assert "rolled back here" in again["stages"][4]["reason"]
        assert shop.page(shop.prod_port) == "ok v4\n"
        shop.commits["v7"] = shop.repo.push("ok v7\n")
        assert _webhook(address, push, SECRET) == 204
        run7 = poll(lambda: next((r for r in shop.runs() if r["commit"] == shop.commits["v7"]
                                  and r["state"] == "waiting"), None), 120, "v7's run waiting")
        shop.corral("approve", str(run7["id"]))
        poll(lambda: shop.page(shop.prod_port) == "ok v7\n", 120, "prod on v7")
        by_watcher = [r["trigger"] for r in shop.runs() if r["commit"] == shop.commits["v6"]]
        assert by_watcher == ["webhook", "manual"]  # the watcher never re-ran v6
    finally:
        watcher.send_signal(signal.SIGINT)
        try:
            watcher.wait(timeout=60)
        except subprocess.TimeoutExpired:
            watcher.kill()


def test_a_signed_push_to_the_controller_runs_the_pipeline_and_an_unsigned_one_nothing(
        shop: Shop) -> None:
    address = f"127.0.0.1:{shop.api_port}"
    push = json.dumps({"ref": "refs/heads/main", "after": "ignored"}).encode()
    before = {r["id"] for r in shop.runs()}
    shop.commits["v8"] = shop.repo.push("ok v8\n")
    assert _webhook(address, push, None, PUSH_PATH) == 401
    assert _webhook(address, push, "wrong", PUSH_PATH) == 401
    refused = shop.json("ledger", "--env", "staging", "--action", "api.auth_failed")["entries"]
    assert [e["detail"]["reason"] for e in refused[-2:]] == ["no valid push signature"] * 2
    assert _webhook(address, push, SECRET, PUSH_PATH) == 200
    # the controller runs `corral pipeline run` for v8: staging first, then prod's gate
    run = poll(lambda: next((r for r in shop.runs() if r["id"] not in before
                             and r["state"] == "waiting"), None), 120, "v8's run waiting")
    assert (run["commit"], run["trigger"]) == (shop.commits["v8"], "webhook")
    assert shop.page(shop.port) == "ok v8\n"
    shop.corral("approve", str(run["id"]))
    poll(lambda: next(r for r in shop.runs() if r["id"] == run["id"])["state"]
         not in ("waiting", "running"), 120, "v8's run to end")
    assert next(r for r in shop.runs() if r["id"] == run["id"])["state"] == "succeeded"
    assert shop.page(shop.prod_port) == "ok v8\n"
    # one run in all: the refused pushes queued nothing
    assert [(r["commit"], r["trigger"]) for r in shop.runs() if r["id"] not in before] == [
        (shop.commits["v8"], "webhook")]
    log = (shop.folder / ".corral" / "pipeline" / "pushes.log").read_text()
    assert "succeeded" in log
