"""Image commands: images, keygen, sign, verify, gc (build lives in project.py).

Each parses, calls engine/images/trust.py and renders; keys and retention are decided there.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from corral.cli import render, terminal
from corral.cli.main import Context, cli, command


@cli.command()
@command
def images(ctx: Context) -> None:
    """List local images: names, digest, size, age, releases using them, signed or not."""
    from corral.engine.images.catalog import list_images

    rows = list_images(ctx.workspace())
    data = [{"digest": r.digest, "names": list(r.names), "size": r.size,
             "created": r.created, "releases": list(r.releases), "signed": r.signed}
            for r in rows]

    def human() -> None:
        render.write(terminal.table(
            ("name", "digest", "size", "created", "signed", "releases"),
            [(", ".join(row.names) or "<none>", render.short(row.digest),
              f"{row.size / 1e6:.1f} MB", render.ago(row.created),
              ("yes", "green") if row.signed else "no", ", ".join(row.releases) or "-")
             for row in rows], sys.stdout, shrink=(5, 0), right=(2,)))

    ctx.out({"images": data}, human)


@cli.command()
@command
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Private key file (default: $CORRAL_SIGNING_KEY or "
              "~/.config/corral/keys/default.key); the public key goes beside it as .pub.")
def keygen(ctx: Context, out: Path | None) -> None:
    """Make an ed25519 signing key pair (private key mode 0600)."""
    from corral.engine.images.trust import keygen as make_key

    private, public, key_id, inline = make_key(out)
    ctx.out({"private": str(private), "public": str(public), "key_id": key_id,
             "inline": inline}, lambda: render.say(
        f"private key {private} (keep it secret)\npublic key  {public}\nkey id      {key_id}\n"
        f"trust it in corral.toml: trusted_keys = [\"{inline}\"]"))


@cli.command()
@command
@click.argument("image")
@click.option("--key", type=click.Path(path_type=Path), default=None,
              help="Private key (default: $CORRAL_SIGNING_KEY or "
              "~/.config/corral/keys/default.key).")
def sign(ctx: Context, image: str, key: Path | None) -> None:
    """Sign IMAGE (name, name:tag or digest); the signature is an OCI 1.1 referrer."""
    from corral.engine.images.trust import sign as sign_image

    digest, descriptor = sign_image(ctx.workspace(), image, key)
    ctx.out({"image": digest, "signature": descriptor}, lambda: render.say(
        f"signed {render.short(digest)} with key "
        f"{descriptor.get('annotations', {}).get('dev.corral.signature.key', '?')[:19]}; "
        f"signature {render.short(descriptor['digest'])}"))


@cli.command()
@command
@click.argument("image")
@click.option("--key", "keys", multiple=True,
              help="A trusted public key: PEM file or ed25519:BASE64 (repeatable). Default: "
              "trusted_keys of the services in the spec, and the default key's .pub.")
def verify(ctx: Context, image: str, keys: tuple[str, ...]) -> None:
    """Exit 0 if IMAGE has a valid signature by a trusted key, 1 otherwise."""
    from corral.engine.images.trust import verify as verify_image

    verdict = verify_image(ctx.workspace(), image, list(keys))
    data = {"image": verdict.digest, "valid": verdict.ok, "keys": list(verdict.valid_keys),
            "signatures": verdict.signatures, "reason": verdict.reason()}
    ctx.out(data, lambda: render.say(
        f"{'verified' if verdict.ok else 'NOT verified'}: {verdict.reason()}",
        sys.stdout if verdict.ok else sys.stderr))
    sys.exit(0 if verdict.ok else 1)


@cli.command()
@command
@click.option("--dry-run", is_flag=True, help="Show what would be deleted; delete nothing.")
@click.option("--keep", "keep_last", type=click.IntRange(min=0), default=None,
              help="Releases kept per service besides the live one (default: the spec's "
              "[gc] keep_releases, 5).")
@click.option("--keep-for", default=None, metavar="DURATION",
              help="Also keep every release live or made this recently, e.g. 1h, 7d "
              "(default: the spec's [gc] keep_for, 7d).")
def gc(ctx: Context, dry_run: bool, keep_last: int | None, keep_for: str | None) -> None:
    """Delete images and blobs that no tag, release a rollback can reach, or instance needs."""
    from corral.engine.images.catalog import gc as collect
    from corral.spec.duration import parse_duration

    try:
        window = None if keep_for is None else parse_duration(keep_for)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--keep-for") from None
    report, kept = collect(ctx.workspace(), dry_run=dry_run, keep_last=keep_last,
                           keep_for=window)
    verb = "would free" if dry_run else "freed"
    data = {"dry_run": dry_run, "images": list(report.images), "blobs": report.blobs,
            "unpacked": list(report.unpacked), "quarantined": report.quarantined,
            "still_mounted": list(report.still_mounted), "freed": report.freed, "kept": kept}

    def human() -> None:
        for digest in report.images:
            render.say(f"{'would delete' if dry_run else 'deleted'} image "
                                 f"{render.short(digest)}")
        for digest, size in sorted(report.blobs.items()):
            render.say(f"  blob {render.short(digest)}  {size / 1e6:8.2f} MB")
        for path in report.unpacked:
            render.say(f"  unpacked {path}")
        for path, size in sorted(report.quarantined.items()):
            render.say(f"  quarantined {path}  {size / 1e6:8.2f} MB")
        for path in report.still_mounted:
            render.say(f"  kept quarantined {path} (an instance still runs on it)")
        render.say(f"{verb} {report.freed / 1e6:.1f} MB in {len(report.blobs)} "
                             f"blob(s) and {len(report.quarantined)} quarantined root(s); "
                             f"kept {len(kept)} image(s) for releases and instances")

    ctx.out(data, human)
