"""The project's commands: init, validate, schema, build, up, down, status, releases.

Each command parses, calls the engine (or the controller through its API) and renders; the
other areas' commands live in their own modules (delivery, images, observe, operate, registry).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from corral.cli import render
from corral.cli.main import Context, cli, command
from corral.errors import CorralError, SpecError


@cli.command()
@command
@click.option("--name", default=None, help="Project name (default: the folder's name).")
@click.option("--port", default=8080, show_default=True, help="Router port of the service.")
@click.option("--force", is_flag=True, help="Overwrite existing files.")
def init(ctx: Context, name: str | None, port: int, force: bool) -> None:
    """Create a working corral.toml and a sample app next to it."""
    from importlib import resources

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
    written = [*files, *_ignore_state(folder)]
    ctx.out({"created": [str(p) for p in written]}, lambda: render.console.print(
        f"created {', '.join(str(p.relative_to(folder)) for p in written)}\n"
        "next: corral up -d && corral deploy web", markup=False))


def _ignore_state(folder: Path) -> list[Path]:
    """Keep .corral/ (images, caches, logs: hundreds of MB) out of git: add it to the
    folder's .gitignore, creating the file if needed. The written path, if any."""
    ignore = folder / ".gitignore"
    text = ignore.read_text() if ignore.exists() else ""
    if any(line.strip() in (".corral", ".corral/", "/.corral", "/.corral/")
           for line in text.splitlines()):
        return []
    ignore.write_text(text + ("\n" if text and not text.endswith("\n") else "")
                      + "# corral's state: images, caches, logs (see `corral gc`)\n.corral/\n")
    return [ignore]


@cli.command()
@command
@click.option("--print", "show", is_flag=True, help="Print the effective spec the "
              "environment (--env, else the default) sees, its overlays merged in.")
def validate(ctx: Context, show: bool) -> None:
    """Check the spec; print every problem with its file, key, line and column."""
    ws = ctx.workspace()
    spec = ws.loaded.spec
    data: dict[str, Any] = {"valid": True, "file": str(ws.loaded.path),
                            "digest": ws.loaded.digest, "environment": ws.env,
                            "environments": sorted(spec.environments),
                            "images": sorted(spec.images), "services": sorted(spec.services)}
    if show:
        data["effective"] = {"environment": ws.env,
                             **spec.model_dump(mode="json", by_alias=True,
                                               exclude={"environments"})}
        ctx.out(data, lambda: click.echo(json.dumps(data["effective"], indent=2)))
        return
    where = f" (environment {ws.env})" if ws.env else ""
    ctx.out(data, lambda: render.console.print(
        f"{ws.loaded.path.name} is valid{where}: {len(spec.images)} image(s), "
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
@click.option("--check-reproducible", is_flag=True,
              help="Rebuild from nothing in a temporary folder and compare digests; exit 1 "
              "naming the first differing file if they differ.")
@click.option("--build-arg", "build_arg", multiple=True, metavar="NAME[=VALUE]",
              help="A Dockerfile ARG value (repeatable; NAME alone takes it from the "
              "environment). Needs IMAGE unless every image has a dockerfile.")
@click.option("--target", metavar="STAGE", help="Build this Dockerfile stage (FROM … AS "
              "STAGE) instead of the last one.")
@click.option("--update-bases", is_flag=True, help="Resolve registry bases' tags again and "
              "move their digests pinned in corral.lock.")
@click.option("--insecure", is_flag=True, help="Allow plain http to a registry base off "
              "loopback (loopback registries always use plain http).")
def build(ctx: Context, image: str | None, check_reproducible: bool,
          build_arg: tuple[str, ...], target: str | None, update_bases: bool,
          insecure: bool) -> None:
    """Build one image of the spec, or all of them; print their digests.

    With nothing changed since the last build (spec, project files, bases, git commit,
    options, corral), the digests are printed without building (docs/images.md)."""
    from corral.cli.build_args import parse_build_args
    from corral.engine.images.fresh import (
        BuildRequest,
        before_build,
        remember_build,
        unchanged_build,
    )

    def human() -> None:
        for name, digest in digests.items():
            render.line(f"{name}  {digest}")

    args = parse_build_args(build_arg)
    request = BuildRequest(image, args, target, insecure, ctx.env)
    if not (check_reproducible or update_bases):
        unchanged = unchanged_build(ctx.spec_file, request)
        if unchanged is not None:
            for name, digest in unchanged.items():
                render.progress(f"{name}: nothing changed since its last build "
                                f"({digest[:19]}); not built again")
            digests = unchanged
            ctx.out({"images": digests}, human)
            return

    from corral.engine.images.build import build_image

    before = before_build(ctx.spec_file)
    ws = ctx.workspace()
    names = [image] if image else sorted(ws.loaded.spec.images)
    if not names:
        raise SpecError(f"{ws.loaded.path.name} has no [images.NAME] section to build")
    if target is not None and image is None and len(names) > 1:
        raise SpecError("--target names a stage of one Dockerfile", hint="name the IMAGE too")
    digests = {name: build_image(ws, name, render.progress, args, target=target,
                                 update_bases=update_bases, insecure=insecure)
               for name in names}
    remember_build(ws, request, digests, before)
    if check_reproducible:  # images (issue 3): see engine/images/reproducible.py
        import sys

        from rich.markup import escape

        from corral.engine.images.reproducible import check_reproducible as recheck

        differences = {n: recheck(ws, n, d, render.progress) for n, d in digests.items()}

        def verdicts() -> None:
            for n, d in differences.items():
                render.console.print(f"{n}  {digests[n]}  " + (
                    f"[red]NOT reproducible:[/] {escape(d)}" if d else "reproducible"))

        ctx.out({"images": digests, "reproducible": not any(differences.values()),
                 "differences": differences}, verdicts)
        sys.exit(1 if any(differences.values()) else 0)

    ctx.out({"images": digests}, human)


@cli.command()
@command
@click.option("-d", "--detach", is_flag=True, help="Run in the background.")
@click.option("--listen", default=None, metavar="HOST:PORT",
              help="Also serve the API and dashboard on TCP, with tokens "
                   "(default: [controller] listen). Off loopback it needs TLS.")
@click.option("--standby", is_flag=True, help="Wait as the standby of the active controller "
              "(on one shared store) and take over when it dies; in the foreground only.")
def up(ctx: Context, detach: bool, listen: str | None, standby: bool) -> None:
    """Start the controller (and the router); -d returns once it answers."""
    ws = ctx.workspace()
    if detach and standby:
        raise click.UsageError("--standby runs in the foreground (under your supervisor); "
                               "drop -d")
    if listen is not None:  # refused here, before a detached start hides it in its log
        from corral.errors import ControllerError
        from corral.spec.model import listen_problem

        problem = listen_problem(listen, ws.loaded.spec.controller.tls is not None)
        if problem:
            raise ControllerError(f"--listen: {problem}",
                                  hint="listen on 127.0.0.1:PORT, or give the controller TLS")
    if detach:
        from corral.engine.operate.daemon import start_detached

        client = ctx.client()
        pid = (client.get("/v1/ping")["pid"] if client.is_up()
               else start_detached(ws, client.is_up, listen=listen))
        where = listen or ws.loaded.spec.controller.listen
        ctx.out({"pid": pid, "socket": str(ws.socket_path), "listen": where},
                lambda: render.console.print(f"controller running (pid {pid}), "
                                             f"API on {ws.socket_path}"
                                             + (f" and {where}" if where else "")))
        return
    from corral.api.serve import serve

    logging_setup()
    serve(ws, listen=listen, standby=standby)


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
        from corral.engine.operate.daemon import stop_everything

        stopped = stop_everything(ws, keep_instances)
        how = f"no controller was running; stopped {stopped} instance(s) and the router"
    if keep_instances:
        how += "; instances and router keep running"
    ctx.out({"stopped": True, "keep_instances": keep_instances},
            lambda: render.console.print(how))


# `deploy` lives in cli/delivery.py with promote, abort and rollback.


@cli.command()
@command
@click.argument("service", required=False)
@click.option("--instance", default=None,
              help="Show one instance of SERVICE in depth, alive or gone.")
def status(ctx: Context, service: str | None, instance: str | None) -> None:
    """Show releases, instances (state, address, release) and traffic weights."""
    if instance is not None:
        from corral.cli.observe import show_instance

        if service is None:
            raise CorralError("--instance needs the SERVICE too",
                              hint=f"corral status SERVICE --instance {instance}")
        show_instance(ctx, service, instance)
        return
    client = ctx.client()
    if client.is_up():
        data: dict[str, Any] = client.get("/v1/status", **({"service": service}
                                                           if service else {}))
    elif ctx.server:
        from corral.errors import ControllerError

        raise ControllerError(f"no answer from the controller at {ctx.server}",
                              hint="check --server / CORRAL_SERVER")
    else:  # what still runs: the router and instances outlive the controller
        from corral.engine.operate.status import status_when_down

        data = status_when_down(ctx.spec_file, service, ctx.env)
    ctx.out(data, lambda: render.status(data))


@cli.command()
@command
@click.argument("service")
def releases(ctx: Context, service: str) -> None:
    """List the releases of a service, oldest first."""
    rows = ctx.client().get(f"/v1/services/{service}/releases")["releases"]
    ctx.out({"service": service, "releases": rows}, lambda: render.releases(service, rows))
