"""The `corral` command line: parse arguments, call the engine or the controller, render.

No decisions here. Every command takes -f/--file and --json, before the command name
(`corral -f app.toml status`, as kubectl and docker compose users write it) or after it;
a CorralError becomes a message (or a JSON error object) and exit code 1, never a traceback.
"""

from __future__ import annotations

import functools
import importlib
import json
import logging
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from corral import __version__
from corral.cli import render
from corral.errors import CorralError

F = TypeVar("F", bound=Callable[..., Any])


class Context:
    def __init__(self, spec_file: str, as_json: bool, env: str | None = None,
                 server: str | None = None) -> None:
        self.spec_file = spec_file
        self.as_json = as_json
        self.env = env  # --env: None means the spec's default environment (or none)
        self.server = server  # a remote controller's URL (--server, CORRAL_SERVER)

    def workspace(self) -> Any:
        from corral.engine.workspace import Workspace

        return Workspace.open(self.spec_file, self.env)

    def client(self) -> Any:
        """The controller's API client: the remote controller at --server with CORRAL_TOKEN,
        else the unix socket of the project's environment (which needs where the project is,
        not its spec)."""
        import os

        from corral.api.client import ControllerClient

        if self.server:
            return ControllerClient(None, server=self.server,
                                    token=os.environ.get("CORRAL_TOKEN") or None)
        from corral.engine.workspace import socket_path_of

        return ControllerClient(socket_path_of(self.spec_file, self.env))

    def out(self, data: Any, human: Callable[[], None]) -> None:
        if self.as_json:
            click.echo(json.dumps(data, indent=2, default=str))
        else:
            human()


def command(func: F) -> F:
    """Give a command -f/--file and --json, and turn CorralErrors into clean exits."""
    return _wrap(func, ("-f", "--file"))


def following_command(func: F) -> F:
    """Like `command`, for commands where -f means --follow (as in tail -f): the spec is
    --file only, and Ctrl-C ends the command quietly."""
    return _wrap(func, ("--file",))


DEFAULT_SPEC_FILE = "corral.toml"


def _wrap(func: F, file_flags: tuple[str, ...]) -> F:
    @click.option(*file_flags, "spec_file", default=None, metavar="FILE",
                  help=f"The spec file (default: {DEFAULT_SPEC_FILE}, or $CORRAL_FILE).")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
    @click.option("--env", "env", default=None, metavar="NAME",
                  help="The environment acted on (default: the spec's default one).")
    @functools.wraps(func)
    def wrapper(spec_file: str | None, as_json: bool, env: str | None, **kwargs: Any) -> Any:
        ctx = _context(spec_file, as_json, env)
        try:
            return func(ctx, **kwargs)
        except CorralError as exc:
            if ctx.as_json:
                click.echo(json.dumps({"error": {"type": type(exc).__name__,
                                                 "message": exc.message, "hint": exc.hint}}))
            else:
                render.error(exc)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


def _context(spec_file: str | None, as_json: bool, env: str | None = None) -> Context:
    """The command's own -f/--json/--env win; else what was given before the command name."""
    given = click.get_current_context().find_object(GroupOptions) or GroupOptions()
    return Context(spec_file or given.spec_file or DEFAULT_SPEC_FILE, as_json or given.as_json,
                   env or given.env, given.server)


class GroupOptions:
    """-f/--file, --json, --env and --server written before the command name."""

    def __init__(self, spec_file: str | None = None, as_json: bool = False,
                 env: str | None = None, server: str | None = None) -> None:
        self.spec_file = spec_file
        self.as_json = as_json
        self.env = env
        self.server = server


class _Commands(click.Group):
    """Imports the command modules (COMMAND_MODULES, in order) only as far as needed to
    find the command asked for: `corral build` loads one module, not every area's."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        modules = iter(COMMAND_MODULES)
        while cmd_name not in self.commands:
            module = next(modules, None)
            if module is None:
                return None
            importlib.import_module(module)
        return self.commands[cmd_name]

    def list_commands(self, ctx: click.Context) -> list[str]:
        for module in COMMAND_MODULES:
            importlib.import_module(module)
        return sorted(self.commands)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="corral")
@click.option("-v", "--verbose", is_flag=True, help="Log what corral does to stderr.")
@click.option("-f", "--file", "spec_file", default=None, envvar="CORRAL_FILE", metavar="FILE",
              help="The spec file, for every command (default: corral.toml).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts, for every command.")
@click.option("--env", "env", default=None, envvar="CORRAL_ENV", metavar="NAME",
              help="The environment, for every command (default: the spec's default).")
@click.option("--server", default=None, envvar="CORRAL_SERVER", metavar="URL",
              help="A remote controller's URL (token in $CORRAL_TOKEN).")
@click.pass_context
def cli(ctx: click.Context, verbose: bool, spec_file: str | None, as_json: bool,
        env: str | None, server: str | None) -> None:
    """corral runs services as immutable infrastructure: every change is a new image and
    new instances; nothing running is ever patched in place."""
    ctx.obj = GroupOptions(spec_file, as_json, env, server)
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


# Each area keeps its commands in its own module; importing it registers them.
COMMAND_MODULES = ["corral.cli.project", "corral.cli.delivery", "corral.cli.registry",
                   "corral.cli.observe", "corral.cli.operate", "corral.cli.images",
                   "corral.cli.export", "corral.cli.secrets", "corral.cli.pipeline",
                   "corral.cli.access", "corral.cli.recovery"]


def main() -> None:
    cli(prog_name="corral")
