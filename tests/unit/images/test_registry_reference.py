"""Parsing HOST[:PORT]/REPO[:TAG|@sha256:…] and choosing http or https."""

from __future__ import annotations

import pytest

from corral.errors import ImageError
from corral.images.registry.reference import Reference, parse_reference, scheme_for

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(("text", "expected"), [
    ("127.0.0.1:5000/web:1", Reference("127.0.0.1:5000", "web", "1")),
    ("127.0.0.1:5000/team/web", Reference("127.0.0.1:5000", "team/web", "latest")),
    (f"localhost/team/web@{DIGEST}", Reference("localhost", "team/web", None, DIGEST)),
    (f"reg.example.com/a/b/c:v1.2@{DIGEST}", Reference("reg.example.com", "a/b/c", "v1.2",
                                                        DIGEST)),
    ("[::1]:5000/web:x", Reference("[::1]:5000", "web", "x")),
    ("reg.example.com:443/my-app_x:1", Reference("reg.example.com:443", "my-app_x", "1")),
])
def test_references_parse_into_registry_repository_tag_and_digest(
        text: str, expected: Reference) -> None:
    assert parse_reference(text) == expected


@pytest.mark.parametrize(("text", "problem"), [
    ("web:1", "names no registry host"),
    ("team/web:1", "names no registry host"),
    ("127.0.0.1:5000/", "names no registry host"),
    ("127.0.0.1:5000/Web:1", "repository"),
    ("127.0.0.1:5000/web:bad tag", "tag"),
    ("127.0.0.1:5000/web@sha256:1234", "not a sha256 digest"),
])
def test_a_malformed_reference_is_refused_with_the_reason(text: str, problem: str) -> None:
    with pytest.raises(ImageError, match=problem):
        parse_reference(text)


def test_the_reference_sent_to_the_registry_prefers_the_digest() -> None:
    assert parse_reference(f"h.io/web:1@{DIGEST}").reference == DIGEST
    assert parse_reference("h.io/web:1").reference == "1"


def test_the_local_name_is_the_last_repository_part() -> None:
    assert parse_reference("h.io/team/web:1").name == "web"
    assert str(parse_reference("h.io/team/web:1")) == "h.io/team/web:1"


@pytest.mark.parametrize(("text", "insecure", "scheme"), [
    ("127.0.0.1:5000/web", False, "http"),
    ("127.9.9.9:5000/web", False, "http"),
    ("localhost:5000/web", False, "http"),
    ("[::1]:5000/web", False, "http"),
    ("10.0.0.5:5000/web", False, "https"),
    ("reg.example.com/web", False, "https"),
    ("reg.example.com/web", True, "http"),
    ("localhost.example.com/web", False, "https"),
])
def test_plain_http_only_for_loopback_or_an_explicit_flag(
        text: str, insecure: bool, scheme: str) -> None:
    assert scheme_for(parse_reference(text), insecure) == scheme
