"""Commands of progressive delivery: deploy, promote, abort, rollback.

Exit codes say the outcome (docs/commands/deploy.md): 0 succeeded, 3 rolled back,
4 aborted, 1 failed or error. Each command calls the controller's API and renders.
"""

from __future__ import annotations

import itertools
import json
import sys
from collections.abc import Iterator
from typing import Any

import click

from corral.cli import render
from corral.cli.main import Context, cli, command
from corral.cli.params import RELEASE
from corral.errors import ControllerError, DeployError

OUTCOME_EXIT = {"succeeded": 0, "rolled back": 3, "aborted": 4, "failed": 1, "unchanged": 0}


def _follow(ctx: Context, events: Iterator[dict[str, Any]]) -> list[dict[str, Any]]:
    """Show (or stream as JSON lines) a deployment's events; the result events.

    The view (rich) is loaded once the first event is in: the request goes out first."""
    events = iter(events)
    first = next(events, None)
    if first is None:
        return []
    if first["type"] == "unchanged":  # the release is live already: no deployment ran
        if ctx.as_json:
            click.echo(json.dumps(first))
        else:
            render.console.print(f"nothing to deploy: {first['service']} v{first['release']} "
                                 f"is live (image {render.short(first['image'])})")
        return [{**first, "outcome": "unchanged"}]
    from corral.cli.progress import DeployView

    results = []
    with DeployView() if not ctx.as_json else _Quiet() as view:
        for event in itertools.chain([first], events):
            if ctx.as_json:
                click.echo(json.dumps(event))
            else:
                view.add(event)
            if event["type"] == "result":
                results.append(event)
    return results


class _Quiet:
    def __enter__(self) -> _Quiet:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def add(self, event: dict[str, Any]) -> None:
        return None


def _exit_for(ctx: Context, results: list[dict[str, Any]]) -> None:
    if not results:
        raise DeployError("the controller ended the deployment without a result",
                          hint="see .corral/run/controller.log")
    # The view has shown each outcome and its reason (cli/progress.py).
    sys.exit(max(OUTCOME_EXIT.get(r["outcome"], 1) for r in results))


def _client(ctx: Context) -> Any:
    client = ctx.client()
    if not client.is_up():
        raise ControllerError("the controller is not running", hint="start it: corral up -d")
    return client


@cli.command()
@command
@click.argument("service", required=False)
@click.option("--image", default=None, help="Deploy this image (digest or NAME[:TAG]).")
@click.option("--strategy", type=click.Choice(["rolling", "blue-green", "canary"]),
              default=None, help="Run this deployment with it (not part of the release).")
@click.option("--force", is_flag=True, help="Deploy a release even if it is marked bad.")
def deploy(ctx: Context, service: str | None, image: str | None, strategy: str | None,
           force: bool) -> None:
    """Build if needed, record a release and move the service to it with its strategy.

    Exit code: 0 succeeded, 3 rolled back, 4 aborted, 1 failed."""
    services = [service] if service else sorted(ctx.workspace().loaded.spec.services)
    deploy_services(ctx, services, image, strategy, force)


def deploy_services(ctx: Context, services: list[str], image: str | None,
                    strategy: str | None, force: bool) -> None:
    """Deploy each service in turn through the controller, showing its events; exits with
    the worst outcome's code (`deploy`, and `secret rotate`'s roll-out)."""
    from corral.engine.delivery.request import deploy_request

    ws = ctx.workspace()
    client = _client(ctx)
    results = []
    for name in services:
        request = deploy_request(ws, name, image, None if ctx.as_json else render.progress)
        # --strategy runs this deployment only; it is not part of the release.
        results += _follow(ctx, client.stream("/v1/deploy", request.api_body(force, strategy)))
    _exit_for(ctx, results)


@cli.command()
@command
@click.argument("service")
@click.option("--from", "source", default=None, metavar="ENV",
              help="Environment promotion: take the digest live and healthy in ENV …")
@click.option("--to", "target", default=None, metavar="ENV",
              help="… and deploy it, never rebuilt, to ENV with ENV's own config.")
def promote(ctx: Context, service: str, source: str | None, target: str | None) -> None:
    """Two meanings, told apart by --from/--to. Without them: let a blue-green deployment
    waiting at its gate switch all traffic to the new fleet. With them: deploy to the
    environment --to the exact image digest live and healthy in --from.

    Exit code (with --from/--to): as `corral deploy`."""
    if source is not None or target is not None:
        _promote_between(ctx, service, source, target)
        return
    answer = _client(ctx).post(f"/v1/services/{service}/promote", {})
    ctx.out(answer, lambda: render.say(
        f"promotion of {service} requested (deployment #{answer['deployment']})"))


def _promote_between(ctx: Context, service: str, source: str | None,
                     target: str | None) -> None:
    from corral.engine.delivery.promotion import promotion_request, record_promotion
    from corral.engine.workspace import Workspace

    if source is None or target is None:
        raise DeployError("environment promotion needs both --from and --to",
                          hint=f"corral promote {service} --from staging --to prod")
    ws = Workspace.open(ctx.spec_file, target)
    request = promotion_request(ws, source, service)
    to = Context(ctx.spec_file, ctx.as_json, target)
    results = _follow(to, _client(to).stream("/v1/deploy", request.api_body()))
    record_promotion(ws, service, source, request, [r["outcome"] for r in results])
    _exit_for(ctx, results)


@cli.command()
@command
@click.argument("service")
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Wait for the deployment to end.")
def abort(ctx: Context, service: str, wait: bool) -> None:
    """Stop the running deployment of SERVICE: all traffic back to the previous fleet.

    Exit code: 0 once the deployment ended aborted (with --wait): the abort succeeded;
    1 if it ended otherwise (it finished or rolled back first)."""
    client = _client(ctx)
    answer = client.post(f"/v1/services/{service}/abort", {})
    outcome = "running"
    if wait:  # the controller waits (engine/delivery/outcome.py), up to 300 s: then "running"
        for event in client.stream(f"/v1/deployments/{answer['deployment']}/wait", {}):
            outcome = event.get("outcome", outcome)
    data = {**answer, "outcome": outcome}
    ctx.out(data, lambda: render.say(
        f"deployment #{answer['deployment']} of {service}: {outcome}"))
    sys.exit(0 if not wait or outcome == "aborted" else 1)


@cli.command()
@command
@click.argument("service")
@click.option("--to", "to", type=RELEASE, default=None, help="Release to go back to, e.g. v3 "
              "(default: the one before the live release).")
def rollback(ctx: Context, service: str, to: int | None) -> None:
    """Put SERVICE back on an earlier release: one router update when its fleet is still
    warm, else a fast redeploy without analysis. The release left is marked bad."""
    events = _client(ctx).stream("/v1/rollback", {"service": service, "to": to})
    _exit_for(ctx, _follow(ctx, events))
