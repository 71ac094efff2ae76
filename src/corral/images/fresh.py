"""Whether a finished build's inputs are still as they were, and its image still whole.

A build reads its project folder (the spec, corral.lock, the Dockerfile, every file a COPY
takes) and, for bases, what lies elsewhere: a debian base's layer.json in the machine cache, the
tag of an image layout (`FROM` an image corral built). `folder_stamp` stamps the folder
before a build; `stamp_inputs`, after it, checks that neither the folder nor a file the
build read changed while it ran and writes them down; `inputs_hold` says, by stat and
content alone, whether all of it is still the same; `image_intact` whether the image is
still tagged and whole. engine/images/fresh.py keys them by everything else a build depends
on, so that `corral build` with nothing changed answers without loading the builder or
pydantic (cargo's "fresh" check).

The project folder is stamped whole (but its state folder `.corral` and `.git`, which no
build copies: a build that would copy either is never stamped), folders too, so an added or
removed file shows. A file is stamped by (size, mtime_ns, inode); one modified within 2 s
of the stamp could change again within the same timestamp, so it is stamped by its content
(git's "racily clean" files). Light imports only: this runs before anything else loads.
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from corral.errors import ImageError, NotFound
from corral.images.oci.layout import REF_NAME, Layout
from corral.images.oci.referrers import SBOM_TYPE, referrers_of

if TYPE_CHECKING:
    from corral.spec.model import CopyStep

SKIPPED = (".corral", ".git")  # top-level folders of the project no stamp covers
MAX_ENTRIES = 20_000  # a larger folder is not stamped: walking it would cost more than a build
MAX_RACY_SIZE = 1 << 20  # a larger file just modified is not stamped (each check would hash it)
_RACY_NS = 2_000_000_000

# An origin says where a build read something besides the project folder:
FILE = "file:"  # "file:SHA256:/abs/path": a file as read (a debian base's layer.json, a
#                Dockerfile), by content
TAG = "tag:"  # "tag:/abs/layout\tREF\tDIGEST": a tag of an image layout as resolved
VOLATILE = "volatile:"  # "volatile:why": the build read what no stamp covers; never fresh

Row = list[Any]


def default_cache_dir() -> Path:
    """The machine-wide cache (debootstrap bases, SBOM scans): CORRAL_CACHE, else
    ~/.cache/corral. Here, light, because a build's freshness depends on it too."""
    return Path(os.environ.get("CORRAL_CACHE") or Path.home() / ".cache" / "corral")


def file_origin(path: Path) -> str:
    """The origin of a file a build reads outside the project folder, with its content
    now (when the build reads it)."""
    return f"{FILE}{_content(path) or '-'}:{path.absolute()}"


def tag_origin(layout: Layout, ref: str) -> str:
    """The origin of a layout base: the tag `ref` and the digest it points at now."""
    found = layout.find_tag(ref)
    return f"{TAG}{layout.root.absolute()}\t{ref}\t{found and found.get('digest')}"


def _tag_holds(origin: str) -> bool:
    root, ref, digest = origin[len(TAG):].split("\t")
    found = Layout(Path(root)).find_tag(ref)
    return str(found and found.get("digest")) == digest


def _file_of(origin: str) -> tuple[str, str | None]:
    digest, _, path = origin[len(FILE):].partition(":")
    return path, None if digest == "-" else digest


def volatile_origin(why: str) -> str:
    return f"{VOLATILE}{why}"


def stamped(step: CopyStep, folder: Path) -> bool:
    """Whether what a copy step takes is covered by the stamp of `folder`: inside it, not
    through a link out of it, and not from a SKIPPED folder (the whole folder is taken only
    with both excluded, as a Dockerfile's `COPY .` does)."""
    parts = [part for part in step.src.split("/") if part not in ("", ".")]
    if not parts:
        return all(name in step.exclude for name in SKIPPED)
    if parts[0] in SKIPPED:
        return False
    real = os.path.realpath(folder)
    return os.path.realpath(folder / step.src).startswith(real + os.sep)


def folder_stamp(folder: Path, now_ns: int | None = None) -> dict[str, Any] | None:
    """The project folder as it is before a build (files modified within 2 s of `now_ns`,
    default the clock, by content); None past MAX_ENTRIES or MAX_RACY_SIZE."""
    since = (time.time_ns() if now_ns is None else now_ns) - _RACY_NS
    tree = _listing(folder, racy_since=since)
    return None if tree is None else {"folder": str(folder), "since": since, "tree": tree}


def stamp_inputs(before: dict[str, Any] | None,
                 origins: frozenset[str]) -> dict[str, Any] | None:
    """What `inputs_hold` later compares, after a build: the folder as stamped `before` it
    and each file origin as the build read it. None if that cannot stand for the build's
    inputs: no stamp before, a volatile origin, a folder or an origin file that changed
    while it ran (the build may have read either version)."""
    if before is None or any(origin.startswith(VOLATILE) for origin in origins):
        return None
    folder = Path(before["folder"])
    if _listing(folder, racy_since=before["since"]) != before["tree"]:
        return None
    files = dict(_file_of(origin) for origin in sorted(origins) if origin.startswith(FILE))
    if any(_content(Path(path)) != digest for path, digest in files.items()):
        return None
    tags = sorted(origin for origin in origins if origin.startswith(TAG))
    if not all(_tag_holds(origin) for origin in tags):
        return None
    return {"folder": before["folder"], "tree": before["tree"], "files": files, "tags": tags}


def inputs_hold(inputs: dict[str, Any]) -> bool:
    """Whether every input stamped by `stamp_inputs` is still the same."""
    try:
        folder = Path(inputs["folder"])
        if not _same_tree(folder, inputs["tree"]):
            return False
        if not all(_content(Path(path)) == digest for path, digest in inputs["files"].items()):
            return False
        return all(_tag_holds(str(origin)) for origin in inputs["tags"])
    except (KeyError, TypeError, ValueError, OSError, ImageError):
        return False  # a damaged record holds nothing


def image_intact(state_dir: Path, name: str, digest: str) -> bool:
    """`name:latest` in the project's layout is `digest`, with its manifest, config, layers
    and the SBOM a build attaches all present."""
    layout = Layout(state_dir / "images")
    try:
        descriptors = layout.descriptors()
        tagged = [d for d in descriptors if d.get("annotations", {}).get(REF_NAME)
                  == f"{name}:latest"]
        if [d.get("digest") for d in tagged] != [digest]:
            return False
        manifest = layout.read_json(digest)
        blobs = [manifest["config"]["digest"], *(layer["digest"] for layer in manifest["layers"])]
        if not all(layout.has_blob(str(blob)) for blob in blobs):
            return False
        return bool(referrers_of(layout, digest, SBOM_TYPE))
    except (KeyError, TypeError, ValueError, OSError, NotFound, ImageError):
        return False


def _content(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


def _listing(folder: Path, racy_since: int) -> list[Row] | None:
    """Rows [path, kind, mode, size, mtime_ns, inode, extra] of every entry under `folder`
    (but SKIPPED at its top), sorted; a file modified after `racy_since` has mtime and inode
    0 and its content hash as extra. None past MAX_ENTRIES, or with a large such file."""
    rows: list[Row] = []
    pending = [("", folder)]
    while pending:
        prefix, where = pending.pop()
        with os.scandir(where) as scan:
            for entry in scan:
                rel = prefix + entry.name
                if not prefix and entry.name in SKIPPED:
                    continue
                info = entry.stat(follow_symlinks=False)
                if info.st_mtime_ns > racy_since and info.st_size > MAX_RACY_SIZE:
                    return None
                rows.append(_row(rel, Path(entry.path), info, racy_since))
                if stat.S_ISDIR(info.st_mode):
                    pending.append((rel + "/", Path(entry.path)))
                if len(rows) > MAX_ENTRIES:
                    return None
    return sorted(rows)


def _row(rel: str, path: Path, info: os.stat_result, racy_since: int) -> Row:
    mode = stat.S_IMODE(info.st_mode)
    if stat.S_ISDIR(info.st_mode):
        return [rel, "dir", mode, 0, 0, 0, ""]
    if stat.S_ISLNK(info.st_mode):
        # A link copied as a file (COPY of the link itself follows it) reads its target.
        try:
            target = path.stat()
            pointed = f"{os.readlink(path)}|{target.st_size}|{target.st_mtime_ns}|{target.st_ino}"
        except OSError:
            pointed = f"{os.readlink(path)}|missing"
        return [rel, "link", mode, 0, 0, 0, pointed]
    if not stat.S_ISREG(info.st_mode):
        return [rel, "other", mode, 0, 0, 0, ""]
    if info.st_mtime_ns > racy_since:
        return [rel, "file", mode, info.st_size, 0, 0, _content(path) or ""]
    return [rel, "file", mode, info.st_size, info.st_mtime_ns, info.st_ino, ""]


def _same_tree(folder: Path, recorded: list[Row]) -> bool:
    now = _listing(folder, racy_since=1 << 62)  # every file by stat; content where recorded
    if now is None or len(now) != len(recorded):
        return False
    for row, was in zip(now, recorded, strict=True):
        if was[1] == "file" and was[4] == 0 and was[6]:  # stamped by content
            if row[:4] != was[:4] or _content(folder / row[0]) != was[6]:
                return False
        elif row != was:
            return False
    return True
