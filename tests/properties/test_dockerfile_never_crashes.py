"""Whatever text a Dockerfile holds, corral answers with a located ImageError or a plan:
never a traceback (issue 18). Text is drawn from Dockerfile-ish pieces, so most examples
reach the instruction handlers, not only the parser."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from corral.errors import ImageError
from corral.images.build.dockerfile import plan_dockerfile
from corral.spec.model import ImageSpec

PIECES = ["FROM", "scratch", "AS", "a", "COPY", "--from=a", "--chown=1", "RUN", "ENV",
          "ARG", "X=1", "$X", "${X:-y}", "${", "<<EOF", "EOF", "\\", "`", "#", "# escape=`",
          '["a"]', "[1]", '"', "'", "USER", "SHELL", "STOPSIGNAL", "VOLUME", "/x", "WORKDIR",
          "LABEL", "CMD", "ENTRYPOINT", "HEALTHCHECK", "EXPOSE", "80/udp", "ONBUILD", "\n",
          " ", "\t", "--mount=type=cache,target=/c", "--platform=linux/x", "=", "ADD", "."]


@settings(max_examples=300, deadline=None)
@given(st.booleans(), st.lists(st.sampled_from(PIECES), max_size=40))
def test_any_dockerfile_text_plans_or_is_a_located_image_error(
        starts_with_from: bool, pieces: list[str]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "Dockerfile"
        path.write_text(("FROM scratch AS a\n" if starts_with_from else "") + " ".join(pieces))
        try:
            plan_dockerfile(path, Path(folder), ImageSpec(dockerfile="Dockerfile"),
                            lambda ref: "scratch")
        except ImageError as error:
            assert str(error).startswith("Dockerfile")
