"""Healthcheck metadata, .dockerignore and build args: parsing, and real scratch builds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from corral.errors import ImageError
from corral.images import LocalImageStore
from corral.images.build.dockerfile import plan_dockerfile
from corral.images.build.dockerignore import IgnoreRules
from corral.images.build.healthcheck import (
    docker_healthcheck,
    parse_go_duration,
    parse_instruction,
    read_healthcheck,
)
from corral.ports.records import ImageHealthcheck
from corral.spec.model import ImageHealthcheckSpec, ImageSpec

DOCKERFILE = ImageSpec(dockerfile="Dockerfile")


def _store(project: Path) -> LocalImageStore:
    # the machine cache inside .corral: a `COPY .` of the context leaves it out
    return LocalImageStore(project / ".corral", cache_dir=project / ".corral" / "machine")


def _config(store: LocalImageStore, digest: str) -> dict:  # type: ignore[type-arg]
    manifest = store.layout.read_json(digest)
    return json.loads(store.layout.read_blob(manifest["config"]["digest"]))


def _files(store: LocalImageStore, digest: str) -> set[str]:
    root = store.unpack(digest)
    return {str(p.relative_to(root)) for p in root.rglob("*")}


# -- healthcheck --------------------------------------------------------------------

@pytest.mark.parametrize(("text", "seconds"), [
    ("30s", 30.0), ("1m30s", 90.0), ("500ms", 0.5), ("1.5s", 1.5), ("1h", 3600.0), ("0", 0.0),
    ("250us", 0.00025)])
def test_go_durations_read_as_docker_reads_them(text: str, seconds: float) -> None:
    assert parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "5x", "s", "1m 30s", "-1s"])
def test_what_is_not_a_go_duration_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_go_duration(text)


@pytest.mark.parametrize(("args", "command", "interval", "timeout", "grace", "retries"), [
    ('CMD ["curl", "-f", "http://localhost/"]', ("curl", "-f", "http://localhost/"),
     30.0, 30.0, 0.0, 3),
    ("--interval=5s --timeout=2s --start-period=1s --retries=4 CMD test -e /ok",
     "test -e /ok", 5.0, 2.0, 1.0, 4),
    ("--interval=1m CMD [not json", "[not json", 60.0, 30.0, 0.0, 3),
])
def test_healthcheck_instructions_parse_in_exec_and_shell_form(
        args: str, command: object, interval: float, timeout: float, grace: float,
        retries: int) -> None:
    spec = parse_instruction(args)
    assert (spec.command, spec.interval, spec.timeout, spec.start_grace, spec.retries) == (
        command, interval, timeout, grace, retries)


def test_the_docker_object_has_cmd_or_cmd_shell_and_nanoseconds() -> None:
    exec_form = ImageHealthcheckSpec(command=("curl", "-f", "x"), interval="5s",
                                     timeout="2s", start_grace="1s", retries=3)
    assert docker_healthcheck(exec_form) == {
        "Test": ["CMD", "curl", "-f", "x"], "Interval": 5_000_000_000,
        "Timeout": 2_000_000_000, "StartPeriod": 1_000_000_000, "Retries": 3}
    shell = docker_healthcheck(ImageHealthcheckSpec(command="test -e /ok"))
    assert shell["Test"] == ["CMD-SHELL", "test -e /ok"] and "StartPeriod" not in shell
    assert docker_healthcheck(parse_instruction("NONE")) == {"Test": ["NONE"]}


def test_the_docker_object_reads_back_into_the_record() -> None:
    document = docker_healthcheck(ImageHealthcheckSpec(command="true", interval="5s",
                                                       start_grace="1s", retries=2))
    assert read_healthcheck(document) == ImageHealthcheck(
        test=("CMD-SHELL", "true"), interval=5.0, timeout=30.0, start_period=1.0, retries=2)
    assert read_healthcheck(None) is None
    assert read_healthcheck({"Test": "CMD true"}) is None


def test_a_spec_healthcheck_needs_a_command() -> None:
    with pytest.raises(ValueError, match="needs a command"):
        ImageHealthcheckSpec(command="  ")


def test_the_spec_key_lands_in_the_built_config(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "ok").write_text("")
    store = _store(tmp_path)
    digest = store.build("web", ImageSpec.model_validate({
        "copy": [{"src": "app/", "dest": "/app"}],
        "healthcheck": {"command": ["test", "-e", "/app/ok"], "interval": "5s",
                        "timeout": "2s", "start_grace": "1s", "retries": 3}}), tmp_path)
    assert _config(store, digest)["config"]["Healthcheck"] == {
        "Test": ["CMD", "test", "-e", "/app/ok"], "Interval": 5_000_000_000,
        "Timeout": 2_000_000_000, "StartPeriod": 1_000_000_000, "Retries": 3}
    assert store.config(digest).healthcheck == ImageHealthcheck(
        ("CMD", "test", "-e", "/app/ok"), 5.0, 2.0, 1.0, 3)


def test_a_dockerfile_healthcheck_is_inherited_and_none_disables_it(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(
        "FROM scratch\nHEALTHCHECK --interval=3s CMD wget -q -O- http://127.0.0.1/\n")
    store = _store(tmp_path)
    base = store.build("base", DOCKERFILE, tmp_path)
    assert _config(store, base)["config"]["Healthcheck"]["Test"] == [
        "CMD-SHELL", "wget -q -O- http://127.0.0.1/"]
    (tmp_path / "Dockerfile.child").write_text("FROM base\nENV A=1\n")
    child = store.build("child", ImageSpec(dockerfile="Dockerfile.child"), tmp_path)
    assert _config(store, child)["config"]["Healthcheck"]["Interval"] == 3_000_000_000
    (tmp_path / "Dockerfile.none").write_text("FROM base\nHEALTHCHECK NONE\n")
    off = store.build("off", ImageSpec(dockerfile="Dockerfile.none"), tmp_path)
    assert _config(store, off)["config"]["Healthcheck"] == {"Test": ["NONE"]}


# -- .dockerignore ------------------------------------------------------------------

@pytest.mark.parametrize(("lines", "path", "ignored"), [
    (["*.pyc"], "x.pyc", True),
    (["*.pyc"], "app/x.pyc", False),  # '*' stays within one folder, as in Docker
    (["**/*.pyc"], "app/deep/x.pyc", True),
    (["**/*.pyc"], "x.pyc", True),
    (["/secret.txt"], "secret.txt", True),  # a leading '/' is ignored
    (["build"], "build/out/a.o", True),  # a matching folder takes its content
    (["build", "!build/keep.txt"], "build/keep.txt", False),
    (["build", "!build/keep.txt"], "build/other.txt", True),
    (["!x", "*"], "x", True),  # the last matching line wins
    (["# *", "", "  logs/  "], "logs/a.log", True),
    (["# *"], "a", False),
    (["a?c"], "abc", True),
    (["a?c"], "a/c", False),
    (["[ab].txt"], "b.txt", True),
    (["docs/**"], "docs/x/y.md", True),
    (["docs/**"], "docs", False),
    ([".git", "*.md", "!README*.md", "README-secret.md"], "README-secret.md", True),
    ([".git", "*.md", "!README*.md", "README-secret.md"], "README.md", False),
])
def test_dockerignore_rules_match_as_dockers_do(lines: list[str], path: str,
                                                ignored: bool) -> None:
    assert IgnoreRules(lines).ignored(path) is ignored


def _ignore_project(folder: Path, ignore: str) -> Path:
    (folder / "app" / "cache").mkdir(parents=True)
    (folder / "app" / "server.py").write_text("print('hi')\n")
    (folder / "app" / "notes.md").write_text("notes\n")
    (folder / "app" / "cache" / "big.bin").write_text("x" * 100)
    (folder / "app" / "cache" / "keep.txt").write_text("keep\n")
    (folder / "secret.txt").write_text("token\n")
    (folder / ".dockerignore").write_text(ignore)
    (folder / "Dockerfile").write_text("FROM scratch\nCOPY . /ctx/\nCOPY app /app\n")
    return folder


def test_ignored_files_are_not_in_the_image_and_exceptions_are(tmp_path: Path) -> None:
    project = _ignore_project(tmp_path, "# context\nsecret.txt\n**/*.md\napp/cache\n"
                              "!app/cache/keep.txt\n")
    store = _store(project)
    files = _files(store, store.build("web", DOCKERFILE, project))
    assert "ctx/secret.txt" not in files and "app/notes.md" not in files
    assert "app/cache/big.bin" not in files and "ctx/app/cache/big.bin" not in files
    assert {"app/server.py", "app/cache/keep.txt", "ctx/Dockerfile", "ctx/app/server.py"} \
        <= files


def test_changing_an_ignored_file_does_not_rebuild(tmp_path: Path) -> None:
    project = _ignore_project(tmp_path, "secret.txt\napp/cache/\n")
    store = _store(project)
    lines: list[str] = []
    first = store.build("web", DOCKERFILE, project)
    (project / "secret.txt").write_text("another token\n")
    (project / "app" / "cache" / "big.bin").write_text("y" * 500)
    assert store.build("web", DOCKERFILE, project, progress=lines.append) == first
    assert all("(cached)" in line for line in lines if line.startswith("layer copy"))
    (project / "app" / "server.py").write_text("print('changed')\n")
    assert store.build("web", DOCKERFILE, project) != first


def test_copying_an_ignored_path_by_name_is_an_error_naming_the_line(tmp_path: Path) -> None:
    project = _ignore_project(tmp_path, "secret.txt\n")
    (project / "Dockerfile").write_text("FROM scratch\n\nCOPY secret.txt /s\n")
    with pytest.raises(ImageError, match=r"Dockerfile:3: .*excluded by \.dockerignore"):
        _store(project).build("web", DOCKERFILE, project)


def test_a_dockerfile_specific_ignore_file_wins_over_the_context_one(tmp_path: Path) -> None:
    project = _ignore_project(tmp_path, "secret.txt\n")
    (project / "Dockerfile.dockerignore").write_text("app/notes.md\n")
    store = _store(project)
    files = _files(store, store.build("web", DOCKERFILE, project))
    assert "ctx/secret.txt" in files and "app/notes.md" not in files


def test_spec_copy_steps_do_not_read_dockerignore(tmp_path: Path) -> None:
    project = _ignore_project(tmp_path, "app/notes.md\n")
    store = _store(project)
    digest = store.build("web", ImageSpec.model_validate(
        {"copy": [{"src": "app/", "dest": "/app"}]}), project)
    assert "app/notes.md" in _files(store, digest)


# -- build args ---------------------------------------------------------------------

def _args_project(folder: Path) -> Path:
    (folder / "Dockerfile").write_text("ARG BASE=scratch\nFROM $BASE\nARG VERSION=1\n"
                                       "ARG EMPTY\nENV APP_VERSION=$VERSION\n")
    return folder


def test_build_args_override_arg_defaults_and_unknown_ones_warn(tmp_path: Path) -> None:
    project = _args_project(tmp_path)
    plan = plan_dockerfile(project / "Dockerfile", project,
                           ImageSpec(dockerfile="Dockerfile", build_args={
                               "VERSION": "7", "EMPTY": "e", "TYPO": "x"}), lambda _: None)
    assert plan.metadata.env == {"APP_VERSION": "7"}
    assert len(plan.warnings) == 1 and "TYPO" in plan.warnings[0]
    assert "VERSION" not in plan.warnings[0]


def test_a_build_arg_changes_the_digest_and_the_same_one_gives_it_back(
        tmp_path: Path) -> None:
    project = _args_project(tmp_path)
    store = _store(project)
    default = store.build("web", DOCKERFILE, project)
    seven = store.build("web", ImageSpec(dockerfile="Dockerfile",
                                         build_args={"VERSION": "7"}), project)
    assert seven != default and store.config(seven).env["APP_VERSION"] == "7"
    assert store.build("web", ImageSpec(dockerfile="Dockerfile",
                                        build_args={"VERSION": "7"}), project) == seven


def test_build_args_need_a_dockerfile() -> None:
    with pytest.raises(ValueError, match="build_args are for Dockerfile ARGs"):
        ImageSpec(build_args={"A": "1"})
