"""Argo Rollouts objects for a service whose strategy Kubernetes' Deployment cannot do:
a blue-green `Rollout` (active and preview Services, promotion, the old fleet kept warm)
and a canary `Rollout` whose every weight step is followed by an analysis run of an
`AnalysisTemplate` carrying the spec's thresholds.

Pure, like core/kubernetes.py, whose pod template it reuses. The analysis queries
Prometheus, since a cluster has no corral router to count requests: the convention (which
metric names and labels) is written in docs/commands/export.md and ADR 0015.
"""

from __future__ import annotations

from corral.core.kubernetes import (
    ExportedRelease,
    KubernetesExport,
    Manifest,
    child_name,
    common_notes,
    config_map,
    metadata,
    plain_objects,
    service,
    volume_claims,
    whole_seconds,
    workload_spec,
)
from corral.spec.model import CanarySpec

ROLLOUTS_API = "argoproj.io/v1alpha1"
PROMETHEUS_ADDRESS = "http://prometheus.monitoring.svc:9090"  # an arg the user may override
# Pods as Prometheus' kubernetes_sd with `labelmap: __meta_kubernetes_pod_label_(.+)`
# labels them: the service's pods of the canary's release.
_SELECTOR = ('app_kubernetes_io_name="{{args.service}}",'
             'corral_dev_release="{{args.release}}"')


def rollout_objects(release: ExportedRelease) -> KubernetesExport:
    """A Rollout for blue-green and canary services, a Deployment for rolling ones."""
    strategy = release.spec.strategy
    if strategy == "rolling":
        return plain_objects(release)
    notes = common_notes(release)
    objects = [config_map(release), *volume_claims(release), service(release)]
    if strategy == "blue-green":
        if release.spec.blue_green.preview:
            objects.append(service(release, preview_name(release)))
        objects.append(rollout(release, blue_green(release)))
    else:
        objects.append(analysis_template(release))
        objects.append(rollout(release, canary(release)))
        notes.append("canary analysis queries Prometheus at the AnalysisTemplate's "
                     f"prometheus arg ({PROMETHEUS_ADDRESS} unless changed) for "
                     "http_requests_total and http_request_duration_seconds_bucket of the "
                     "release's pods (see docs/commands/export.md)")
    return KubernetesExport(release.service, tuple(objects), tuple(notes))


def preview_name(release: ExportedRelease) -> str:
    return child_name(release.service, "preview")


def analysis_name(release: ExportedRelease) -> str:
    return child_name(release.service, "canary")


def rollout(release: ExportedRelease, strategy: Manifest) -> Manifest:
    return {"apiVersion": ROLLOUTS_API, "kind": "Rollout",
            "metadata": metadata(release, release.service),
            "spec": {**workload_spec(release), "strategy": strategy}}


def blue_green(release: ExportedRelease) -> Manifest:
    """The new fleet starts beside the old one, is promoted at once (or by hand, `argo
    rollouts promote`, when auto_promote is off), and the old fleet stays up for the
    rollback window."""
    settings = release.spec.blue_green
    strategy: Manifest = {"activeService": release.service,
                          "autoPromotionEnabled": settings.auto_promote,
                          "scaleDownDelaySeconds": whole_seconds(settings.rollback_window)}
    if settings.preview:
        strategy["previewService"] = preview_name(release)
    return {"blueGreen": strategy}


def canary_steps(release: ExportedRelease) -> list[Manifest]:
    """Each weight, held for `interval`, then analysed; a failed analysis aborts the
    Rollout, which sends all traffic back to the stable fleet.

    >>> from corral.spec.model import ServiceSpec
    >>> spec = ServiceSpec(image="web", strategy="canary",
    ...                    canary={"steps": [25, 100], "interval": "30s"})
    >>> r = ExportedRelease("shop", "web", spec, "web@sha256:0", "sha256:0", release="v2")
    >>> [next(iter(step)) for step in canary_steps(r)]
    ['setWeight', 'pause', 'analysis', 'setWeight', 'pause', 'analysis']
    >>> canary_steps(r)[1]
    {'pause': {'duration': 30}}
    """
    canary = release.spec.canary
    steps: list[Manifest] = []
    for weight in canary.steps:
        steps += [{"setWeight": weight},
                  {"pause": {"duration": whole_seconds(canary.interval)}},
                  {"analysis": step_analysis(release)}]
    return steps


def step_analysis(release: ExportedRelease) -> Manifest:
    """One analysis run of the canary's release (a new dict per step: shared ones would be
    written as YAML anchors)."""
    return {"templates": [{"templateName": analysis_name(release)}],
            "args": [{"name": "service", "value": release.service},
                     {"name": "release", "value": release.label}]}


def canary(release: ExportedRelease) -> Manifest:
    """maxUnavailable 0: the stable fleet keeps its capacity while the canary grows, as in
    corral, so aborting never waits for pods to start."""
    return {"canary": {"maxUnavailable": 0, "steps": canary_steps(release)}}


def analysis_template(release: ExportedRelease) -> Manifest:
    """The spec's thresholds as Argo metrics over the canary release's pods."""
    canary = release.spec.canary
    return {"apiVersion": ROLLOUTS_API, "kind": "AnalysisTemplate",
            "metadata": metadata(release, analysis_name(release)),
            "spec": {"args": [{"name": "service"}, {"name": "release"},
                              {"name": "prometheus", "value": PROMETHEUS_ADDRESS}],
                     "metrics": analysis_metrics(canary)}}


def analysis_metrics(canary: CanarySpec) -> list[Manifest]:
    """Error rate and p99 latency of the canary's requests over the step's interval, and,
    when too little traffic must fail the step, the request count.

    `max_consecutive_failures` N becomes N measurements of which all N must fail (Argo's
    `failureLimit` N-1): N failures in a row, as corral counts them.

    >>> from corral.spec.model import CanarySpec
    >>> metrics = analysis_metrics(CanarySpec(max_error_rate=0.02, min_requests=50))
    >>> for metric in metrics:
    ...     print(metric["name"], metric["successCondition"])
    requests result[0] >= 50
    error-rate result[0] <= 0.02
    p99-latency result[0] <= 0.5
    >>> lenient = analysis_metrics(CanarySpec(insufficient_traffic="pass"))
    >>> [m["successCondition"] for m in lenient]
    ['isNaN(result[0]) || result[0] <= 0.01', 'isNaN(result[0]) || result[0] <= 0.5']
    """
    window = f"{whole_seconds(canary.interval)}s"
    requests = f"http_requests_total{{{_SELECTOR}}}"
    errors = f'http_requests_total{{{_SELECTOR},code=~"5.."}}'
    buckets = f"http_request_duration_seconds_bucket{{{_SELECTOR}}}"
    # No traffic gives NaN: a failure when too little traffic fails the step, else a pass.
    lenient = "isNaN(result[0]) || " if canary.insufficient_traffic == "pass" else ""
    queries = [
        ("error-rate", f"(sum(rate({errors}[{window}])) or vector(0)) / "
                       f"sum(rate({requests}[{window}]))",
         f"{lenient}result[0] <= {canary.max_error_rate:g}"),
        ("p99-latency", f"histogram_quantile(0.99, sum by (le) (rate({buckets}[{window}])))",
         f"{lenient}result[0] <= {canary.max_p99_latency:g}"),
    ]
    if canary.insufficient_traffic == "fail" and canary.min_requests > 0:
        queries.insert(0, ("requests", f"sum(increase({requests}[{window}]))",
                           f"result[0] >= {canary.min_requests}"))
    tries = canary.max_consecutive_failures
    return [{"name": name, "interval": window, "count": tries, "failureLimit": tries - 1,
             "successCondition": condition,
             "provider": {"prometheus": {"address": "{{args.prometheus}}", "query": query}}}
            for name, query, condition in queries]
