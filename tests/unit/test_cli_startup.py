"""The CLI loads only what a command needs (issue 3: start-up is part of every command's
latency): a command module is imported only to find its command, and commands that talk
to the controller neither parse the spec (pydantic) nor load the store, httpx or rich."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click

from corral.cli.main import COMMAND_MODULES, cli

HEAVY = {"pydantic", "sqlalchemy", "httpx", "rich"}

_PROBE = """
import atexit, sys
atexit.register(lambda: print("MODULES " + " ".join(sorted(sys.modules)), file=sys.stderr))
sys.argv = ["corral", *sys.argv[1:]]
from corral.cli.main import main
main()
"""


def run_cli(folder: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run the CLI in `folder`; the process and the top-level packages it imported."""
    done = subprocess.run([sys.executable, "-c", _PROBE, *args], cwd=folder,
                          capture_output=True, text=True, timeout=120)
    line = next(x for x in done.stderr.splitlines() if x.startswith("MODULES "))
    return done, {name.split(".")[0] for name in line.split()[1:]}


def test_every_command_is_found_by_name_and_listed() -> None:
    ctx = click.Context(cli)
    names = cli.list_commands(ctx)
    assert {"build", "status", "rollback", "deploy", "ledger", "push", "plan", "gc"} <= set(names)
    for name in names:
        command = cli.get_command(ctx, name)
        assert command is not None and command.name == name
    assert cli.get_command(ctx, "no-such-command") is None
    assert len(COMMAND_MODULES) == len(set(COMMAND_MODULES))


def test_an_unknown_command_is_still_a_usage_error(tmp_path: Path) -> None:
    done, _ = run_cli(tmp_path, "no-such-command")
    assert done.returncode == 2 and "No such command 'no-such-command'" in done.stderr


def test_status_without_a_controller_loads_no_spec_model_store_httpx_or_rich(
        tmp_path: Path) -> None:
    (tmp_path / "corral.toml").write_text("not even [valid toml\n")
    done, loaded = run_cli(tmp_path, "status", "--json")
    assert done.returncode == 1
    error = json.loads(done.stdout.splitlines()[0])["error"]
    assert error["type"] == "ControllerError" and "not running" in error["message"]
    assert loaded & HEAVY == set()
    assert "corral.spec.model" not in done.stderr.split()


def test_rollback_and_status_without_a_spec_file_say_how_to_create_one(tmp_path: Path) -> None:
    for args in (["status"], ["rollback", "web"]):
        done, _ = run_cli(tmp_path, *args)
        assert done.returncode == 1
        assert "no such spec file" in done.stderr and "corral init" in done.stderr


def test_push_and_pull_load_no_spec_model_store_httpx_or_rich(tmp_path: Path) -> None:
    (tmp_path / "corral.toml").write_text("not even [valid toml\n")
    # Each got as far as its own work: push to the local image it would send (there is
    # none, so the registry's HTTP client is never loaded), pull to the registry (refused).
    for args, reached in ((["push", "127.0.0.1:9/team/web:1", "--json"], "corral.images.registry"),
                          (["pull", "127.0.0.1:9/team/web:1", "--json"],
                           "corral.images.registry.http")):
        done, loaded = run_cli(tmp_path, *args)
        assert done.returncode == 1, done.stderr
        assert reached in done.stderr.split(), args
        assert loaded & HEAVY == set(), args
