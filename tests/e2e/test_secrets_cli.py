"""Secrets through the CLI with real sandboxes: a missing secret fails the deploy before any
instance starts, naming it and the environment; an instance reads its secret from env and
from a 0400 tmpfs file it owns; a rotation is a new release rolled out with no failed
request; the value is in no file of the state folder (images, store, logs), no CLI output,
and the lines the app prints with it are redacted in the collected logs."""

from __future__ import annotations

import hashlib
import os
import secrets
import stat
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_scratch_image import Load, Project

from cli_project import write_busybox_root
from loopback import poll

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

# The app prints its secret (to be redacted), then serves a digest of what it was given
# (env and file), the file's mode and owner, and its own uid: the test never sees a value.
SPEC = """\
[project]
name = "vault"

[images.web]
base = "scratch"
copy = [{{ src = "rootfs/", dest = "/" }}]
entrypoint = ["/bin/busybox", "sh", "-c", '''
echo "token=$DB_PASSWORD ready"
mkdir -p /tmp/www
E=$(printf %s "$DB_PASSWORD" | busybox sha256sum | cut -c1-64)
F=$(busybox sha256sum < /run/secrets/db | cut -c1-64)
echo "$E $F $(busybox stat -c '%a %u' /run/secrets/db) $(busybox id -u)" > /tmp/www/index.html
exec /bin/busybox httpd -f -p $PORT -h /tmp/www''']

[services.web]
image = "web"
replicas = 2
env = {{ DB_PASSWORD = {{ secret = "db_password" }}, PLAIN = "visible" }}
files = {{ "/run/secrets/db" = {{ secret = "db_password" }} }}
router = {{ listen = "127.0.0.1:{port}" }}
health = {{ path = "/", interval = "200ms", timeout = "1s", healthy_after = 1 }}
rolling = {{ max_surge = 1, max_unavailable = 0 }}

[services.other]
image = "web"
replicas = 0

[environments.staging]
default = true
"""


class Vault(Project):
    def __init__(self, folder: Path, config: Path) -> None:
        super().__init__(folder)
        self.config = config
        self.outputs: list[str] = []
        self.values: list[str] = []

    def corral(self, *args: str, check: bool = True, env: dict[str, str] | None = None,
               stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([sys.executable, "-m", "corral", *args], cwd=self.folder,
                              capture_output=True, text=True, timeout=300, input=stdin,
                              env={**os.environ, "XDG_CONFIG_HOME": str(self.config),
                                   **(env or {})})
        self.outputs += [done.stdout, done.stderr]
        assert "Traceback" not in done.stderr, done.stderr
        if check:
            assert done.returncode == 0, f"corral {args}: {done.stdout}\n{done.stderr}"
        return done


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@pytest.fixture(scope="module")
def vault(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Vault]:
    vault = Vault(tmp_path_factory.mktemp("vault"), tmp_path_factory.mktemp("config"))
    write_busybox_root(vault.folder, "unused\n")
    (vault.folder / "corral.toml").write_text(SPEC.format(port=vault.port))
    vault.values = [f"s3cr3t-{secrets.token_hex(12)}", f"s3cr3t-{secrets.token_hex(12)}"]
    yield vault
    vault.corral("down", check=False)


def test_a_missing_secret_fails_the_deploy_before_any_instance_starts(vault: Vault) -> None:
    vault.corral("up", "-d")
    failed = vault.corral("deploy", "web", check=False)
    assert failed.returncode == 1
    assert "needs secret 'db_password', which is not set in environment staging" in \
        failed.stderr
    assert vault.json("status")["services"] == []


def test_an_instance_gets_its_secret_in_env_and_a_0400_file_it_owns(vault: Vault) -> None:
    vault.corral("secret", "set", "db_password", stdin=vault.values[0] + "\n")
    key = vault.config / "corral" / "secret.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    vault.corral("deploy", "web")
    poll(lambda: vault.ready(2, 1), 60, "2 ready instances of v1")
    status, body = vault.page()
    env_digest, file_digest, mode, owner, uid = body.split()
    assert status == 200
    assert env_digest == file_digest == _digest(vault.values[0])
    assert (mode, owner) == ("400", uid)
    listed = vault.json("secret", "list")["secrets"]
    assert [(s["name"], s["version"], s["services"]) for s in listed] == [
        ("db_password", 1, ["web"])]


def test_rotation_is_a_new_release_rolled_out_with_no_failed_request(vault: Vault) -> None:
    with Load(vault) as load:
        poll(lambda: len(load.answers) >= 20, 30, "the load to be flowing")
        vault.corral("secret", "rotate", "db_password", stdin=vault.values[1])
        served = len(load.answers)
        poll(lambda: len(load.answers) >= served + 20, 30, "answers after the rotation")
    failed = [a for a in load.answers if a[0] != 200]
    assert failed == [], f"{len(failed)} of {len(load.answers)} requests failed"
    poll(lambda: vault.ready(2, 2), 60, "2 ready instances of v2")
    assert vault.page()[1].split()[0] == _digest(vault.values[1])
    releases = vault.json("releases", "web")["releases"]
    assert [r["version"] for r in releases] == [1, 2]
    assert releases[0]["image"] == releases[1]["image"]  # same image, new secret version


def test_printed_secrets_are_redacted_in_the_collected_logs(vault: Vault) -> None:
    lines = poll(lambda: [m for m in (e["message"] for e in _log_lines(vault))
                          if m.startswith("token=")] or None, 30, "the app's token lines")
    assert set(lines) == {"token=[redacted] ready"}


def _log_lines(vault: Vault) -> list[dict[str, Any]]:
    import json

    out = vault.corral("logs", "web", "--json", "-n", "1000").stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_no_secret_value_is_anywhere_in_state_images_logs_or_output(vault: Vault) -> None:
    for command in (("status", "--json"), ("status",), ("releases", "web", "--json"),
                    ("releases", "web"), ("ledger", "--json"), ("secret", "list"),
                    ("validate", "--print"), ("plan",)):
        vault.corral(*command, check=False)
    needles = [v.encode() for v in vault.values]
    hits = [str(path) for path in [vault.folder / "corral.toml",
                                   *(vault.folder / ".corral").rglob("*")]
            if path.is_file() and not path.is_symlink()
            and any(n in path.read_bytes() for n in needles)]
    assert hits == []
    assert [o for o in vault.outputs if any(v in o for v in vault.values)] == []


def test_a_backup_carries_the_secrets_sealed_and_never_their_values(vault: Vault) -> None:
    out = vault.folder.parent / f"{vault.folder.name}-backup.tar.gz"
    vault.corral("backup", "-o", str(out))
    vault.corral("backup", "verify", str(out))
    with tarfile.open(out) as archive:
        members = {m.name: archive.extractfile(m).read()  # type: ignore[union-attr]
                   for m in archive.getmembers() if m.isfile()}
    assert any(name.endswith("secrets.db") for name in members), sorted(members)
    needles = [v.encode() for v in vault.values]
    assert [n for n, data in members.items() if any(x in data for x in needles)] == []
