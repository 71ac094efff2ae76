"""WWW-Authenticate challenges and where registry credentials come from."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from corral.errors import ImageError
from corral.images.registry.auth import Challenge, Credentials, find_credentials, parse_challenge


@pytest.mark.parametrize(("header", "expected"), [
    ('Bearer realm="https://auth.io/token",service="registry.io",'
     'scope="repository:team/web:pull,push"',
     Challenge("bearer", {"realm": "https://auth.io/token", "service": "registry.io",
                          "scope": "repository:team/web:pull,push"})),
    ('Basic realm="Registry Realm"', Challenge("basic", {"realm": "Registry Realm"})),
    ("bearer realm=https://a/t, service=s", Challenge("bearer", {"realm": "https://a/t",
                                                                 "service": "s"})),
    ('Negotiate abc', None),
    ("", None),
])
def test_challenges_parse_into_scheme_and_parameters(header: str,
                                                     expected: Challenge | None) -> None:
    assert parse_challenge(header) == expected


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("CORRAL_REGISTRY_USER", "CORRAL_REGISTRY_PASSWORD", "CORRAL_REGISTRY_AUTH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def test_no_credentials_anywhere_means_anonymous(home: Path) -> None:
    assert find_credentials("h.io") is None


def test_the_environment_wins_over_every_file(home: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    _corral_file(home, "h.io", "file-user")
    monkeypatch.setenv("CORRAL_REGISTRY_USER", "env-user")
    monkeypatch.setenv("CORRAL_REGISTRY_PASSWORD", "env-pw")
    assert find_credentials("h.io") == Credentials("env-user", "env-pw")


def test_the_corral_credentials_file_is_read_per_registry(home: Path) -> None:
    _corral_file(home, "h.io:5000", "alice")
    assert find_credentials("h.io:5000") == Credentials("alice", "pw")
    assert find_credentials("other.io") is None


def test_docker_config_auths_are_a_fallback(home: Path) -> None:
    (home / ".docker").mkdir()
    token = base64.b64encode(b"bob:pa:ss").decode()
    (home / ".docker/config.json").write_text(json.dumps({"auths": {"h.io": {"auth": token}}}))
    assert find_credentials("h.io") == Credentials("bob", "pa:ss")


def test_an_unreadable_credentials_file_is_a_clear_error(home: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    (home / "bad.json").write_text("{")
    monkeypatch.setenv("CORRAL_REGISTRY_AUTH", str(home / "bad.json"))
    with pytest.raises(ImageError, match="unreadable"):
        find_credentials("h.io")


def _corral_file(home: Path, registry: str, user: str) -> None:
    folder = home / ".config" / "corral"
    folder.mkdir(parents=True)
    (folder / "registries.json").write_text(json.dumps(
        {"registries": {registry: {"username": user, "password": "pw"}}}))
