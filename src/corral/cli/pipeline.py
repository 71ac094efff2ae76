"""Pipeline commands: `pipeline run [COMMIT]`, `pipeline status`, `watch`, `approve RUN`.

Stages deploy through each environment's controller (its API), as `corral deploy` and
`corral promote --from --to` do; the run itself happens in this process.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import click

from corral.cli import render
from corral.cli.main import Context, cli, command
from corral.errors import ControllerError, CorralError


class ApiDeliverer:
    """Reaches an environment's controller through its API (engine/pipeline/stages.py's
    Deliverer)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def _client(self, env: str | None) -> Any:
        client = Context(self.ctx.spec_file, True, env).client()
        if not client.is_up():
            raise ControllerError(f"the controller of environment {env} is not running",
                                  hint=f"start it: corral up -d --env {env}")
        return client

    def _outcome(self, events: Any) -> str:
        outcome = "failed"
        for event in events:
            if event.get("type") == "unchanged":
                return "unchanged"
            if event.get("type") == "result":
                outcome = str(event.get("outcome", "failed"))
        return outcome

    def deploy(self, ws: Any, service: str) -> str:
        from corral.engine.delivery.request import deploy_request

        request = deploy_request(ws, service)
        return self._outcome(self._client(ws.env).stream("/v1/deploy", request.api_body()))

    def promote(self, target: Any, source_env: str, service: str) -> str:
        from corral.engine.delivery.promotion import promotion_request, record_promotion

        request = promotion_request(target, source_env, service)
        outcome = self._outcome(self._client(target.env).stream("/v1/deploy",
                                                                request.api_body()))
        record_promotion(target, service, source_env, request, [outcome])
        return outcome


def _pipeline(ctx: Context) -> Any:
    from corral.engine.pipeline.run import Pipeline
    from corral.engine.workspace import Workspace

    ws = Workspace.open(ctx.spec_file, _any_env(ctx))
    return Pipeline(ws, ApiDeliverer(ctx), None if ctx.as_json else render.say)


def _any_env(ctx: Context) -> str | None:
    """The pipeline spans environments; the project workspace is opened in the default
    (or the first) so a spec whose environments have no default still opens."""
    if ctx.env is not None:
        return ctx.env
    from corral.spec.load import load_spec

    environments = load_spec(ctx.spec_file).spec.environments
    default = next((n for n, e in environments.items() if e.default), None)
    return default or next(iter(sorted(environments)), None)


@cli.group()
def pipeline() -> None:
    """Take commits of the [pipeline] branch through build, test, deploy, smoke, promote."""


@pipeline.command("run")
@command
@click.argument("commit", required=False)
@click.option("--trigger", default="manual", hidden=True,
              type=click.Choice(["manual", "webhook"]),
              help="What started the run, for its record (the controller's push webhook).")
def run_(ctx: Context, commit: str | None, trigger: str) -> None:
    """Run the pipeline once for COMMIT (default: the branch's head).

    Exit code: 0 succeeded, 1 failed, 2 skipped (nothing to move)."""
    run = _pipeline(ctx).run(commit, trigger)
    ctx.out(run.view(), lambda: None)
    sys.exit({"succeeded": 0, "skipped": 2}.get(run.state, 1))


@pipeline.command()
@command
@click.option("-n", "--limit", default=20, show_default=True, help="The newest N runs.")
def status(ctx: Context, limit: int) -> None:
    """Show pipeline runs: commit, state, each stage's outcome and time."""
    from corral.engine.pipeline.runs import RunBook
    from corral.engine.workspace import Workspace

    ws = Workspace.open(ctx.spec_file, _any_env(ctx))
    runs = [r.view() for r in RunBook(ws.image_dir / "pipeline").all()][-limit:]

    def human() -> None:
        if not runs:
            render.say("no pipeline runs yet: corral pipeline run, or corral watch")
        for run in runs:
            stages = "  ".join(f"{s['kind']}{'@' + s['env'] if s['env'] else ''}="
                               f"{s['outcome']}"
                               + (f"({s['seconds']:.1f}s)" if s["seconds"] is not None else "")
                               for s in run["stages"])
            stamp = time.strftime("%m-%d %H:%M:%S", time.localtime(run["created_at"]))
            render.line(f"#{run['id']}  {run['commit'][:12]}  {stamp}  {run['state']:<10}  "
                        f"{stages}")

    ctx.out({"runs": runs}, human)


@cli.command()
@command
@click.argument("run", type=int)
def approve(ctx: Context, run: int) -> None:
    """Open the approval gate (approve = true) pipeline run RUN waits at."""
    from corral.engine.pipeline.runs import RunBook
    from corral.engine.workspace import Workspace, current_actor

    ws = Workspace.open(ctx.spec_file, _any_env(ctx))
    RunBook(ws.image_dir / "pipeline").approve(run, current_actor())
    ctx.out({"run": run, "approved": True}, lambda: render.say(f"run {run} approved"))


@cli.command()
@command
@click.option("--webhook", "webhook", default=None, metavar="HOST:PORT",
              help="Also listen for signed push webhooks here (secret: "
              "$CORRAL_WEBHOOK_SECRET).")
def watch(ctx: Context, webhook: str | None) -> None:
    """Follow the [pipeline] branch: run the pipeline for each new commit, one at a time
    (a newer commit supersedes one still waiting). Ctrl-C stops."""
    from corral.engine.pipeline.watch import Watcher

    pipeline_ = _pipeline(ctx)
    watcher = Watcher(pipeline_)
    server = None
    if webhook is not None:
        from corral.api.webhook import WebhookServer

        secret = os.environ.get("CORRAL_WEBHOOK_SECRET", "").encode()
        if not secret:
            raise CorralError("--webhook needs the shared secret in CORRAL_WEBHOOK_SECRET",
                              hint="the same secret the git host signs pushes with")
        server = WebhookServer(webhook, secret, pipeline_.spec.branch, watcher.push_received)
        server.start()
        render.say(f"webhook on http://{server.address}/webhook")
    watcher.start()
    render.say(f"watching {pipeline_.source.url} {pipeline_.spec.branch} "
               f"(every {pipeline_.spec.poll:g} s)")
    try:
        watcher.stopping.wait()
    except KeyboardInterrupt:
        pass
    finally:
        watcher.stop()
        if server is not None:
            server.stop()
