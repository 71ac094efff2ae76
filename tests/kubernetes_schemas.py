"""Validation of exported manifests against the official schemas, offline.

Core Kubernetes kinds go through `kubernetes-validate` (it ships the API's JSON schemas in
the package, strict variant: an unknown field is an error). Argo Rollouts kinds go through
the `openAPIV3Schema` of the CRDs vendored in tests/data/argo-rollouts (see NOTICE.md
there), made strict the same way: an API server prunes an unknown field silently, so a
misspelt one would pass a CRD schema as written and vanish in the cluster.
"""

from __future__ import annotations

import copy
import functools
import gzip
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

KUBERNETES_VERSION = "1.30"  # the oldest minor the exported fields must all exist in
ARGO_CRDS = Path(__file__).parent / "data" / "argo-rollouts"
_CRD_FILES = {"Rollout": "rollout-crd.yaml.gz", "AnalysisTemplate": "analysis-template-crd.yaml.gz"}


def validate_object(manifest: dict[str, Any]) -> None:
    """Raise (jsonschema / kubernetes_validate ValidationError) if `manifest` is not valid."""
    if manifest["apiVersion"].startswith("argoproj.io/"):
        crd_validator(manifest["kind"]).validate(manifest)
    else:
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


@functools.cache
def crd_validator(kind: str) -> jsonschema.Draft7Validator:
    with gzip.open(ARGO_CRDS / _CRD_FILES[kind], "rt") as text:
        crd = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    schema = strict_schema(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
    return jsonschema.Draft7Validator(schema)


def strict_schema(schema: Any) -> Any:
    """Close every object that lists its properties (unless it keeps unknown fields or
    already says what else it takes): the API server's strict field validation."""
    if isinstance(schema, dict):
        if ("properties" in schema and "additionalProperties" not in schema
                and not schema.get("x-kubernetes-preserve-unknown-fields")):
            schema["additionalProperties"] = False
        for value in schema.values():
            strict_schema(value)
    elif isinstance(schema, list):
        for value in schema:
            strict_schema(value)
    return schema


def load_manifests(path: Path) -> list[dict[str, Any]]:
    with path.open() as text:
        return [doc for doc in yaml.safe_load_all(text) if doc is not None]
