"""Carrying out one stage of a pipeline run against a checkout of its commit.

Each function returns (outcome, reason, digests): "passed", "failed" or "skipped". Deploys
and promotions go through the environments' controllers, reached by a `Deliverer` the edge
supplies (the CLI's API client), so this module runs nothing but git, builds, test
sandboxes and smoke requests itself.
"""

from __future__ import annotations

import http.client
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from corral.core.pipeline import deploy_verdict
from corral.engine.adapters import sandbox_driver
from corral.engine.images.build import build_image
from corral.engine.pipeline.source import Source
from corral.engine.workspace import Workspace, store_if_any
from corral.errors import CorralError
from corral.ports.driver import HasLogPaths
from corral.ports.records import InstanceSpec
from corral.spec.pipeline import StageSpec

Result = tuple[str, str | None, dict[str, str]]


class Deliverer(Protocol):
    """How a run reaches an environment's controller; each returns the deployment's
    outcome ("succeeded", "rolled back", "failed", "unchanged", …)."""

    def deploy(self, ws: Workspace, service: str) -> str: ...

    def promote(self, target: Workspace, source_env: str, service: str) -> str: ...


@dataclass
class Checkout:
    """A commit checked out for a run, and the project state every stage works on."""

    tree: Path
    commit: str
    state_root: Path
    source: Source

    def workspace(self, env: str | None) -> Workspace:
        return Workspace.open(self.tree / "corral.toml", env, self.state_root)


def build(checkout: Checkout, env: str | None) -> Result:
    ws = checkout.workspace(env)
    digests = {name: build_image(ws, name) for name in sorted(ws.loaded.spec.images)}
    return "passed", None, digests


def test(checkout: Checkout, stage: StageSpec, env: str | None, run_id: int) -> Result:
    """Run the stage's command in a sandbox from the freshly built image (read-only root,
    private /tmp, no capabilities, as instances run); exit 0 passes."""
    ws = checkout.workspace(env)
    name = stage.image or next(iter(ws.loaded.spec.images))
    digest = build_image(ws, name)
    image = ws.images.config(digest)
    driver = sandbox_driver(checkout.state_root / "pipeline" / "sandbox")
    spec = InstanceSpec(id=f"test-{run_id}-{stage_tag(stage)}", service="pipeline-test",
                        release=run_id, image_digest=digest, rootfs=str(ws.images.unpack(digest)),
                        argv=stage.command, env=dict(image.env), workdir=image.workdir or "/",
                        user=image.user)
    driver.stop(spec.id, grace=0)  # a rerun of the same run id starts clean
    driver.start(spec)
    deadline = time.monotonic() + stage.timeout
    try:
        while (seen := driver.inspect(spec.id)) is not None and seen.running:
            if time.monotonic() > deadline:
                return "failed", f"the test ran over its timeout ({stage.timeout:g} s)", \
                    {name: digest}
            time.sleep(0.05)
        code = seen.exit_code if seen is not None else None
        if code == 0:
            return "passed", None, {name: digest}
        return "failed", f"exit code {code}: {_tail(driver, spec.id)}", {name: digest}
    finally:
        driver.stop(spec.id, grace=1.0)


def _tail(driver: object, instance_id: str) -> str:
    if not isinstance(driver, HasLogPaths):
        return ""
    lines: list[str] = []
    for path in driver.log_paths(instance_id):
        try:
            lines += path.read_text(errors="replace").splitlines()
        except OSError:
            continue
    return " | ".join(lines[-5:])


def stage_tag(stage: StageSpec) -> str:
    return f"{stage.kind}-{stage.env or 'all'}"


def deploy(checkout: Checkout, stage: StageSpec, deliverer: Deliverer) -> Result:
    return _deliver(checkout, stage, deliverer.deploy)


def promote(checkout: Checkout, stage: StageSpec, deliverer: Deliverer) -> Result:
    def promoted(target: Workspace, service: str) -> str:
        return deliverer.promote(target, str(stage.from_), service)

    return _deliver(checkout, stage, promoted, (CorralError,))


def _deliver(checkout: Checkout, stage: StageSpec, act: Callable[[Workspace, str], str],
             failing: tuple[type[CorralError], ...] = ()) -> Result:
    """`act` (deploy or promote) on each of the stage's services in turn, after the
    checks that skip a commit (older than live, rolled back there); stops at the first
    that does not succeed. An error of type `failing` fails the stage with its message."""
    ws = checkout.workspace(stage.env)
    digests: dict[str, str] = {}
    for service in _services(ws, stage):
        refusal = _refusal(checkout, ws, service)
        if refusal is not None:
            return "skipped", refusal, digests
        try:
            outcome = act(ws, service)
        except failing as exc:
            return "failed", exc.message, digests
        digests[service] = _live_digest(ws, service)
        if outcome not in ("succeeded", "unchanged"):
            return "failed", f"{ws.qualified(service)}: deployment {outcome}", digests
    return "passed", None, digests


def smoke(checkout: Checkout, stage: StageSpec) -> Result:
    """GET `path` through the environment's router until it answers as expected, or the
    stage's timeout runs out."""
    ws = checkout.workspace(stage.env)
    service = stage.service or next((n for n, s in sorted(ws.loaded.spec.services.items())
                                     if s.router is not None), None)
    spec = ws.loaded.spec.services.get(service or "")
    if spec is None or spec.router is None:
        return "failed", f"no routed service to smoke-test in {stage.env}", {}
    host, _, port = spec.router.listen.rpartition(":")
    deadline = time.monotonic() + stage.timeout
    last = "no answer"
    while True:
        last = _smoke_once(host, int(port), stage)
        if last == "":
            return "passed", None, {}
        if time.monotonic() > deadline:
            return "failed", f"GET {stage.path} on {ws.qualified(str(service))}: {last}", {}
        time.sleep(0.2)


def _smoke_once(host: str, port: int, stage: StageSpec) -> str:
    """"" when the answer passes, else what was wrong with it."""
    connection = http.client.HTTPConnection(host.strip("[]"), port, timeout=5)
    try:
        connection.request("GET", stage.path)
        answer = connection.getresponse()
        body = answer.read().decode(errors="replace")
    except (OSError, http.client.HTTPException) as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        connection.close()
    if answer.status != stage.expect_status:
        return f"status {answer.status}, expected {stage.expect_status}"
    if stage.expect_body is not None and stage.expect_body not in body:
        return f"the answer lacks {stage.expect_body!r}"
    return ""


def _services(ws: Workspace, stage: StageSpec) -> list[str]:
    return [stage.service] if stage.service else sorted(ws.loaded.spec.services)


def _refusal(checkout: Checkout, ws: Workspace, service: str) -> str | None:
    """Why this run must not move `service` in `ws`'s environment (core.pipeline)."""
    store = store_if_any(ws)
    if store is None:
        return None
    live = store.live_release(service)
    release = store.get_release(service, live) if live is not None else None
    live_commit = release.git_commit if release else None
    bad = store.bad_releases(service)
    rolled_back = {r.git_commit for r in store.list_releases(service)
                   if r.version in bad and r.git_commit}
    older = live_commit is not None and checkout.source.is_ancestor(checkout.commit,
                                                                   live_commit)
    return deploy_verdict(checkout.commit, live_commit, older, rolled_back)


def _live_digest(ws: Workspace, service: str) -> str:
    store = store_if_any(ws)
    live = store.live_release(service) if store else None
    release = store.get_release(service, live) if store and live is not None else None
    return release.image_digest if release else ""
