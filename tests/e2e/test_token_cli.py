"""`corral token` with no controller running: the token is printed once, the book keeps its
hash, `list` never shows it, `revoke` ends it, and the ledger names the local user."""

from __future__ import annotations

import json
import os
import pwd
from pathlib import Path

import pytest

from cli_project import CliProject

pytestmark = pytest.mark.e2e


def test_tokens_are_made_listed_and_revoked_without_a_controller(tmp_path: Path) -> None:
    project = CliProject(tmp_path)
    project.corral("init", "--port", str(project.port))
    made = project.corral("token", "create", "ci", "--role", "deployer", "--expires", "30d")
    token = made.stdout.strip()
    assert token.startswith("corral_") and "shown only now" in made.stderr
    book = (tmp_path / ".corral" / "tokens.json").read_text()
    assert token not in book
    listed = project.json("token", "list")["tokens"]
    assert [(t["name"], t["role"], t["state"]) for t in listed] == [("ci", "deployer", "valid")]
    assert token not in json.dumps(listed)
    assert project.json("token", "revoke", "ci")["state"] == "revoked"
    again = project.corral("token", "revoke", "ci", check=False)
    assert again.returncode == 1 and "no live token named 'ci'" in again.stderr
    me = f"unix:{pwd.getpwuid(os.getuid()).pw_name}"
    actions = [(e["actor"], e["action"]) for e in project.json("ledger", "--action", "token")[
        "entries"]]
    assert actions == [(me, "token.create"), (me, "token.revoke")]
