"""Run steps over an overlay mount give the very layers a copied root gives: the same image
digest from the same Dockerfile whichever sandbox ran it (creations, edits of base files,
deletions, a folder replaced wholesale, mode changes, cached layers applied in between, a
second stage on the same base), and a one-layer base is never composed into a root."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from corral.images import LocalImageStore
from corral.images.build import builder as builder_module
from corral.images.build import overlay as overlay_module
from corral.images.build.overlay import OverlaySandbox, make_sandbox
from corral.images.build.run import Sandbox
from corral.images.roots.compose import compose_root
from corral.spec.model import ImageSpec

pytestmark = pytest.mark.integration

MACHINE_CACHE = Path(os.environ.get("CORRAL_TEST_CACHE",
                                    Path.home() / ".cache" / "corral-tests")) / "corral-cache"

DOCKERFILE = """FROM debian:bookworm AS build
RUN echo new > /new.txt && echo edited >> /etc/issue && rm /etc/debian_version \\
    && rm -rf /usr/share/doc/apt && mkdir -p /usr/share/doc/apt \\
    && echo only > /usr/share/doc/apt/x \\
    && chmod 700 /opt && mkdir -p /srv/a/b && ln -s /srv/a /srv/link
COPY app/ /app/
RUN rm /new.txt && rm -rf /srv/a/b && echo again > /etc/motd && rm -rf /var/lib/dpkg/info

FROM debian:bookworm
COPY app/ /app/
COPY --from=build /etc/motd /srv/a/motd
RUN cat /srv/a/motd /app/main.py > /srv/both && rm -rf /app && chmod 700 /srv/a
"""


def _project(folder: Path) -> Path:
    (folder / "app").mkdir(parents=True)
    (folder / "app" / "main.py").write_text("print('hi')\n")
    (folder / "Dockerfile").write_text(DOCKERFILE)
    return folder


def _build(folder: Path) -> tuple[str, str]:
    """The digests of the last stage and of the first one (its steps cached by then)."""
    store = LocalImageStore(folder / ".corral", cache_dir=MACHINE_CACHE)
    image = ImageSpec.model_validate({"dockerfile": "Dockerfile", "packages": ["python3"]})
    final = store.build("app", image, folder)
    return final, store.build("build", image.model_copy(update={"target": "build"}), folder)


@pytest.fixture
def composed(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many layers each root composed for an overlay sandbox had."""
    made: list[int] = []

    def spy(layers, cache, target):  # type: ignore[no-untyped-def]
        made.append(len(layers))
        return compose_root(layers, cache, target)

    monkeypatch.setattr(overlay_module, "compose_root", spy)
    return made


@pytest.fixture
def sandboxes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The kind of each sandbox the builder makes."""
    made: list[str] = []

    def spy(layers, scratch, cache, lower=None):  # type: ignore[no-untyped-def]
        sandbox = make_sandbox(layers, scratch, cache, lower)
        made.append(type(sandbox).__name__)
        return sandbox

    monkeypatch.setattr(builder_module, "make_sandbox", spy)
    return made


def test_an_overlay_run_gives_the_digest_a_copied_root_gives(
        tmp_path: Path, sandboxes: list[str], composed: list[int],
        monkeypatch: pytest.MonkeyPatch) -> None:
    if os.geteuid() != 0 or shutil.which("bwrap") is None:
        pytest.skip("overlay mounts need root; run steps need bubblewrap")
    if not (MACHINE_CACHE / "bases").is_dir() and shutil.which("debootstrap") is None:
        pytest.skip("no cached Debian base and no debootstrap to make one")
    over = _build(_project(tmp_path / "overlay"))
    assert sandboxes == [OverlaySandbox.__name__] * 2
    assert composed == []  # both stages ran over the base layer as extracted, linked nowhere
    monkeypatch.setattr(builder_module, "make_sandbox",
                        lambda layers, scratch, cache, lower=None: Sandbox([b for b, _ in layers],
                                                                           scratch))
    copied = _build(_project(tmp_path / "copied"))
    assert copied == over
    work = tmp_path / "overlay" / ".corral" / "cache" / "work"
    assert not list(work.glob("lowers-*"))  # the shared lower root went with the build
