"""The commands of ARCHITECTURE.md's command surface that exist so far.

Each command parses, calls the engine (or the controller through its API) and renders.
"""

from __future__ import annotations

import json
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import click

from corral.cli import render
from corral.cli.main import Context, cli, command
from corral.errors import ControllerError, CorralError, DeployError, SpecError

OUTCOME_EXIT = {"succeeded": 0, "rolled back": 3, "aborted": 1, "failed": 1}


@cli.command()
@command
@click.option("--name", default=None, help="Project name (default: the folder's name).")
@click.option("--port", default=8080, show_default=True, help="Router port of the service.")
@click.option("--force", is_flag=True, help="Overwrite existing files.")
def init(ctx: Context, name: str | None, port: int, force: bool) -> None:
    """Create a working corral.toml and a sample app next to it."""
    spec = Path(ctx.spec_file).resolve()
    folder = spec.parent
    project = name or "".join(c if c.isalnum() else "-" for c in folder.name.lower()).strip("-")
    files = {
        spec: resources.files("corral.cli.scaffold").joinpath("corral.toml").read_text()
        .format(name=project or "app", port=port),
        folder / "app" / "server.py":
            resources.files("corral.cli.scaffold").joinpath("server.py").read_text(),
    }
    existing = [str(p) for p in files if p.exists()]
    if existing and not force:
        raise CorralError(f"{', '.join(existing)} already exist(s); nothing was written",
                          hint="pass --force to overwrite")
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    ctx.out({"created": [str(p) for p in files]}, lambda: render.console.print(
        f"created {', '.join(str(p.relative_to(folder)) for p in files)}\n"
        "next: corral up -d && corral deploy web"))


@cli.command()
@command
def validate(ctx: Context) -> None:
    """Check the spec; print every problem with its file, key, line and column."""
    ws = ctx.workspace()
    spec = ws.loaded.spec
    data = {"valid": True, "file": str(ws.loaded.path), "digest": ws.loaded.digest,
            "images": sorted(spec.images), "services": sorted(spec.services)}
    ctx.out(data, lambda: render.console.print(
        f"{ws.loaded.path.name} is valid: {len(spec.images)} image(s), "
        f"{len(spec.services)} service(s)"))


@cli.command()
@command
def schema(ctx: Context) -> None:
    """Print the JSON Schema of corral.toml (for editor completion)."""
    from corral.spec.model import Spec

    click.echo(json.dumps(Spec.model_json_schema(by_alias=True), indent=2))


@cli.command()
@command
@click.argument("image", required=False)
def build(ctx: Context, image: str | None) -> None:
    """Build one image of the spec, or all of them; print their digests."""
    from corral.engine.build import build_image

    ws = ctx.workspace()
    names = [image] if image else sorted(ws.loaded.spec.images)
    if not names:
        raise SpecError(f"{ws.loaded.path.name} has no [images.NAME] section to build")
    digests = {name: build_image(ws, name, render.progress) for name in names}

    def human() -> None:
        for name, digest in digests.items():
            render.console.print(f"{name}  {digest}")

    ctx.out({"images": digests}, human)


@cli.command()
@command
def images(ctx: Context) -> None:
    """List the images in the local store."""
    ws = ctx.workspace()
    rows = ws.images.list()
    data = [{"digest": i.digest, "names": list(i.names), "size": i.size, "created": i.created}
            for i in rows]

    def human() -> None:
        for row in data:
            render.console.print(f"{', '.join(row['names']) or '<none>':24} "
                                 f"{render.short(row['digest'])}  {row['size'] / 1e6:8.1f} MB")

    ctx.out({"images": data}, human)


@cli.command()
@command
@click.option("-d", "--detach", is_flag=True, help="Run in the background.")
def up(ctx: Context, detach: bool) -> None:
    """Start the controller (and the router); -d returns once it answers."""
    ws = ctx.workspace()
    if detach:
        from corral.engine.daemon import start_detached

        client = ctx.client()
        pid = client.get("/v1/ping")["pid"] if client.is_up() else start_detached(ws, client.is_up)
        ctx.out({"pid": pid, "socket": str(ws.socket_path)},
                lambda: render.console.print(f"controller running (pid {pid}), "
                                             f"API on {ws.socket_path}"))
        return
    from corral.api.serve import serve

    logging_setup()
    serve(ws)


def logging_setup() -> None:
    import logging

    logging.getLogger().setLevel(logging.INFO)


@cli.command()
@command
@click.option("--keep-instances", is_flag=True,
              help="Stop only the controller; instances and router keep serving.")
def down(ctx: Context, keep_instances: bool) -> None:
    """Stop the controller, the router and every instance."""
    import time

    ws = ctx.workspace()
    client = ctx.client()
    if client.is_up():
        client.post("/v1/shutdown", {"keep_instances": keep_instances})
        deadline = time.monotonic() + 60
        while ws.socket_path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        how = "controller stopped"
    else:
        from corral.engine.daemon import stop_everything

        stopped = stop_everything(ws, keep_instances)
        how = f"no controller was running; stopped {stopped} instance(s) and the router"
    if keep_instances:
        how += "; instances and router keep running"
    ctx.out({"stopped": True, "keep_instances": keep_instances},
            lambda: render.console.print(how))


@cli.command()
@command
@click.argument("service", required=False)
@click.option("--image", default=None, help="Deploy this image (digest or NAME[:TAG]).")
@click.option("--strategy", type=click.Choice(["rolling"]), default=None,
              help="Override the service's strategy.")
def deploy(ctx: Context, service: str | None, image: str | None, strategy: str | None) -> None:
    """Build if needed, record a release and roll the service to it."""
    from corral.engine.build import deploy_request

    ws = ctx.workspace()
    services = [service] if service else sorted(ws.loaded.spec.services)
    client = ctx.client()
    if not client.is_up():
        raise ControllerError("the controller is not running", hint="start it: corral up -d")
    results = []
    for name in services:
        request = deploy_request(ws, name, image, None if ctx.as_json else render.progress)
        body = {**request.__dict__}
        if strategy:
            body["config"] = {**body["config"], "strategy": strategy}
        for event in client.stream("/v1/deploy", body):
            if ctx.as_json:
                click.echo(json.dumps(event))
            else:
                render.deploy_event(event)
            if event["type"] == "result":
                results.append(event)
    if not results:
        raise DeployError("the controller ended the deployment without a result",
                          hint="see .corral/run/controller.log")
    worst = max(OUTCOME_EXIT.get(r["outcome"], 1) for r in results)
    for result in results:
        if result["outcome"] != "succeeded" and not ctx.as_json:
            render.stderr.print(f"[red]reason:[/] {result['reason']}\n"
                                "the previous release keeps serving; "
                                "see `corral status` for the instances")
    sys.exit(worst)


@cli.command()
@command
@click.argument("service", required=False)
def status(ctx: Context, service: str | None) -> None:
    """Show releases, instances (state, address, release) and traffic weights."""
    data: dict[str, Any] = ctx.client().get("/v1/status", **({"service": service}
                                                             if service else {}))
    ctx.out(data, lambda: render.status(data))


@cli.command()
@command
@click.argument("service")
def releases(ctx: Context, service: str) -> None:
    """List the releases of a service, oldest first."""
    rows = ctx.client().get(f"/v1/services/{service}/releases")["releases"]
    ctx.out({"service": service, "releases": rows}, lambda: render.releases(service, rows))
