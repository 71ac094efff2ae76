"""Which secrets a service references, and where each goes, as a table."""

from __future__ import annotations

from typing import Any

import pytest

from corral.core.release import secret_refs
from corral.spec.model import ServiceSpec

CASES: list[tuple[str, dict[str, Any], dict[tuple[str, str], str]]] = [
    ("a service with plain env only references none",
     {"env": {"A": "1"}}, {}),
    ("an env secret is named by its variable",
     {"env": {"A": "1", "DB": {"secret": "db"}}}, {("env", "DB"): "db"}),
    ("a secret file is named by its path",
     {"files": {"/run/secrets/db": {"secret": "db"}}}, {("files", "/run/secrets/db"): "db"}),
    ("one secret in env and a file is two references",
     {"env": {"DB": {"secret": "db"}}, "files": {"/run/secrets/db": {"secret": "db"}}},
     {("env", "DB"): "db", ("files", "/run/secrets/db"): "db"}),
]


@pytest.mark.parametrize(("fields", "expected"), [case[1:] for case in CASES],
                         ids=[case[0] for case in CASES])
def test_secret_refs(fields: dict[str, Any], expected: dict[tuple[str, str], str]) -> None:
    refs = secret_refs(ServiceSpec(image="web", **fields))
    assert {where: ref.secret for where, ref in refs.items()} == expected
