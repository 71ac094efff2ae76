"""`corral push REF` and `corral pull REF`: images to and from OCI registries.

Parses, calls engine.registry, renders. Registries are spoken to from the CLI's process;
no controller is needed.
"""

from __future__ import annotations

from typing import Any

import click

from corral.cli import render
from corral.cli.main import Context, cli, command

_INSECURE = "Allow plain http to a registry that is not on loopback."
_JOBS = "Blobs transferred in parallel."


@cli.command()
@command
@click.argument("ref")
@click.option("--image", default=None, metavar="NAME|DIGEST",
              help="Local image to push (default: the REF's last path part).")
@click.option("--insecure", is_flag=True, help=_INSECURE)
@click.option("--jobs", default=4, show_default=True, type=click.IntRange(1, 32), help=_JOBS)
@click.option("--chunk-size", default=256, show_default=True, type=click.IntRange(1, 1024),
              help="MiB; larger blobs are uploaded in chunks of this size.")
def push(ctx: Context, ref: str, image: str | None, insecure: bool, jobs: int,
         chunk_size: int) -> None:
    """Push a local image (and its signatures and SBOM) to REF = HOST[:PORT]/REPO[:TAG]."""
    from corral.engine.images.registry import push as push_image
    from corral.engine.workspace import state_dir_of

    report = push_image(state_dir_of(ctx.spec_file), ref, image, insecure=insecure, jobs=jobs,
                        chunk_size=chunk_size << 20, progress=render.progress)

    def human() -> None:
        render.console.print(
            f"pushed {report['reference']}\n  digest {report['digest']}\n"
            f"  blobs: {report['uploaded']} uploaded ({report['bytes_sent'] / 1e6:.1f} MB), "
            f"{report['mounted']} mounted, {report['present']} already there; "
            f"{len(report['referrers'])} referrer(s)")

    ctx.out(report, human)


@cli.command()
@command
@click.argument("ref")
@click.option("--insecure", is_flag=True, help=_INSECURE)
@click.option("--jobs", default=4, show_default=True, type=click.IntRange(1, 32), help=_JOBS)
def pull(ctx: Context, ref: str, insecure: bool, jobs: int) -> None:
    """Pull REF = HOST[:PORT]/REPO[:TAG|@sha256:…] into the local store, verified."""
    from corral.engine.images.registry import pull as pull_image
    from corral.engine.workspace import state_dir_of

    report: dict[str, Any] = pull_image(state_dir_of(ctx.spec_file), ref, insecure=insecure,
                                        jobs=jobs, progress=render.progress)

    def human() -> None:
        render.console.print(
            f"pulled {report['reference']} as {report['local']}\n"
            f"  digest {report['digest']}\n"
            f"  blobs: {report['fetched']} fetched ({report['bytes_received'] / 1e6:.1f} MB), "
            f"{report['present']} already here; {len(report['referrers'])} referrer(s)")

    ctx.out(report, human)
