"""Commands of recovery: `corral backup [-o FILE]`, `corral backup verify FILE`,
`corral restore FILE` and `corral drill restore`. They work without a controller (a backup
is consistent while one runs); parse, call engine.recovery, render."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
from rich.markup import escape

from corral.cli import render
from corral.cli.main import Context, cli, command

_FILE = click.Path(dir_okay=False, path_type=Path)


@cli.group(invoke_without_command=True)
@command
@click.option("-o", "--output", type=_FILE, default=None,
              help="Where to write (default: .corral/backups/PROJECT-TIME.tar.gz).")
def backup(ctx: Context, output: Path | None) -> None:
    """Write a consistent backup of state, ledger, logs and public keys (images stay in
    the registry, pinned by digest)."""
    if click.get_current_context().invoked_subcommand is not None:
        return
    from corral.engine.recovery.backup import take_backup

    report = take_backup(ctx.workspace(), output)

    def human() -> None:
        render.console.print(
            f"backup {escape(report['file'])}\n  {report['sha256']}  {report['bytes']} bytes, "
            f"{report['releases']} releases, {report['ledger_entries']} ledger entries, "
            f"live {_live(report['live'])}  ({report['seconds']} s)")

    ctx.out(report, human)


@backup.command("verify")
@command
@click.argument("file", type=_FILE)
def verify(ctx: Context, file: Path) -> None:
    """Check a backup whole: every member against its sha256, the ledger chain to its head.

    Exit 0: intact; 4: truncated, altered or not a corral backup."""
    from corral.engine.recovery.backup import verify_backup

    summary = verify_backup(file).summary()

    def human() -> None:
        ledger = summary["ledger"]
        render.console.print(
            f"backup {escape(str(file))} is intact: project {summary['project']}, "
            f"{summary['releases']} releases, live {_live(summary['live'])}, ledger "
            f"verified to entry {ledger['head_seq']}")

    ctx.out({"ok": True, **summary}, human)


@cli.command()
@command
@click.argument("file", type=_FILE)
@click.option("--insecure", is_flag=True,
              help="Allow plain http to a registry that is not on loopback.")
def restore(ctx: Context, file: Path, insecure: bool) -> None:
    """Restore a backup into this (empty) project: state and ledger, logs, keys, and the
    live releases' images pulled by digest. Then `corral up` starts their instances."""
    from corral.engine.recovery.restore import restore_backup

    report = restore_backup(ctx.workspace(), file, insecure=insecure)

    def human() -> None:
        render.console.print(
            f"restored {escape(str(file))}: {report['releases']} releases, live "
            f"{_live(report['live'])}, ledger continues after entry "
            f"{report['ledger']['head_seq']} ({report['seconds']} s)")
        for digest, outcome in report["images"].items():
            render.console.print(f"  image {digest[:19]}…  {escape(outcome)}")
        render.console.print("next: `corral up` starts the live releases' instances")

    ctx.out(report, human)


@cli.group()
def drill() -> None:
    """Recovery drills: prove a recovery works, and how long it takes."""


@drill.command("restore")
@command
@click.option("--insecure", is_flag=True,
              help="Allow plain http to a registry that is not on loopback.")
@click.option("--timeout", type=float, default=120.0, show_default=True,
              help="Seconds each live release has to pass its health check.")
def drill_restore(ctx: Context, insecure: bool, timeout: float) -> None:
    """Back up, restore into a scratch folder and ports, check every live release serves
    and the ledger verifies; record the recovery time in the ledger. Exit 1 if not."""
    from corral.engine.recovery.drill import drill_restore as run

    report = run(ctx.workspace(), insecure=insecure, timeout=timeout)

    def human() -> None:
        verdict = "passed" if report["ok"] else "FAILED"
        render.console.print(f"restore drill {verdict}: recovered in {report['rto_seconds']} s")
        for name, seen in sorted(report["services"].items()):
            render.console.print(f"  {name}: {escape(seen)}")
        ledger = report["ledger"]
        render.console.print(f"  ledger: {ledger['checked']} entries verified" if ledger["ok"]
                             else f"  ledger: BROKEN: {escape(str(ledger['problem']))}")

    ctx.out(report, human)
    sys.exit(0 if report["ok"] else 1)


def _live(live: dict[str, Any]) -> str:
    return ", ".join(f"{name} v{version}" for name, version in sorted(live.items())) or "none"
