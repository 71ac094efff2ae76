"""Dockerfiles: the supported instructions map onto the same steps as the spec keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from corral.errors import ImageError
from corral.images import LocalImageStore
from corral.images.build.dockerfile import plan_dockerfile
from corral.images.build.dockerfile_parser import parse_dockerfile
from corral.images.build.dockerfile_syntax import substitute
from corral.images.build.plan import BindMount, PlanRun
from corral.spec.model import CopyStep, ImageSpec

DOCKERFILE = ImageSpec(dockerfile="Dockerfile")


def _project(folder: Path, dockerfile: str) -> Path:
    (folder / "app").mkdir(parents=True)
    (folder / "app" / "server.py").write_text("print('hi')\n")
    (folder / "app" / "util.py").write_text("X = 1\n")
    (folder / "Dockerfile").write_text(dockerfile)
    return folder


def _plan(folder: Path, text: str, local: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    project = _project(folder, text)
    return plan_dockerfile(project / "Dockerfile", project, DOCKERFILE,
                           lambda ref: (local or {}).get(ref))


def _store(project: Path) -> LocalImageStore:
    return LocalImageStore(project / ".corral", cache_dir=project / "machine-cache")


def test_continuations_and_comments_make_logical_lines_with_their_first_line(
        tmp_path: Path) -> None:
    path = tmp_path / "Dockerfile"
    path.write_text("# a comment\nFROM scratch\nRUN echo a \\\n  # inside\n  && echo b\n\n"
                    "ENV A=1\n")
    lines = [(i.line, i.name, i.args) for i in parse_dockerfile(path.read_text()).nodes]
    assert lines == [(2, "FROM", "scratch"), (3, "RUN", "echo a   && echo b"), (7, "ENV", "A=1")]


@pytest.mark.parametrize(("text", "values", "expected"), [
    ("$A/${B}", {"A": "1", "B": "2"}, "1/2"),
    ("${MISSING:-fallback}", {}, "fallback"),
    ("${A:+set}${MISSING:+never}", {"A": "x"}, "set"),
    ("${MISSING}x", {}, "x"),
])
def test_variables_expand_as_docker_expands_them(text: str, values: dict[str, str],
                                                  expected: str) -> None:
    assert substitute(text, values) == expected


def test_every_supported_instruction_lands_in_the_plan(tmp_path: Path) -> None:
    plan = _plan(tmp_path, """
ARG VERSION=3
FROM scratch
ARG VERSION
ENV APP_VERSION=$VERSION GREETING="hello world"
WORKDIR /srv
WORKDIR app
COPY --chmod=600 --chown=10:20 app/server.py ./
ADD app/ /srv/lib
LABEL team=shop "org.example.note"="two words"
EXPOSE 8000 9000/tcp
USER 1000:1000
ENTRYPOINT ["python3", "server.py"]
CMD verbose
""")
    assert plan.base == "scratch"
    assert plan.steps == (
        CopyStep(src="app/server.py", dest="/srv/app/", mode=0o600, owner="10:20"),
        CopyStep(src="app", dest="/srv/lib"))
    meta = plan.metadata
    assert meta.env == {"APP_VERSION": "3", "GREETING": "hello world"}
    assert (meta.workdir, meta.user, meta.ports) == ("/srv/app", "1000:1000", (8000, 9000))
    assert meta.entrypoint == ("python3", "server.py")
    assert meta.cmd == ("/bin/sh", "-c", "verbose")
    assert meta.labels == {"team": "shop", "org.example.note": "two words"}


def test_run_steps_keep_their_order_env_and_workdir(tmp_path: Path) -> None:
    plan = _plan(tmp_path, "FROM debian:bookworm\nARG MODE=fast\nRUN echo one\n"
                 "COPY app /app\nENV X=1\nWORKDIR /app\nRUN --network=none pip install x\n")
    assert plan.base == "debian:bookworm"
    first, copy, second = plan.steps
    assert isinstance(first, PlanRun) and isinstance(second, PlanRun)
    assert (first.step.command, first.env, first.workdir) == ("echo one", {"MODE": "fast"}, "/")
    assert isinstance(copy, CopyStep) and copy.dest == "/app"
    assert second.env == {"MODE": "fast", "X": "1"} and second.workdir == "/app"
    assert first.step.network and not second.step.network  # Docker's default: the network


def test_bind_mounts_are_planned_with_their_target_in_the_workdir(tmp_path: Path) -> None:
    plan = _plan(tmp_path, "FROM debian:bookworm AS deps\nFROM debian:bookworm\nWORKDIR /app\n"
                 "RUN --mount=type=bind,source=app,target=src "
                 "--mount=type=bind,from=deps,src=/usr,dst=/deps,rw "
                 "--mount=type=cache,target=/root/.cache ls\n")
    run = plan.steps[0]
    assert isinstance(run, PlanRun)
    assert run.binds == (BindMount("app", "/app/src"),
                         BindMount("/usr", "/deps", origin="stage:0", writable=True))
    assert [cache.target for cache in run.caches] == ["/root/.cache"]


def test_maintainer_is_the_configs_author(tmp_path: Path) -> None:
    plan = _plan(tmp_path, "FROM scratch\nMAINTAINER Jane <jane@example.com>\n")
    assert plan.author == "Jane <jane@example.com>"


def test_from_an_image_built_by_corral_uses_the_local_layout(tmp_path: Path) -> None:
    plan = _plan(tmp_path, "FROM web\n", {"web": "layout:/x/images:web:latest"})
    assert plan.base == "layout:/x/images:web:latest"


@pytest.mark.parametrize(("text", "line", "message"), [
    ("FROM scratch\nHEALTHCHECK --bogus=1 CMD true\n", 2, "--interval="),
    ("FROM scratch\nHEALTHCHECK --interval=5x CMD true\n", 2, "not a duration"),
    ("FROM scratch\nHEALTHCHECK NONE true\n", 2, "NONE takes no"),
    ("FROM scratch\nHEALTHCHECK true\n", 2, "HEALTHCHECK \\[flags\\] CMD"),
    ("FROM scratch\n\nONBUILD RUN x\n", 3, "ONBUILD is not supported"),
    ("FROM scratch AS a\nFROM scratch AS A\n", 2, "already defined"),
    ("FROM scratch AS\n", 1, "FROM IMAGE AS NAME"),
    ("FROM python:3.12-slim\n", 1, "never pulls from Docker Hub"),
    ("FROM scratch\nCMD --verbose\n", 2, "CMD takes no flags"),
    ("FROM scratch\nVOLUME /data\n", 2, 'volumes = { data = "/data" }'),
    ("FROM scratch\nSHELL bash -c\n", 2, "JSON form"),
    ("FROM scratch\nSTOPSIGNAL SIGBOGUS\n", 2, "not a signal"),
    ("FROM scratch\nRUN --mount=type=secret,id=x cat /x\n", 2, "only cache, bind and tmpfs"),
    ("FROM scratch\nRUN --mount=type=tmpfs ls\n", 2, "takes target=PATH"),
    ("FROM scratch\nRUN --mount=type=bind,source=x ls\n", 2, "needs target=PATH"),
    ("FROM scratch\nRUN --mount=type=bind,source=../x,target=/x ls\n", 2, "outside the build"),
    ("FROM scratch\nRUN --mount=type=bind,target=/x,bogus=1 ls\n", 2, "bogus are not supp"),
    ("FROM scratch\nRUN --mount=type=cache,target=/c,uid=app ls\n", 2, "uid=app is not a"),
    ("FROM scratch\nRUN --mount=type=cache,target=/c,mode=rwx ls\n", 2, "not an octal mode"),
    ("FROM scratch\nRUN cat <<EOF\nx\n", 2, "unterminated heredoc"),
    ("# escape=x\nFROM scratch\n", 1, "invalid escape token"),
    ("FROM scratch\nCOPY https://example.com/x.tgz /x\n", 2, "is a URL; COPY takes local"),
    ("FROM scratch\nADD https://example.com/r.git /x\n", 2, "no git repositories"),
    ("FROM scratch\nADD --checksum=md5:1 https://example.com/x /x\n", 2, "sha256:<64 hex"),
    ("FROM scratch\nADD --checksum=sha256:" + "0" * 64 + " a.txt /x\n", 2,
     "--checksum applies to a URL"),
    ("FROM scratch\nADD app.tar.zst /x\n", 2, "zstd archives are not unpacked"),
    ("FROM scratch\nCOPY --from=build /a /a\n", 2, "'build' names no registry host"),
    ("FROM scratch\nCOPY ../secret /a\n", 2, "outside the build context"),
    ("FROM scratch\nCOPY --chown=a:b:c app /app\n", 2, "use user\\[:group\\]"),
    ("FROM scratch\nEXPOSE 53/udp\n", 2, "only tcp"),
    ("FROM scratch\nCMD [\"a\", 1]\n", 2, "arrays must be comprised of strings"),
    ("COPY app /app\n", 1, "before FROM"),
])
def test_what_corral_cannot_build_is_an_error_naming_file_line_and_instruction(
        tmp_path: Path, text: str, line: int, message: str) -> None:
    with pytest.raises(ImageError, match=f"Dockerfile:{line}: .*{message}"):
        _plan(tmp_path, text)


def test_a_dockerfile_without_from_says_so(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="no FROM line"):
        _plan(tmp_path, "# nothing\n")


def test_a_dockerfile_image_has_the_layers_of_the_same_spec_image(tmp_path: Path) -> None:
    project = _project(tmp_path / "p", "FROM scratch\nCOPY app/ /app\nENV A=1\n"
                       "ENTRYPOINT [\"/app/server.py\"]\n")
    store = _store(project)
    from_dockerfile = store.build("df", DOCKERFILE, project)
    from_keys = store.build("keys", ImageSpec.model_validate({
        "copy": [{"src": "app/", "dest": "/app"}], "env": {"A": "1"},
        "entrypoint": ["/app/server.py"]}), project)

    def layers(digest: str) -> list[str]:
        return [x["digest"] for x in store.layout.read_json(digest)["layers"]]

    assert layers(from_dockerfile) == layers(from_keys)
    assert store.config(from_dockerfile).env == store.config(from_keys).env


def test_a_dockerfile_rebuild_with_no_change_writes_nothing_and_one_change_rebuilds(
        tmp_path: Path) -> None:
    project = _project(tmp_path / "p", "FROM scratch\nCOPY app/util.py /lib/\n"
                       "COPY app/server.py /app/\n")
    store = _store(project)
    first = store.build("web", DOCKERFILE, project)
    blobs = sorted(p.name for p in store.layout.blobs.iterdir())
    assert store.build("web", DOCKERFILE, project) == first
    assert sorted(p.name for p in store.layout.blobs.iterdir()) == blobs
    (project / "app" / "server.py").write_text("print('changed')\n")
    second = store.build("web", DOCKERFILE, project)
    old, new = (store.layout.read_json(d)["layers"] for d in (first, second))
    assert old[0] == new[0] and old[1] != new[1]


def test_from_a_corral_image_stacks_on_its_layers_and_config(tmp_path: Path) -> None:
    project = _project(tmp_path / "p", "FROM scratch\nCOPY app/util.py /lib/\nENV BASE=1\n")
    store = _store(project)
    base = store.build("base", DOCKERFILE, project)
    (project / "Dockerfile.app").write_text("FROM base\nCOPY app/server.py /app/\n")
    app = store.build("app", ImageSpec(dockerfile="Dockerfile.app"), project)
    base_layers = store.layout.read_json(base)["layers"]
    assert store.layout.read_json(app)["layers"][:1] == base_layers
    assert store.config(app).env["BASE"] == "1"
    config = json.loads(store.layout.read_blob(store.layout.read_json(app)["config"]["digest"]))
    assert len(config["rootfs"]["diff_ids"]) == 2
