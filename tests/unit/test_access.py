"""Access without a server: the token book on disk, the state folder's privacy, the
dashboard's pinned assets, and the spec's rule that the API leaves loopback only with TLS."""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from pathlib import Path
from typing import get_args

import pytest

from corral.api.bodies import TokenBody
from corral.api.pages import ASSETS
from corral.cli.access import create
from corral.core.access import ROLES, FailureWindow
from corral.engine.access.private import make_private
from corral.engine.access.tokens import TokenBook, token_digest
from corral.errors import AccessDenied, CorralError, NotFound
from corral.spec.load import load_spec

STATIC = Path(__file__).resolve().parents[2] / "src" / "corral" / "api" / "static"


def test_a_token_is_shown_once_kept_as_its_hash_and_refused_once_revoked_or_expired(
        tmp_path: Path) -> None:
    book = TokenBook(tmp_path)
    now = time.time()
    token = book.create("ci", "deployer", now, ttl=60)
    assert token.startswith("corral_") and len(token) > 40
    stored = json.loads(book.path.read_text())["tokens"]
    assert token not in book.path.read_text()
    assert stored[0]["digest"] == token_digest(token)
    assert book.path.stat().st_mode & 0o777 == 0o600
    assert book.authenticate(token, now).name == "ci"
    with pytest.raises(AccessDenied, match="expired"):
        book.authenticate(token, now + 61)
    book.revoke("ci", now + 1)
    with pytest.raises(AccessDenied, match="revoked"):
        book.authenticate(token, now + 2)
    with pytest.raises(AccessDenied, match="unknown"):
        book.authenticate("corral_guess", now)


def test_a_second_book_on_the_same_file_sees_changes_made_by_another_process(
        tmp_path: Path) -> None:
    controller_view, cli_view = TokenBook(tmp_path), TokenBook(tmp_path)
    assert controller_view.records() == []
    token = cli_view.create("ops", "admin", time.time(), None)
    assert controller_view.authenticate(token, time.time()).role == "admin"


@pytest.mark.parametrize(("name", "role", "message"), [
    ("unix:root", "admin", "must match"), ("Ops", "admin", "must match"),
    ("ops", "root", "not one of")])
def test_a_bad_token_name_or_role_is_refused(tmp_path: Path, name: str, role: str,
                                             message: str) -> None:
    with pytest.raises(CorralError, match=message):
        TokenBook(tmp_path).create(name, role, 0.0, None)


def test_the_api_and_the_cli_offer_exactly_the_roles_of_core_access() -> None:
    role_param = next(p for p in create.params if p.name == "role")
    assert tuple(role_param.type.choices) == ROLES  # type: ignore[attr-defined]
    assert get_args(TokenBody.model_fields["role"].annotation) == ROLES


def test_names_are_unique_among_live_tokens_and_revoking_an_unknown_one_says_so(
        tmp_path: Path) -> None:
    book = TokenBook(tmp_path)
    book.create("ci", "viewer", 0.0, None)
    with pytest.raises(CorralError, match="exists"):
        book.create("ci", "viewer", 1.0, None)
    book.revoke("ci", 2.0)
    book.create("ci", "viewer", 3.0, None)  # a new one after the revocation
    with pytest.raises(NotFound):
        book.revoke("nobody", 4.0)


def test_the_failure_window_forgets_failures_once_they_leave_it() -> None:
    window = FailureWindow(limit=2, window=10.0)
    window.fail("a", 0.0)
    window.fail("a", 5.0)
    assert window.is_blocked("a", 9.0)
    assert not window.is_blocked("a", 10.5)  # the first left the window


def test_the_state_folder_is_closed_to_other_users_even_when_made_by_an_older_corral(
        tmp_path: Path) -> None:
    state = tmp_path / ".corral"
    (state / "run").mkdir(parents=True, mode=0o755)
    os.chmod(state, 0o755)
    (state / "state.db").write_bytes(b"")
    os.chmod(state / "state.db", 0o644)
    (state / "run" / "controller.log").write_text("old\n")
    make_private(state)
    assert state.stat().st_mode & 0o777 == 0o700
    assert (state / "run").stat().st_mode & 0o777 == 0o700
    for name in ("state.db", "logs.db", "run/controller.log"):
        assert (state / name).stat().st_mode & 0o777 == 0o600, name


def test_the_vendored_assets_are_the_pinned_ones() -> None:
    table = (STATIC / "VENDORED.md").read_text()
    pinned = dict(re.findall(r"^\| (\S+) \| .* \| ([0-9a-f]{64}) \|$", table, re.M))
    assert set(pinned) == {a for a in ASSETS if a.endswith(".js")}
    for name, digest in pinned.items():
        assert hashlib.sha256((STATIC / name).read_bytes()).hexdigest() == digest, name


def test_the_api_leaves_loopback_only_with_tls(tmp_path: Path) -> None:
    spec = tmp_path / "corral.toml"
    spec.write_text('[project]\nname = "p"\n[controller]\nlisten = "0.0.0.0:8443"\n')
    with pytest.raises(CorralError, match="not loopback"):
        load_spec(spec)
    spec.write_text('[project]\nname = "p"\n[controller]\nlisten = "127.0.0.1:8443"\n')
    assert load_spec(spec).spec.controller.listen == "127.0.0.1:8443"
