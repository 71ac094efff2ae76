"""`corral secret set|list|rm|rotate`: an environment's secrets. Values are read from stdin
or a file and never printed, in either output form."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from corral.cli import render
from corral.cli.main import Context, cli, command
from corral.errors import CorralError

if TYPE_CHECKING:
    from corral.ports.secrets import SecretVersion


@cli.group()
def secret() -> None:
    """Secrets of an environment (--env): encrypted at rest, given to instances at start."""


def _value(from_file: str | None) -> bytes:
    """The value from --from-file (exactly its bytes) or stdin (one trailing newline, as
    `echo` adds, removed)."""
    if from_file is not None:
        try:
            return Path(from_file).read_bytes()
        except OSError as exc:
            raise CorralError(f"cannot read {from_file}: {exc.strerror}") from None
    if sys.stdin.isatty():
        raise CorralError("the value is read from stdin, which is a terminal",
                          hint="pipe it in (printf %s \"$VALUE\" | corral secret set NAME) "
                          "or pass --from-file PATH")
    data = sys.stdin.buffer.read()
    return data[:-1] if data.endswith(b"\n") else data


@secret.command("set")
@command
@click.argument("name")
@click.option("--from-file", default=None, metavar="PATH", help="Read the value from PATH.")
def set_(ctx: Context, name: str, from_file: str | None) -> None:
    """Store a new version of secret NAME (value from stdin or --from-file)."""
    _store(ctx, name, from_file, rotate=False)


@secret.command()
@command
@click.argument("name")
@click.option("--from-file", default=None, metavar="PATH", help="Read the value from PATH.")
@click.option("--deploy/--no-deploy", default=True, show_default=True,
              help="Deploy the services using it (a new release each), if the controller runs.")
def rotate(ctx: Context, name: str, from_file: str | None, deploy: bool) -> None:
    """Store a new version of an existing secret NAME and roll it out: each service using
    it gets a new release, deployed with its strategy.

    Exit code: as `corral deploy` when it deploys."""
    record = _store(ctx, name, from_file, rotate=True)
    if deploy:
        from corral.cli.delivery import deploy_services
        from corral.engine.secrets import services_using

        users = sorted(services_using(ctx.workspace()).get(name, ()))
        if users and ctx.client().is_up():
            deploy_services(ctx, users, None, None, False)
        elif users:
            render.say(f"the controller is not running; deploy {', '.join(users)} to use "
                       f"v{record.version}")


def _store(ctx: Context, name: str, from_file: str | None, *, rotate: bool) -> SecretVersion:
    from corral.engine.secrets import set_secret

    ws = ctx.workspace()
    record = set_secret(ws, name, _value(from_file), rotate=rotate)
    where = f" in {ws.env}" if ws.env else ""
    ctx.out({"name": name, "version": record.version, "environment": ws.env},
            lambda: render.say(f"secret {name} v{record.version} stored{where}"))
    return record


@secret.command("list")
@command
def list_(ctx: Context) -> None:
    """Names, versions, dates and users of the environment's secrets: never values."""
    from corral.engine.secrets import secret_rows

    ws = ctx.workspace()
    rows = secret_rows(ws)

    def human() -> None:
        if not rows:
            render.say("no secrets" + (f" in {ws.env}" if ws.env else ""))
        for row in rows:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row["created_at"]))
            used = ", ".join(row["services"]) or "unused"
            render.line(f"{row['name']}  v{row['version']}  {stamp}  {used}")

    ctx.out({"environment": ws.env, "secrets": rows}, human)


@secret.command()
@command
@click.argument("name")
def rm(ctx: Context, name: str) -> None:
    """Forget every version of secret NAME (running instances keep what they were given;
    a deployment that needs it then fails before starting anything)."""
    from corral.engine.secrets import remove_secret

    ws = ctx.workspace()
    removed = remove_secret(ws, name)
    ctx.out({"name": name, "removed_versions": removed, "environment": ws.env},
            lambda: render.say(f"secret {name} removed ({removed} version(s))"))
