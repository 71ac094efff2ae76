"""`corral export kubernetes` as a user runs it, on a real image (a FROM scratch busybox)
built and deployed by corral: it refuses before a build, exports the built image before a
deploy, then the live release, pinned by the digest corral built and labelled with the git
commit it was built from. Every object written validates against the official schemas."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cli_project import BUSYBOX_HTTPD_IMAGE, CliProject, write_busybox_root
from kubernetes_schemas import load_manifests, validate_object
from loopback import poll

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

SPEC = """\
[project]
name = "shop"

{image}
[services.web]
image = "web"
replicas = 2
router = {{ listen = "127.0.0.1:{port}" }}
health = {{ path = "/", interval = "300ms", timeout = "1s" }}

[services.api]
image = "web"
strategy = "canary"
canary = {{ steps = [25, 100], interval = "20s", min_requests = 30 }}

[services.admin]
image = "web"
strategy = "blue-green"
blue_green = {{ auto_promote = false }}
volumes = {{ uploads = "/srv/uploads" }}
"""

REGISTRY = "127.0.0.1:5000/team"


def git(folder: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
                          cwd=folder, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CliProject]:
    project = CliProject(tmp_path_factory.mktemp("export"))
    write_busybox_root(project.folder, "v1\n")
    (project.folder / "corral.toml").write_text(
        SPEC.format(port=project.port, image=BUSYBOX_HTTPD_IMAGE))
    (project.folder / ".gitignore").write_text(".corral/\nkubernetes/\nout/\n")
    git(project.folder, "init", "-q")
    git(project.folder, "add", ".")
    git(project.folder, "commit", "-qm", "v1")
    yield project
    project.corral("down", check=False)


def exported(project: CliProject, *args: str) -> dict[str, dict[str, Any]]:
    rows = project.json("export", "kubernetes", *args)["exported"]
    return {row["service"]: row for row in rows}


def test_before_a_build_the_export_says_to_build_first(project: CliProject) -> None:
    done = project.corral("export", "kubernetes", check=False)
    assert done.returncode == 1
    assert "is not built" in done.stderr and "corral build web" in done.stderr
    error = json.loads(project.corral("export", "kubernetes", "--json", check=False).stdout)
    assert "build it first" in error["error"]["hint"]
    assert not (project.folder / "kubernetes").exists(), "nothing is written on an error"


def test_a_built_image_is_exported_unreleased_with_its_digest_and_commit(
        project: CliProject) -> None:
    digest = project.json("build")["images"]["web"]
    rows = exported(project, "--rollouts", "--registry", REGISTRY, "-o", "out")
    assert set(rows) == {"web", "api", "admin"}
    commit = git(project.folder, "rev-parse", "HEAD")
    for name, row in rows.items():
        assert row["release"] is None and row["digest"] == digest and row["commit"] == commit
        assert row["image"] == f"{REGISTRY}/web@{digest}"
        assert Path(row["file"]) == project.folder / "out" / f"{name}.yaml"
    kinds = {name: [o.partition("/")[0] for o in row["objects"]] for name, row in rows.items()}
    assert kinds == {"web": ["ConfigMap", "Service", "Deployment"],
                     "api": ["ConfigMap", "Service", "AnalysisTemplate", "Rollout"],
                     "admin": ["ConfigMap", "PersistentVolumeClaim", "Service", "Service",
                               "Rollout"]}
    for name in rows:
        manifests = load_manifests(project.folder / "out" / f"{name}.yaml")
        assert [m["kind"] for m in manifests] == kinds[name]
        for manifest in manifests:
            validate_object(manifest)
            assert manifest["metadata"]["labels"]["corral.dev/release"] == "unreleased"
            assert manifest["metadata"]["labels"]["corral.dev/commit"] == commit


def test_the_live_release_is_exported_pinned_by_the_digest_it_runs(
        project: CliProject) -> None:
    project.corral("up", "-d")
    project.corral("deploy", "web")
    poll(lambda: project.request()[0] == 200, 60, "web v1 to answer through the router")
    (release,) = project.json("releases", "web")["releases"]
    done = project.corral("export", "kubernetes", "web")
    assert f"web v1 (image {release['image'][7:19]}" in done.stdout
    assert "note: the image has no registry" in done.stdout
    path = project.folder / "kubernetes" / "web.yaml"
    assert sorted(p.name for p in path.parent.iterdir()) == ["web.yaml"]
    manifests = load_manifests(path)
    for manifest in manifests:
        validate_object(manifest)
    deployment = manifests[-1]
    assert deployment["kind"] == "Deployment" and deployment["spec"]["replicas"] == 2
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels["corral.dev/release"] == "v1"
    assert labels["corral.dev/digest"] == release["image"][7:19]
    assert labels["corral.dev/commit"] == release["git_commit"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "web@" + release["image"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/", "port": "http"}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    entries = project.json("ledger", "--action", "release.exported", "--service", "web")
    assert {"to": "kubernetes", "release": "v1", "image": release["image"],
            "file": str(path)} in [entry["detail"] for entry in entries["entries"]]


def test_an_unknown_service_is_named_with_the_closest_one(project: CliProject) -> None:
    done = project.corral("export", "kubernetes", "wbe", check=False)
    assert done.returncode == 1
    assert "no service 'wbe'" in done.stderr and "web" in done.stderr


def test_a_registry_with_a_scheme_is_a_usage_error(project: CliProject) -> None:
    done = project.corral("export", "kubernetes", "--registry", "https://r.local/team",
                          check=False)
    assert done.returncode == 2 and "HOST[:PORT]/PREFIX" in done.stderr


def test_a_service_requiring_a_signature_is_exported_only_once_its_image_is_signed(
        project: CliProject) -> None:
    key = project.folder / "keys" / "ci.key"
    inline = project.json("keygen", "--out", str(key))["inline"]
    project.edit(r'(\[services\.admin\]\n)',
                 f'\\1require_signature = true\ntrusted_keys = ["{inline}"]\n')
    done = project.corral("export", "kubernetes", "admin", check=False)
    assert done.returncode == 1 and "refusing to export" in done.stderr
    assert "corral sign" in done.stderr
    project.corral("sign", "web", "--key", str(key))
    assert exported(project, "admin")["admin"]["release"] is None


def test_a_folder_that_cannot_be_written_is_an_error_not_a_traceback(
        project: CliProject) -> None:
    done = project.corral("export", "kubernetes", "web", "-o", "corral.toml", check=False)
    assert done.returncode == 1 and "cannot write manifests to" in done.stderr
    assert "-o DIR" in done.stderr
