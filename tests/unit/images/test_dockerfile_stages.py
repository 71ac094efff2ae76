"""Dockerfiles as people write them: directives, heredocs, SHELL, STOPSIGNAL, cache mounts,
stages and registry references, planned without building (tables, no processes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.errors import ImageError
from corral.images.build.dockerfile import has_registry_host, image_base, plan_dockerfile
from corral.images.build.dockerfile_parser import Heredoc, parse_dockerfile
from corral.images.build.plan import BuildPlan, CacheMount, PlanCopyFrom, PlanFile, PlanRun
from corral.spec.model import ImageSpec


def _plan(folder: Path, text: str, **image: object) -> BuildPlan:
    (folder / "Dockerfile").write_text(text)
    spec = ImageSpec.model_validate({"dockerfile": "Dockerfile", **image})
    return plan_dockerfile(folder / "Dockerfile", folder, spec, lambda ref: None)


def test_a_heredoc_carries_its_body_and_whether_it_expands() -> None:
    parsed = parse_dockerfile("FROM scratch\nRUN <<EOF\necho $HOME\nEOF\n"
                              "RUN <<-'END' cat\n\tquoted $X\n\tEND\nENV A=1\n")
    first, second = parsed.nodes[1].heredocs[0], parsed.nodes[2].heredocs[0]
    assert first == Heredoc("EOF", "echo $HOME\n", expand=True)
    assert second == Heredoc("END", "\tquoted $X\n", expand=False, chomp=True)
    assert [(n.name, n.line) for n in parsed.nodes] == [("FROM", 1), ("RUN", 2), ("RUN", 5),
                                                        ("ENV", 8)]


def test_the_escape_directive_makes_the_backtick_continue_lines() -> None:
    parsed = parse_dockerfile("# escape=`\nFROM scratch\nRUN dir c:\\ `\n  && echo x\n")
    assert parsed.escape == "`"
    assert parsed.nodes[1].args == "dir c:\\   && echo x"


def test_the_syntax_directive_is_ignored_with_a_note(tmp_path: Path) -> None:
    plan = _plan(tmp_path, "# syntax=docker/dockerfile:1\nFROM scratch\n")
    assert plan.notes == ("Dockerfile: # syntax=docker/dockerfile:1 is ignored; corral reads "
                          "the Dockerfile with its own parser",)


def test_a_run_heredoc_becomes_the_script_and_a_shebang_one_runs_as_a_file(
        tmp_path: Path) -> None:
    plan = _plan(tmp_path, "FROM debian:bookworm\nRUN <<EOF\nset -e\necho hi > /a\nEOF\n"
                 "RUN python3 - <<PY\nprint(1)\nPY\nRUN <<EOF\n#!/usr/bin/python3\nprint(2)\n"
                 "EOF\n")
    script, stdin, shebang = (s for s in plan.steps if isinstance(s, PlanRun))
    assert script.step.command == "set -e\necho hi > /a\n"
    assert stdin.step.command == "python3 - <<PY\nprint(1)\nPY\n"
    assert shebang.step.command.startswith('f=$(mktemp) && cat > "$f" <<EOF && chmod +x')
    assert shebang.step.command.endswith("\n#!/usr/bin/python3\nprint(2)\nEOF\n")


def test_a_copy_heredoc_writes_a_file_with_variables_expanded(tmp_path: Path) -> None:
    plan = _plan(tmp_path, "FROM scratch\nENV WHO=world\nCOPY <<EOF /etc/greeting\n"
                 "hello $WHO\nEOF\nCOPY --chmod=755 <<'RAW' /bin/\n$WHO\nRAW\n")
    assert plan.steps == (PlanFile("/etc/greeting", "hello world\n"),
                          PlanFile("/bin/RAW", "$WHO\n", mode=0o755))


def test_shell_changes_how_run_and_the_shell_forms_of_cmd_run(tmp_path: Path) -> None:
    plan = _plan(tmp_path, 'FROM debian:bookworm\nSHELL ["/bin/bash", "-eu", "-c"]\n'
                 "RUN echo $0\nCMD serve --port 1\n")
    run = plan.steps[0]
    assert isinstance(run, PlanRun) and run.argv == ("/bin/bash", "-eu", "-c", "echo $0")
    assert plan.metadata.cmd == ("/bin/bash", "-eu", "-c", "serve --port 1")


def test_stopsignal_and_cache_mounts_land_in_the_plan(tmp_path: Path) -> None:
    plan = _plan(tmp_path, "FROM debian:bookworm\nSTOPSIGNAL SIGINT\n"
                 "RUN --mount=type=cache,target=/root/.cache/pip,sharing=locked "
                 "--mount=type=cache,id=apt,target=/var/cache/apt/ pip --version\n")
    run = plan.steps[0]
    assert plan.stop_signal == "SIGINT"
    assert isinstance(run, PlanRun) and run.caches == (
        CacheMount("/root/.cache/pip", "/root/.cache/pip"), CacheMount("apt", "/var/cache/apt"))
    assert run.caches[0].key() == {"id": "/root/.cache/pip", "target": "/root/.cache/pip"}


def test_a_cache_mount_takes_buildkits_uid_gid_and_mode(tmp_path: Path) -> None:
    plan = _plan(tmp_path, "FROM debian:bookworm\nUSER app\n"
                 "RUN --mount=type=cache,target=/home/app/.cache,uid=1234,mode=0700 ls\n")
    run = plan.steps[0]
    assert isinstance(run, PlanRun) and run.user == "app"
    assert run.caches[0].access == (1234, 0, 0o700)
    assert run.caches[0].key()["access"] == [1234, 0, 0o700]


MULTI = """ARG PY=3.11
FROM python:${PY}-slim AS build
ENV OUT=/out
WORKDIR /src
COPY app/ .
RUN python3 -m zipapp . -o $OUT/app.pyz

FROM build AS test
RUN python3 $OUT/app.pyz --self-test

FROM python:${PY}-slim
COPY --from=build /out/app.pyz /app/
COPY --from=127.0.0.1:5000/tools:1 /usr/bin/tool /usr/bin/
CMD ["python3", "/app/app.pyz"]
"""


def test_stages_plan_the_target_and_only_the_stages_before_it(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    plan = _plan(tmp_path, MULTI, default_registry="127.0.0.1:5000")
    assert plan.base == "oci:127.0.0.1:5000/library/python:3.11-slim"
    assert [s.name for s in plan.stages] == ["build", "test"]
    assert plan.steps == (
        PlanCopyFrom(("/out/app.pyz",), "/app/", "stage:0"),
        PlanCopyFrom(("/usr/bin/tool",), "/usr/bin/", "oci:127.0.0.1:5000/tools:1"))
    assert plan.notes == ("python:3.11-slim: pulled from 127.0.0.1:5000/library/python:"
                          "3.11-slim (default_registry 127.0.0.1:5000)",) * 2
    test = _plan(tmp_path, MULTI, default_registry="127.0.0.1:5000", target="test")
    assert test.base == "stage:0" and [s.name for s in test.stages] == ["build"]
    run = test.steps[0]  # the stage carries on with its base stage's env and workdir
    assert isinstance(run, PlanRun) and (run.step.command, run.workdir) == (
        "python3 $OUT/app.pyz --self-test", "/src")


def test_an_unknown_target_lists_the_stages(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    with pytest.raises(ImageError, match=r"no stage named 'nope'(.|\n)*build, test"):
        _plan(tmp_path, MULTI, default_registry="r:1", target="nope")


@pytest.mark.parametrize(("ref", "expected"), [
    ("127.0.0.1:5000/app:1", True), ("localhost/app", True), ("ghcr.io/a/b", True),
    ("library/python:3.11", False), ("python:3.11-slim", False), ("app", False),
])
def test_a_registry_host_is_told_apart_as_docker_does(ref: str, expected: bool) -> None:
    assert has_registry_host(ref) is expected


@pytest.mark.parametrize(("ref", "default", "local", "expected"), [
    ("python:3.11-slim", "r:5000", None, "oci:r:5000/library/python:3.11-slim"),
    ("team/app:2", "r:5000/", None, "oci:r:5000/team/app:2"),
    ("web", "r:5000", "layout:/p:web:latest", "layout:/p:web:latest"),
    ("h.io/x@sha256:" + "a" * 64, None, None, "oci:h.io/x@sha256:" + "a" * 64),
])
def test_image_references_become_bases(ref: str, default: str | None, local: str | None,
                                       expected: str) -> None:
    assert image_base(ref, default, lambda _: local) == expected


def test_a_default_registry_set_for_all_images_reaches_each_image() -> None:
    from corral.spec.model import Spec

    spec = Spec.model_validate({"project": {"name": "p"}, "images": {
        "default_registry": "127.0.0.1:5000", "web": {"dockerfile": "Dockerfile"},
        "own": {"dockerfile": "D2", "default_registry": "other:1"}}})
    assert set(spec.images) == {"web", "own"}
    assert spec.images["web"].default_registry == "127.0.0.1:5000"
    assert spec.images["own"].default_registry == "other:1"


def _layer_with(folder: Path, files: dict[str, str]) -> Path:
    import io
    import tarfile

    path = folder / "layer.tar"
    with tarfile.open(path, "w") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize(("user", "expected"), [
    ("app", "1000:1001"), ("app:staff", "1000:50"), ("nobody:7", "65534:7"),
    ("0", "0"), ("5:6", "5:6"),
])
def test_user_names_resolve_from_the_images_passwd_and_group(tmp_path: Path, user: str,
                                                              expected: str) -> None:
    from corral.images.build.passwd import resolve_user

    layer = _layer_with(tmp_path, {
        "etc/passwd": "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/app:/bin/sh\n"
                      "nobody:x:65534:65534::/:/usr/sbin/nologin\n",
        "etc/group": "root:x:0:\nstaff:x:50:\n"})
    assert resolve_user(user, [layer]) == expected


def test_an_unknown_user_fails_the_build_with_a_hint(tmp_path: Path) -> None:
    from corral.images.build.passwd import resolve_user

    layer = _layer_with(tmp_path, {"etc/passwd": "root:x:0:0::/root:/bin/sh\n"})
    with pytest.raises(ImageError, match="no user 'web'") as refused:
        resolve_user("web", [layer])
    assert "useradd" in str(refused.value)


def test_from_platform_is_accepted_for_this_machine_only(tmp_path: Path) -> None:
    from corral.images.build.debian import host_architecture

    plan = _plan(tmp_path, f"FROM --platform=linux/{host_architecture()} scratch AS a\n"
                 "FROM --platform=$BUILDPLATFORM a\n")
    assert plan.base == "stage:0"
    with pytest.raises(ImageError, match=r"Dockerfile:1: .*corral builds for this machine"):
        _plan(tmp_path, "FROM --platform=linux/s390x-nope scratch\n")


def test_copy_flags_expand_build_args_as_docker_does(tmp_path: Path) -> None:
    plan = _plan(tmp_path, "ARG FROM_STAGE=a\nFROM scratch AS a\nFROM scratch\nARG FROM_STAGE\n"
                 "ARG MODE=640\nCOPY --from=$FROM_STAGE --chmod=${MODE} /x /y\n")
    assert plan.steps == (PlanCopyFrom(("/x",), "/y", "stage:0", mode=0o640),)
