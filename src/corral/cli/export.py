"""`corral export kubernetes`: manifests for a Kubernetes cluster, written to files.

Parses and renders; engine/delivery/export.py finds the releases and writes the files.
Nothing here, nor there, talks to a Kubernetes API server.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import click

from corral.cli import render, terminal
from corral.cli.main import Context, cli, command

# HOST[:PORT][/PREFIX], as `corral push` takes a registry (no scheme, no tag, no digest).
_REGISTRY = re.compile(r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:\d{1,5})?"
                       r"(/[a-z0-9]+([._/-][a-z0-9]+)*)?/?$")


def _registry(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not _REGISTRY.match(value):
        raise click.BadParameter(
            f"{value!r} is not HOST[:PORT]/PREFIX (e.g. registry.example.com:5000/team): "
            "no scheme, tag or digest", ctx, param)
    return value


@cli.group()
def export() -> None:
    """Export releases for another engine (Kubernetes manifests)."""


@export.command("kubernetes")
@command
@click.argument("service", required=False)
@click.option("-o", "--output", "out_dir", default=None, type=click.Path(path_type=Path),
              metavar="DIR", help="Folder for the SERVICE.yaml files "
              "(default: kubernetes/ beside the spec).")
@click.option("--rollouts", is_flag=True,
              help="Argo Rollouts Rollout (and AnalysisTemplate) for blue-green and canary.")
@click.option("--registry", default=None, metavar="HOST[:PORT]/PREFIX", callback=_registry,
              help="Where the cluster pulls images from (as pushed with corral push).")
def kubernetes(ctx: Context, service: str | None, out_dir: Path | None, rollouts: bool,
               registry: str | None) -> None:
    """Write Deployment, Service and ConfigMap manifests of each service's release, image
    pinned by digest. corral writes files only: apply them with kubectl or a GitOps tool."""
    from corral.engine.delivery.export import ExportRequest, export_kubernetes

    request = ExportRequest(services=(service,) if service else (), out_dir=out_dir,
                            rollouts=rollouts, registry=registry)
    rows = export_kubernetes(ctx.workspace(), request)
    ctx.out({"exported": rows}, lambda: render_export(rows))


def render_export(rows: list[dict[str, Any]]) -> None:
    lines = []
    for row in rows:
        release = row["release"] or "unreleased"
        lines.append(f"{row['service']} {release} (image {render.short(row['digest'])}) -> "
                     f"{row['file']}")
        lines.append("  " + ", ".join(row["objects"]))
        for note in row["notes"]:
            lines += terminal.wrap(f"  note: {note}", sys.stdout, "    ")
    render.write(lines)
