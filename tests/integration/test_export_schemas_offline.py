"""The schema checks of exported manifests need no network: kubernetes-validate ships the
Kubernetes schemas in its package and the Argo CRDs are vendored. Proven by validating in
a new network namespace, where not even loopback is up."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

TESTS = Path(__file__).parent.parent

SCRIPT = """
import socket, sys
sys.path.insert(0, sys.argv[1])
from corral.core.kubernetes import ExportedRelease
from corral.core.rollouts import rollout_objects
from corral.spec.model import ServiceSpec
from kubernetes_schemas import validate_object
try:
    socket.create_connection(("1.1.1.1", 443), timeout=2)
    sys.exit("the namespace has a network: the test proves nothing")
except OSError:
    pass
digest = "sha256:" + "ab" * 32
kinds = []
for strategy in ("rolling", "blue-green", "canary"):
    spec = ServiceSpec(image="web", strategy=strategy, volumes={"data": "/data"})
    release = ExportedRelease("shop", "web", spec, "r.local/web@" + digest, digest, "v1")
    for manifest in rollout_objects(release).objects:
        validate_object(manifest)
        kinds.append(manifest["kind"])
print(" ".join(sorted(set(kinds))))
"""


def test_manifests_validate_inside_a_namespace_without_network() -> None:
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is not installed")
    done = subprocess.run(["unshare", "--net", "--map-root-user", sys.executable, "-c", SCRIPT,
                           str(TESTS)], capture_output=True, text=True, timeout=120)
    if done.returncode != 0 and "unshare failed" in done.stderr:
        pytest.skip(f"cannot create a network namespace here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["AnalysisTemplate", "ConfigMap", "Deployment",
                                   "PersistentVolumeClaim", "Rollout", "Service"]
