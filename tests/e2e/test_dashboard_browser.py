"""The team control plane as people use it: a controller serving its API and dashboard over
TLS, tokens made with the CLI, the CLI used remotely with a token, and the dashboard driven
in a real headless Chromium (Debian's, through Playwright): sign in, watch a blue-green
deployment wait at its gate, promote it and see the traffic split move, roll back and see
traffic return, and a viewer who sees no buttons and is refused anyway.

Real CLI, controller, router and sandboxes (a busybox httpd image). One browser for the
module. Screenshots of the main pages at 1280x800 and at a phone's width are written to
$CORRAL_ARTIFACTS (default: test-artifacts/dashboard) for people to look at.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cli_project import CliProject, write_busybox_root
from loopback import free_port, poll, self_signed

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
sync_api = pytest.importorskip("playwright.sync_api")
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600),
              pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                 reason="Debian's chromium is not installed (make setup)")]

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("CORRAL_ARTIFACTS", ROOT / "test-artifacts" / "dashboard"))
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
WAIT_MS = 60_000  # generous: only a failing test waits that long

SPEC = """\
[project]
name = "team"

[images.web]
base = "scratch"
copy = [{{ src = "rootfs/", dest = "/" }}]
# -v: httpd logs each request (the health checks', every 200 ms) for the log view to follow
entrypoint = ["/bin/busybox", "sh", "-c", "exec /bin/busybox httpd -f -v -p $PORT -h /www"]

[services.web]
image = "web"
replicas = 1
strategy = "blue-green"
blue_green = {{ auto_promote = false, preview = false, rollback_window = "15m" }}
router = {{ listen = "127.0.0.1:{port}" }}
health = {{ path = "/", interval = "200ms", timeout = "1s", healthy_after = 1 }}

[controller]
listen = "127.0.0.1:{api_port}"
tls = {{ cert = "cert.pem", key = "key.pem" }}
"""


class Team(CliProject):
    """The project, its controller's URL, and the CLI as a remote user runs it."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.api_port = free_port()
        self.url = f"https://127.0.0.1:{self.api_port}"
        self.cert = folder / "cert.pem"

    def remote(self, token: str | None, *args: str) -> subprocess.CompletedProcess[str]:
        env = {"CORRAL_SERVER": self.url, "SSL_CERT_FILE": str(self.cert),
               "CORRAL_TOKEN": token or ""}
        # run from elsewhere: the remote CLI must not need the project's folder
        done = subprocess.run([sys.executable, "-m", "corral", *args], cwd=self.folder.parent,
                              capture_output=True, text=True, timeout=120,
                              env={**os.environ, **env})
        assert "Traceback" not in done.stderr, done.stderr
        return done

    def token(self, name: str, role: str) -> str:
        return str(self.json("token", "create", name, "--role", role)["token"])

    def release_version(self, index: str) -> None:
        (self.folder / "rootfs" / "www" / "index.html").write_text(index)


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Team]:
    team = Team(tmp_path_factory.mktemp("team"))
    write_busybox_root(team.folder, "one\n")
    self_signed(team.folder)
    (team.folder / "corral.toml").write_text(SPEC.format(port=team.port,
                                                         api_port=team.api_port))
    team.corral("up", "-d")
    try:
        team.corral("deploy", "web")
        yield team
    finally:
        team.corral("down", check=False)


@pytest.fixture(scope="module")
def tokens(team: Team) -> dict[str, str]:
    return {"deployer": team.token("alice", "deployer"), "viewer": team.token("val", "viewer")}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM,
                                             args=["--no-sandbox", "--disable-gpu"])
        try:
            yield browser
        finally:
            browser.close()


def signed_in(browser: Any, team: Team, token: str, viewport: dict[str, int] = DESKTOP) -> Any:
    """A fresh browser context signed in with `token`, on the services page."""
    context = browser.new_context(viewport=viewport, ignore_https_errors=True)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(team.url + "/")
    assert page.url.endswith("/ui/signin")  # no session: sent to sign in
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_url(team.url + "/")
    return page


def share(page: Any, release: str) -> Any:
    """The traffic share of `release` of web, as the page shows it (updated live)."""
    return page.locator(f"[data-testid=traffic-web-{release}]")


def traffic(page: Any, release: str) -> str:
    return str(share(page, release).inner_text())


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_the_cli_works_remotely_with_a_token_and_is_refused_what_its_role_may_not(
        team: Team, tokens: dict[str, str]) -> None:
    status = json.loads(team.remote(tokens["viewer"], "status", "--json").stdout)
    assert status["services"][0]["live_release"] == 1
    refused = team.remote(tokens["viewer"], "rollback", "web")
    assert refused.returncode == 1 and "viewer role" in refused.stderr
    nobody = team.remote(None, "status")
    assert nobody.returncode == 1 and "needs a token" in nobody.stderr
    wrong = team.remote("corral_not-a-token", "status")
    assert wrong.returncode == 1 and "token is unknown" in wrong.stderr
    listed = json.loads(team.remote(tokens["deployer"], "token", "list", "--json").stdout)
    assert listed["error"]["type"] == "AccessDenied"  # tokens are an admin's
    failed = json.loads(team.remote(tokens["viewer"], "ledger", "--action", "api.auth_failed",
                                    "--json").stdout)["entries"]
    assert failed and failed[-1]["subject"] == "127.0.0.1"
    def five_lines() -> list[str]:  # the collector reads each instance's log as it grows
        lines = team.remote(tokens["viewer"], "logs", "web", "-n", "5").stdout.splitlines()
        return lines if len(lines) == 5 else []

    assert all("response:200" in line for line in poll(five_lines, 60, "5 log lines"))
    dora = json.loads(team.remote(tokens["viewer"], "dora", "--json").stdout)
    assert dora["deployment_frequency"]["deployments"] >= 1
    state = team.folder / ".corral"
    assert state.stat().st_mode & 0o777 == 0o700
    for name in ("state.db", "logs.db", "tokens.json", "run/controller.log"):
        assert (state / name).stat().st_mode & 0o777 == 0o600, name


def test_a_deployer_watches_a_deployment_promotes_it_and_rolls_it_back_in_the_browser(
        team: Team, tokens: dict[str, str], browser: Any) -> None:
    page = signed_in(browser, team, tokens["deployer"])
    page.on("dialog", lambda dialog: dialog.accept())  # the buttons confirm first
    assert traffic(page, "v1") == "100%"
    shot(page, "services-1280")

    team.release_version("two\n")
    deploy = subprocess.Popen([sys.executable, "-m", "corral", "deploy", "web", "--json"],
                              cwd=team.folder, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    try:
        # live, without a reload: the deployment appears, runs, and waits at its gate
        page.locator("[data-testid=promote-web]").wait_for()
        page.locator("text=deployment #2").wait_for()
        page.locator("tr", has_text="web-v2-").filter(has_text="ready").wait_for()
        page.locator(".steps li", has_text="StartInstances").wait_for()
        assert traffic(page, "v1") == "100%"  # the new fleet, ready, has no traffic yet
        shot(page, "deployment-at-gate-1280")
        page.click("[data-testid=promote-web]")
        page.locator("[data-testid=flash]").wait_for()
        sync_api.expect(share(page, "v2")).to_have_text("100%", timeout=WAIT_MS)
        assert share(page, "v1").count() == 0 or traffic(page, "v1") == "0%"
        assert deploy.wait(120) == 0
    finally:
        if deploy.poll() is None:
            deploy.kill()
            deploy.wait(10)
    page.locator("[data-testid=live-web]", has_text="live v2").wait_for()
    assert team.request()[0] == 200
    poll(lambda: _body(team) == "two\n", 60, "the router serving v2")
    shot(page, "promoted-1280")

    page.click("[data-testid=rollback-web]")
    page.locator("[data-testid=flash]", has_text="succeeded").wait_for()
    sync_api.expect(share(page, "v1")).to_have_text("100%", timeout=WAIT_MS)
    page.locator("[data-testid=live-web]", has_text="live v1").wait_for()
    poll(lambda: _body(team) == "one\n", 60, "the router serving v1 again")
    shot(page, "rolled-back-1280")

    # the ledger names who did it: the token's name, from the credentials
    page.goto(team.url + "/ui/ledger")
    assert page.locator("[data-testid=ledger-verify]").inner_text().startswith("verified")
    rows = page.locator("tbody tr", has_text="alice")
    assert rows.filter(has_text="deployment.signal").count() == 1
    assert rows.filter(has_text="deployment.start").count() == 1  # the rollback
    shot(page, "ledger-1280")
    for path, name in (("/ui/services/web", "releases"), ("/ui/dora", "dora")):
        page.goto(team.url + path)
        shot(page, f"{name}-1280")

    # the log view follows: lines logged after the page loaded arrive without a reload
    page.goto(team.url + "/ui/logs?service=web&release=v1&follow=1")
    lines = page.locator("#log-lines li")
    lines.first.wait_for()
    shown = lines.count()
    lines.nth(shown).wait_for()
    assert set(lines.evaluate_all("items => items.map(i => i.dataset.release)")) == {"v1"}
    shot(page, "logs-1280")
    page.context.close()


def _body(team: Team) -> str:
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", team.port, timeout=5)
    try:
        connection.request("GET", "/")
        return connection.getresponse().read().decode()
    except OSError:
        return ""
    finally:
        connection.close()


def test_a_viewer_sees_no_buttons_and_the_server_refuses_the_action_anyway(
        team: Team, tokens: dict[str, str], browser: Any) -> None:
    page = signed_in(browser, team, tokens["viewer"], PHONE)
    page.locator("[data-testid=traffic-web-v1]").wait_for()
    assert page.locator("button[hx-post]").count() == 0
    status = page.evaluate("""async () => (await fetch('/ui/services/web/rollback',
        {method: 'POST', headers: {'HX-Request': 'true'}})).status""")
    assert status == 403
    # readable on a phone: nothing wider than the screen
    for path, name in (("/", "services"), ("/ui/ledger", "ledger"), ("/ui/dora", "dora")):
        page.goto(team.url + path)
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), path
        shot(page, f"{name}-phone")
    page.context.close()


def test_a_wrong_token_is_refused_at_sign_in(team: Team, browser: Any) -> None:
    context = browser.new_context(viewport=DESKTOP, ignore_https_errors=True)
    page = context.new_page()
    page.goto(team.url + "/ui/signin")
    page.fill("#token", "corral_wrong")
    page.click("button[type=submit]")
    assert "the token is unknown" in page.locator("[role=alert]").inner_text()
    shot(page, "signin-refused-1280")
    context.close()
