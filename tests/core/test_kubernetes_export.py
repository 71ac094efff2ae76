"""Kubernetes and Argo Rollouts manifests as tables: a release in, objects out, and every
object valid against the official schemas (kubernetes-validate; the Argo CRDs' own)."""

from __future__ import annotations

from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from corral.core.kubernetes import (
    ExportedRelease,
    KubernetesExport,
    plain_objects,
    release_to_export,
    run_as,
)
from corral.core.rollouts import rollout_objects
from corral.ports.records import Release
from corral.spec.model import ServiceSpec
from kubernetes_schemas import validate_object

DIGEST = "sha256:" + "0123456789abcdef" * 4


def exported(release: str | None = "v3", user: str | None = None, commit: str | None = "c" * 40,
             image: str = "registry.local:5000/team/web@" + DIGEST, **spec: Any) -> ExportedRelease:
    return ExportedRelease(project="shop", service="web", spec=ServiceSpec(image="web", **spec),
                           image=image, digest=DIGEST, release=release, commit=commit,
                           image_user=user)


def by_kind(export: KubernetesExport, kind: str) -> list[dict[str, Any]]:
    return [o for o in export.objects if o["kind"] == kind]


def one(export: KubernetesExport, kind: str) -> dict[str, Any]:
    (found,) = by_kind(export, kind)
    return found


def container_of(export: KubernetesExport, kind: str = "Deployment") -> dict[str, Any]:
    (container,) = one(export, kind)["spec"]["template"]["spec"]["containers"]
    return container


SPECS = {
    "a plain rolling service": {},
    "three replicas behind a router with a liveness check": {
        "replicas": 3, "router": {"listen": "127.0.0.1:8080"},
        "liveness": {"kind": "tcp", "interval": "5s"}},
    "an exec health check, a command and volumes": {
        "health": {"kind": "exec", "command": ["/bin/true"], "interval": "300ms"},
        "command": ["/app/serve", "--fast"], "volumes": {"data": "/var/lib/app"},
        "env": {"GREETING": "hello"}},
    "secrets as env and as a file": {
        "env": {"GREETING": "hello", "DB_PASSWORD": {"secret": "db_password", "version": 2}},
        "files": {"/run/secrets/db": {"secret": "db_password"}}},
    "blue-green with preview and a manual promotion": {
        "strategy": "blue-green", "blue_green": {"preview": True, "auto_promote": False}},
    "blue-green without preview": {"strategy": "blue-green", "blue_green": {"preview": False}},
    "canary with its defaults": {"strategy": "canary"},
    "canary that lets low traffic pass, two failures to roll back": {
        "strategy": "canary", "canary": {"steps": [5, 25, 100], "insufficient_traffic": "pass",
                                         "max_consecutive_failures": 2}},
    "every resource limit": {
        "resources": {"memory": "256M", "memory_max": "384M", "cpus": 0.5, "pids": 256}},
    "a canary with a memory reservation and two cores": {
        "strategy": "canary", "resources": {"memory": "1G", "cpus": 2}},
}


@pytest.mark.parametrize("rollouts", [False, True], ids=["deployments", "rollouts"])
@pytest.mark.parametrize("name", list(SPECS))
def test_every_exported_object_is_valid_against_the_official_schemas(
        name: str, rollouts: bool) -> None:
    release = exported(**SPECS[name])
    export = (rollout_objects if rollouts else plain_objects)(release)
    assert export.objects
    for manifest in export.objects:
        validate_object(manifest)


def test_a_misspelt_field_fails_both_kinds_of_validation() -> None:
    """The schema checks can fail: an unknown field is an error, as in strict kubectl."""
    export = rollout_objects(exported(strategy="canary"))
    deployment = plain_objects(exported()).objects[-1]
    deployment["spec"]["replicaz"] = 3
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_object(deployment)
    rollout = one(export, "Rollout")
    rollout["spec"]["strategy"]["canary"]["steps"][0]["setWieght"] = 10
    with pytest.raises(jsonschema.ValidationError):
        validate_object(rollout)
    template = one(export, "AnalysisTemplate")
    template["spec"]["metrics"][0]["provider"]["prometheus"]["adress"] = "x"
    with pytest.raises(jsonschema.ValidationError):
        validate_object(template)


def test_the_image_is_pinned_by_digest_and_labels_name_release_digest_and_commit() -> None:
    export = plain_objects(exported())
    assert container_of(export)["image"] == "registry.local:5000/team/web@" + DIGEST
    for manifest in export.objects:
        labels = manifest["metadata"]["labels"]
        assert labels["corral.dev/release"] == "v3"
        assert labels["corral.dev/digest"] == "0123456789ab"
        assert labels["corral.dev/commit"] == "c" * 40
        assert manifest["metadata"]["annotations"]["corral.dev/image-digest"] == DIGEST
    template = one(export, "Deployment")["spec"]["template"]["metadata"]
    assert template["labels"]["corral.dev/release"] == "v3"
    assert template["annotations"]["corral.dev/image-digest"] == DIGEST


def test_the_selector_holds_nothing_that_changes_between_releases() -> None:
    selectors = [one(plain_objects(exported(release=f"v{n}", commit=str(n) * 40)), "Deployment")
                 ["spec"]["selector"] for n in (1, 2)]
    assert selectors[0] == selectors[1] == {"matchLabels": {
        "app.kubernetes.io/name": "web", "app.kubernetes.io/part-of": "shop"}}


def test_an_unreleased_image_without_a_commit_says_so_in_labels_and_notes() -> None:
    export = plain_objects(exported(release=None, commit=None, image="web@" + DIGEST))
    labels = one(export, "Deployment")["metadata"]["labels"]
    assert labels["corral.dev/release"] == "unreleased"
    assert "corral.dev/commit" not in labels and "app.kubernetes.io/version" not in labels
    assert any("no release" in note for note in export.notes)
    assert any("--registry" in note for note in export.notes)


def test_every_pod_runs_as_restricted_as_the_sandbox() -> None:
    for export in (plain_objects(exported(volumes={"data": "/data"})),
                   rollout_objects(exported(strategy="canary"))):
        kind = "Deployment" if by_kind(export, "Deployment") else "Rollout"
        pod = one(export, kind)["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        security = container_of(export, kind)["securityContext"]
        assert security == {"allowPrivilegeEscalation": False, "privileged": False,
                            "readOnlyRootFilesystem": True, "runAsNonRoot": True,
                            "capabilities": {"drop": ["ALL"]},
                            "seccompProfile": {"type": "RuntimeDefault"}}
        mounts = {m["mountPath"] for m in container_of(export, kind)["volumeMounts"]}
        assert "/tmp" in mounts  # a writable /tmp, as the sandbox gives


@pytest.mark.parametrize(("user", "expected"), [
    (None, (65534, 65534)), ("0", (65534, 65534)), ("root", (65534, 65534)),
    ("0:0", (65534, 65534)), ("1000", (1000, 1000)), ("1000:2000", (1000, 2000)),
    ("1000:0", (1000, 1000)), ("app:app", (65534, 65534)),
])
def test_pods_run_as_the_images_numeric_user_else_nobody(
        user: str | None, expected: tuple[int, int]) -> None:
    assert run_as(user) == expected
    pod = one(plain_objects(exported(user=user)), "Deployment")["spec"]["template"]["spec"]
    assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]) \
        == expected


PROBES = [
    ("http readiness", {"health": {"path": "/healthz", "interval": "2s", "timeout": "500ms",
                                   "healthy_after": 2, "unhealthy_after": 4,
                                   "start_grace": "1500ms"}},
     "readinessProbe", {"httpGet": {"path": "/healthz", "port": "http"},
                        "initialDelaySeconds": 2, "periodSeconds": 2, "timeoutSeconds": 1,
                        "successThreshold": 2, "failureThreshold": 4}),
    ("tcp readiness", {"health": {"kind": "tcp"}}, "readinessProbe",
     {"tcpSocket": {"port": "http"}, "initialDelaySeconds": 0, "periodSeconds": 1,
      "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3}),
    ("exec liveness keeps successThreshold 1",
     {"liveness": {"kind": "exec", "command": ["/bin/check"], "healthy_after": 3}},
     "livenessProbe", {"exec": {"command": ["/bin/check"]}, "initialDelaySeconds": 0,
                       "periodSeconds": 1, "timeoutSeconds": 1, "successThreshold": 1,
                       "failureThreshold": 3}),
]


@pytest.mark.parametrize(("what", "spec", "field", "expected"), PROBES,
                         ids=[case[0] for case in PROBES])
def test_probes_come_from_health_and_liveness(
        what: str, spec: dict[str, Any], field: str, expected: dict[str, Any]) -> None:
    assert container_of(plain_objects(exported(**spec)))[field] == expected


def test_no_liveness_in_the_spec_means_no_liveness_probe() -> None:
    assert "livenessProbe" not in container_of(plain_objects(exported()))


def test_replicas_strategy_command_grace_and_deadline_come_from_the_spec() -> None:
    export = plain_objects(exported(replicas=4, rolling={"max_surge": 2, "max_unavailable": 1},
                                    command=["/srv/app"], stop_grace="12s",
                                    health={"start_timeout": "45s"}))
    spec = one(export, "Deployment")["spec"]
    assert spec["replicas"] == 4
    assert spec["strategy"] == {"type": "RollingUpdate",
                                "rollingUpdate": {"maxSurge": 2, "maxUnavailable": 1}}
    assert spec["progressDeadlineSeconds"] == 45
    assert spec["template"]["spec"]["terminationGracePeriodSeconds"] == 12
    assert container_of(export)["command"] == ["/srv/app"]
    assert "command" not in container_of(plain_objects(exported()))  # the image's own


def test_the_config_map_is_immutable_and_named_after_its_content() -> None:
    first = plain_objects(exported(env={"GREETING": "hello"}, port=9000))
    again = plain_objects(exported(env={"GREETING": "hello"}, port=9000, replicas=5))
    changed = plain_objects(exported(env={"GREETING": "bye"}, port=9000))
    config = one(first, "ConfigMap")
    assert config["immutable"] is True
    assert config["data"] == {"GREETING": "hello", "PORT": "9000"}
    assert config["metadata"]["name"] == one(again, "ConfigMap")["metadata"]["name"]
    assert config["metadata"]["name"] != one(changed, "ConfigMap")["metadata"]["name"]
    assert container_of(first)["envFrom"] == [{"configMapRef":
                                               {"name": config["metadata"]["name"]}}]
    assert container_of(first)["ports"] == [{"name": "http", "containerPort": 9000,
                                             "protocol": "TCP"}]


def test_the_service_listens_on_the_routers_port_and_targets_the_app() -> None:
    routed = one(plain_objects(exported(router={"listen": "127.0.0.1:8080"})), "Service")
    assert routed["spec"]["ports"] == [{"name": "http", "port": 8080, "targetPort": "http",
                                        "protocol": "TCP"}]
    bare = one(plain_objects(exported(port=7000)), "Service")
    assert bare["spec"]["ports"][0]["port"] == 7000


def test_volumes_become_shared_claims_mounted_where_the_spec_says() -> None:
    export = plain_objects(exported(volumes={"data": "/var/lib/app"}))
    claim = one(export, "PersistentVolumeClaim")
    assert claim["metadata"]["name"] == "web-data"
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert {"name": "volume-data", "mountPath": "/var/lib/app"} in \
        container_of(export)["volumeMounts"]
    assert any("PersistentVolumeClaims" in note for note in export.notes)


def test_without_rollouts_blue_green_and_canary_are_deployments_with_a_note() -> None:
    for strategy in ("blue-green", "canary"):
        export = plain_objects(exported(strategy=strategy))
        assert [o["kind"] for o in export.objects] == ["ConfigMap", "Service", "Deployment"]
        assert any("--rollouts" in note for note in export.notes)


@pytest.mark.parametrize(("resources", "expected"), [
    (None, None),
    ({"memory": "256M", "memory_max": "384M", "cpus": 0.5},
     {"requests": {"memory": "256Mi", "cpu": "500m"},
      "limits": {"memory": "384Mi", "cpu": "500m"}}),
    ({"memory": "1G"}, {"requests": {"memory": "1Gi"}, "limits": {"memory": "1Gi"}}),
    ({"memory_max": "100M"}, {"limits": {"memory": "100Mi"}}),
    ({"memory": "5000000"}, {"requests": {"memory": "5000000"},
                             "limits": {"memory": "5000000"}}),
    ({"cpus": 2}, {"requests": {"cpu": "2000m"}, "limits": {"cpu": "2000m"}}),
    ({"cpus": 0.0001}, {"requests": {"cpu": "1m"}, "limits": {"cpu": "1m"}}),
    ({"pids": 64}, None),
])
def test_resources_become_requests_and_limits(
        resources: dict[str, Any] | None, expected: dict[str, Any] | None) -> None:
    spec = {"resources": resources} if resources is not None else {}
    for export, kind in ((plain_objects(exported(**spec)), "Deployment"),
                         (rollout_objects(exported(strategy="canary", **spec)), "Rollout")):
        assert container_of(export, kind).get("resources") == expected


def test_a_pids_limit_is_not_exported_and_a_note_says_so() -> None:
    export = plain_objects(exported(resources={"memory": "64M", "pids": 256}))
    assert any("resources.pids (256)" in note and "podPidsLimit" in note
               for note in export.notes)
    assert not any("pids" in note for note in plain_objects(exported()).notes)


def test_rollouts_leave_a_rolling_service_a_deployment() -> None:
    assert rollout_objects(exported()) == plain_objects(exported())


def test_a_blue_green_rollout_has_active_and_preview_services_and_a_warm_window() -> None:
    export = rollout_objects(exported(strategy="blue-green", blue_green={
        "preview": True, "auto_promote": False, "rollback_window": "10m"}))
    assert [o["kind"] for o in export.objects] == ["ConfigMap", "Service", "Service", "Rollout"]
    assert [s["metadata"]["name"] for s in by_kind(export, "Service")] == ["web", "web-preview"]
    assert one(export, "Rollout")["spec"]["strategy"] == {"blueGreen": {
        "activeService": "web", "previewService": "web-preview",
        "autoPromotionEnabled": False, "scaleDownDelaySeconds": 600}}
    no_preview = rollout_objects(exported(strategy="blue-green",
                                          blue_green={"preview": False}))
    assert "previewService" not in one(no_preview, "Rollout")["spec"]["strategy"]["blueGreen"]
    assert len(by_kind(no_preview, "Service")) == 1


def test_a_canary_rollout_analyses_each_weight_with_the_specs_thresholds() -> None:
    export = rollout_objects(exported(strategy="canary", canary={
        "steps": [20, 100], "interval": "30s", "max_error_rate": 0.05,
        "max_p99_latency": "250ms", "min_requests": 40}))
    assert one(export, "Rollout")["spec"]["strategy"]["canary"]["maxUnavailable"] == 0
    steps = one(export, "Rollout")["spec"]["strategy"]["canary"]["steps"]
    analysis = {"templates": [{"templateName": "web-canary"}],
                "args": [{"name": "service", "value": "web"},
                         {"name": "release", "value": "v3"}]}
    assert steps == [{"setWeight": 20}, {"pause": {"duration": 30}}, {"analysis": analysis},
                     {"setWeight": 100}, {"pause": {"duration": 30}}, {"analysis": analysis}]
    template = one(export, "AnalysisTemplate")
    assert template["metadata"]["name"] == "web-canary"
    metrics = {m["name"]: m for m in template["spec"]["metrics"]}
    assert metrics["requests"]["successCondition"] == "result[0] >= 40"
    assert metrics["error-rate"]["successCondition"] == "result[0] <= 0.05"
    assert metrics["p99-latency"]["successCondition"] == "result[0] <= 0.25"
    for metric in metrics.values():
        assert metric["interval"] == "30s" and metric["count"] == 1
        assert metric["failureLimit"] == 0
        assert "[30s]" in metric["provider"]["prometheus"]["query"]
        assert 'corral_dev_release="{{args.release}}"' in \
            metric["provider"]["prometheus"]["query"]


def test_consecutive_failures_become_that_many_measurements_all_failing() -> None:
    export = rollout_objects(exported(strategy="canary", canary={
        "max_consecutive_failures": 3, "insufficient_traffic": "pass"}))
    metrics = one(export, "AnalysisTemplate")["spec"]["metrics"]
    assert [m["name"] for m in metrics] == ["error-rate", "p99-latency"]
    assert {(m["count"], m["failureLimit"]) for m in metrics} == {(3, 2)}


def release(version: int) -> Release:
    return Release("web", version, f"sha256:{version}", "sha256:c", {}, float(version))


@pytest.mark.parametrize(("what", "versions", "live", "bad", "expected"), [
    ("the live release, even with newer ones", [1, 2, 3], 2, {}, 2),
    ("the live release, even if a later one was rolled back", [1, 2, 3], 2, {3: "rb"}, 2),
    ("without a live one, the newest", [1, 2], None, {}, 2),
    ("without a live one, the newest not marked bad", [1, 2, 3], None, {3: "rb"}, 2),
    ("all marked bad: nothing", [1, 2], None, {1: "rb", 2: "rb"}, None),
    ("no release at all: nothing", [], None, {}, None),
])
def test_the_release_exported_is_the_live_one_else_the_newest_good_one(
        what: str, versions: list[int], live: int | None, bad: dict[int, str],
        expected: int | None) -> None:
    chosen = release_to_export([release(v) for v in versions], live, bad)
    assert (chosen.version if chosen else None) == expected


def test_secrets_are_referenced_by_name_and_never_carried_as_config() -> None:
    release = exported(env={"GREETING": "hello", "DB_PASSWORD": {"secret": "db_password"}},
                       files={"/run/secrets/db": {"secret": "db_password"}})
    export = plain_objects(release)
    assert one(export, "ConfigMap")["data"] == {"GREETING": "hello", "PORT": "8000"}
    container = container_of(export)
    assert {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {
        "name": "db-password", "key": "value"}}} in container["env"]
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == "/run/secrets/db")
    assert mount["readOnly"] is True and mount["subPath"] == "db"
    volume = next(v for v in one(export, "Deployment")["spec"]["template"]["spec"]["volumes"]
                  if v["name"] == mount["name"])
    assert volume["secret"]["secretName"] == "db-password"
    assert volume["secret"]["defaultMode"] == 0o400
    assert any("db-password" in note for note in export.notes)
