"""BuildKit's Dockerfile parser corpus (tests/data/buildkit-parser, Apache-2.0): corral's own
parser must dump the same tree for every file, and planning each file must either work or
refuse with the file, the line and a reason (the known refusals below; the list only
shrinks as corral learns instructions)."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.errors import ImageError
from corral.images.build.dockerfile import plan_dockerfile
from corral.images.build.dockerfile_parser import parse_dockerfile
from corral.spec.model import ImageSpec

CORPUS = Path(__file__).parents[2] / "data" / "buildkit-parser" / "testfiles"
CASES = sorted(p.name for p in CORPUS.iterdir())

# What corral refuses to build, by corpus file: (line, words of the reason).
KNOWN_REFUSALS = {
    "cpuguy83-nagios": (52, "images carry no volumes in corral"),  # its ADD URLs plan now
    "docker": (86, "images carry no volumes in corral"),
    "escapes": (6, "needs at least one source and a destination"),  # Docker refuses it too
    "flags": (3, "the flag --user is not supported"),  # made-up flags, refused by Docker too
    "health": (4, "HEALTHCHECK [flags] CMD"),  # a bare HEALTHCHECK: Docker refuses it too
    "influxdb": (8, "images carry no volumes in corral"),
    "lk4d4-the-edge-case-generator": (5, "ONBUILD is not supported"),
    "multiple-volumes": (3, "images carry no volumes in corral"),
    "nginx": (13, "images carry no volumes in corral"),
    # Parser-only files: an instruction with no FROM above it.
    **{name: (1, "CMD before FROM") for name in CASES if name.startswith("jeztah") or
       name == "json"},
}


def test_the_corpus_is_all_there() -> None:
    assert len(CASES) == 33
    assert all((CORPUS / name / "result").is_file() for name in CASES)


@pytest.mark.parametrize("name", CASES)
def test_corral_parses_each_corpus_dockerfile_into_buildkits_tree(name: str) -> None:
    parsed = parse_dockerfile((CORPUS / name / "Dockerfile").read_text())
    assert parsed.dump() == (CORPUS / name / "result").read_text()


@pytest.mark.parametrize("name", CASES)
def test_each_corpus_dockerfile_plans_or_is_refused_with_file_line_and_reason(
        name: str) -> None:
    folder = CORPUS / name
    image = ImageSpec(dockerfile="Dockerfile")
    if name not in KNOWN_REFUSALS:
        plan = plan_dockerfile(folder / "Dockerfile", folder, image, lambda ref: "scratch")
        assert plan.base == "scratch"
        return
    line, reason = KNOWN_REFUSALS[name]
    with pytest.raises(ImageError) as refused:
        plan_dockerfile(folder / "Dockerfile", folder, image, lambda ref: "scratch")
    first = str(refused.value).splitlines()[0]
    assert first.startswith(f"Dockerfile:{line}: ") and reason in first
