"""`corral token create|list|revoke`: the API's tokens. Through the controller when one
answers (locally, or --server with an admin's CORRAL_TOKEN); else straight in the project's
token book, as the local user (`unix:USER` in the ledger). A token is printed once."""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from corral.cli import render, terminal
from corral.cli.main import Context, cli, command
from corral.cli.params import DURATION
from corral.core.access import ROLES


@cli.group()
def token() -> None:
    """Make, list and revoke the API's tokens (roles: viewer, deployer, admin)."""


@token.command("create")
@command
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), required=True,
              help="viewer reads; deployer also deploys and rolls back; admin also "
                   "manages tokens and chaos.")
@click.option("--expires", type=DURATION, default=None, metavar="DURATION",
              help="The token stops working after this long (e.g. 30d). Default: never.")
def create(ctx: Context, name: str, role: str, expires: float | None) -> None:
    """Make a token and print it, once: only its hash is kept."""
    client = ctx.client()
    if client.is_up():
        made = client.post("/v1/tokens", {"name": name, "role": role, "expires": expires})
    else:
        from corral.engine.access.tokens import create_token

        ws = _local(ctx)
        made = {"name": name, "role": role, "token": create_token(
            ws.tokens, ws.store, _local_actor(), name, role, expires, time.time())}
    ctx.out(made, lambda: _show_new(made, expires))


def _show_new(made: dict[str, Any], expires: float | None) -> None:
    render.line(made["token"])
    lasting = "does not expire" if expires is None else f"expires in {expires / 86400:g} days"
    render.say(f"token {made['name']} ({made['role']}) {lasting}. It is shown only now: "
               "keep it in a secret store; use it as CORRAL_TOKEN with --server URL.",
               stream=sys.stderr)


@token.command("list")
@command
def list_tokens(ctx: Context) -> None:
    """List tokens: name, role, state (valid, expired, revoked), dates. Never the tokens."""
    client = ctx.client()
    if client.is_up():
        rows = client.get("/v1/tokens")["tokens"]
    else:
        from corral.engine.access.tokens import token_view

        now = time.time()
        rows = [token_view(r, now) for r in _local(ctx).tokens.records()]
    ctx.out({"tokens": rows}, lambda: _show_list(rows))


def _show_list(rows: list[dict[str, Any]]) -> None:
    def when(at: float | None) -> str:
        return "-" if at is None else time.strftime("%Y-%m-%d %H:%M", time.localtime(at))

    table = [(r["name"], r["role"], r["state"], when(r["created_at"]), when(r["expires_at"]))
             for r in rows]
    render.write(terminal.table(("name", "role", "state", "created", "expires"), table,
                                sys.stdout, shrink=(0,)))


@token.command("revoke")
@command
@click.argument("name")
def revoke(ctx: Context, name: str) -> None:
    """Revoke a token at once: its next request is refused."""
    client = ctx.client()
    if client.is_up():
        row = client.post(f"/v1/tokens/{name}/revoke", {})
    else:
        from corral.engine.access.tokens import revoke_token, token_view

        ws, now = _local(ctx), time.time()
        row = token_view(revoke_token(ws.tokens, ws.store, _local_actor(), name, now), now)
    ctx.out(row, lambda: render.say(f"token {name} revoked"))


def _local(ctx: Context) -> Any:
    if ctx.server:  # a remote controller that did not answer: never touch a local book
        from corral.errors import ControllerError

        raise ControllerError(f"the controller at {ctx.server} did not answer",
                              hint="check --server / CORRAL_SERVER")
    return ctx.workspace()


def _local_actor() -> str:
    from corral.engine.workspace import current_actor

    return f"unix:{current_actor()}"
