"""Where two builds of one image differ: the first differing layer entry, or config key.

Used by `corral build --check-reproducible`, which rebuilds from nothing in another folder.
It reads two layouts; it never builds.
"""

from __future__ import annotations

import hashlib
import itertools
import tarfile
from pathlib import Path
from typing import Any

from corral.images.oci.layout import Layout

_Row = tuple[str, str, int, int, int, int, int, str, str]


def first_difference(a: Layout, digest_a: str, b: Layout, digest_b: str) -> str | None:
    """None when the digests are equal, else a sentence naming the first difference."""
    if digest_a == digest_b:
        return None
    manifest_a, manifest_b = a.read_json(digest_a), b.read_json(digest_b)
    layers_a, layers_b = manifest_a.get("layers", []), manifest_b.get("layers", [])
    if len(layers_a) != len(layers_b):
        return f"the builds have {len(layers_a)} and {len(layers_b)} layers"
    for number, (one, two) in enumerate(zip(layers_a, layers_b, strict=True), 1):
        if one["digest"] != two["digest"]:
            found = _layer_difference(a.blob_path(one["digest"]), b.blob_path(two["digest"]))
            return f"layer {number}: {found}"
    config_a = a.read_json(manifest_a["config"]["digest"])
    config_b = b.read_json(manifest_b["config"]["digest"])
    return f"the image config differs: {_dict_difference(config_a, config_b, 'config')}"


def _layer_difference(one: Path, two: Path) -> str:
    with tarfile.open(one, "r:*") as tar_a, tarfile.open(two, "r:*") as tar_b:
        for row_a, row_b in itertools.zip_longest(_rows(tar_a), _rows(tar_b)):
            if row_a == row_b:
                continue
            if row_a is None or row_b is None:
                extra = row_a or row_b
                assert extra is not None
                return f"/{extra[0]} is in one build only"
            if row_a[0] != row_b[0]:
                first = min(row_a[0], row_b[0])
                return f"/{first} is in one build only"
            fields = ("name", "type", "mode", "uid", "gid", "mtime", "size", "link", "content")
            what = [f for f, x, y in zip(fields, row_a, row_b, strict=True) if x != y]
            return f"/{row_a[0]} differs in {', '.join(what)}"
    return "same entries, different bytes (compression or tar headers)"


def _rows(tar: tarfile.TarFile) -> Any:
    for member in tar:
        content = ""
        if member.isreg():
            reader = tar.extractfile(member)
            assert reader is not None
            content = hashlib.sha256(reader.read()).hexdigest()
        yield (member.name, member.type.decode(), member.mode, member.uid, member.gid,
               int(member.mtime), member.size, member.linkname, content)


def _dict_difference(one: Any, two: Any, path: str) -> str:
    if isinstance(one, dict) and isinstance(two, dict):
        for key in sorted(set(one) | set(two)):
            if one.get(key) != two.get(key):
                return _dict_difference(one.get(key), two.get(key), f"{path}.{key}")
    return f"{path} is {one!r} in one build and {two!r} in the other"
