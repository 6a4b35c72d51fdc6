"""`orgguard ... --url`: the same commands through a real local host's API, where the caller's role applies.

The local token is tested against the local host as `make run` starts it (the
background executor carrying actions out in the simulated orgs). Behind App Service
Authentication the platform validates an Entra token and tells the app who called
(``X-MS-CLIENT-PRINCIPAL``); here a small ASGI layer plays the platform's part for
tokens it knows, and a credential object with azure-identity's ``get_token`` stands
in for ``DefaultAzureCredential``, passed through the CLI's own code path.
"""

from __future__ import annotations

import base64
import json
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError
from typer.testing import CliRunner

from functions.console import app
from functions.http_api import create_api
from functions.local_host import create_local_app
from sandbox.server import free_port
from shared import bootstrap
from shared.cli import api_client
from shared.domain.model import ActionStatus
from tests.factories import ADMIN_TOKEN, AIKO, HOLDING_POLICY, claim, container, registry
from tests.jobs_support import exchange, row_for
from tests.serving import serve

pytestmark = pytest.mark.sandbox

runner = CliRunner()
SCOPE = "api://3f6b1c2e-orgguard-test/.default"
SANDBOX_SEED = {"mailboxes": 30}


def held_case(c: bootstrap.Container, sandbox: httpx.Client | None = None) -> str:
    """NA owns Aiko's mailbox, JP's claim is held (with the orgs' real row ids when there is a sandbox)."""
    ids = {o: row_for(sandbox, o, AIKO.address)["mailboxid"] if sandbox else None for o in ("contoso-na", "contoso-jp")}
    c.service.handle_claim(claim("contoso-na", op="1", mailbox_id=ids["contoso-na"]))
    case_id = c.service.handle_claim(claim("contoso-jp", op="2", mailbox_id=ids["contoso-jp"])).case_id
    assert case_id is not None
    return case_id


@contextmanager
def hosting(tmp_path: Path, base_url: str, monkeypatch: pytest.MonkeyPatch, *, background: bool):
    c = container(tmp_path, HOLDING_POLICY)
    c.orgs = registry(base_url)
    c.service.orgs = c.orgs
    bootstrap.install(c)
    monkeypatch.setenv("ORGGUARD_ADMIN_TOKEN", ADMIN_TOKEN)
    monkeypatch.delenv("ORGGUARD_API_SCOPE", raising=False)
    monkeypatch.delenv("ORGGUARD_URL", raising=False)
    try:
        with serve(create_local_app(c) if background else create_api()) as url:
            yield c, url
    finally:
        bootstrap.install(None)
        c.close()


@pytest.fixture
def host(tmp_path: Path, base_url: str, sandbox: httpx.Client, monkeypatch: pytest.MonkeyPatch):
    """The local host (API + background executor) on a free port, and its container."""
    with hosting(tmp_path, base_url, monkeypatch, background=True) as hosted:
        yield hosted


@pytest.fixture
def api_only(tmp_path: Path, base_url: str, monkeypatch: pytest.MonkeyPatch):
    """The API alone: nothing carries actions out behind the test's back."""
    with hosting(tmp_path, base_url, monkeypatch, background=False) as hosted:
        yield hosted


def cli(*args: str) -> Any:
    result = runner.invoke(app, list(args))
    assert "Traceback" not in result.output
    return result


def one_line(result: Any) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return str(lines[0])


def test_case_work_goes_through_the_api_with_the_local_token(host, sandbox: httpx.Client):
    c, url = host
    case_id = held_case(c, sandbox)
    listed = json.loads(cli("cases", "list", "--state", "held", "--url", url, "--json").stdout)
    assert [i["id"] for i in listed["items"]] == [case_id]
    direct = json.loads(cli("cases", "list", "--state", "held", "--json").stdout)
    assert direct == listed  # the same documents whichever way
    shown = cli("cases", "show", case_id[:8], "--url", url)
    assert shown.exit_code == 0 and "owner when claimed  contoso-na" in shown.stdout

    blank = cli("cases", "approve", case_id[:8], "--reason", " ", "--url", url)
    assert blank.exit_code == 2 and one_line(blank).startswith("error: 400 ")
    approved = cli("cases", "approve", case_id[:8], "--reason", "Aiko moved to Tokyo", "--url", url, "--json")
    assert approved.exit_code == 0
    history = json.loads(approved.stdout)["history"]
    assert history[-1]["actor"] == "local-admin"  # decided by the server, as the token's principal
    again = cli("cases", "deny", case_id, "--reason", "no", "--url", url)
    assert again.exit_code == 1 and one_line(again).startswith("error: 409 ")
    assert cli("cases", "show", "0000", "--url", url).exit_code == 1

    deadline = time.monotonic() + 20  # the host's own executor carries the approval out
    while exchange(sandbox, AIKO.address) != "contoso-jp":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    mailbox = json.loads(cli("mailbox", "show", AIKO.address, "--url", url, "--json").stdout)
    assert mailbox["owner"] == "contoso-jp" and mailbox["how"] == "approval"
    assert cli("mailbox", "show", "nobody", "--url", url).exit_code == 2


def test_actions_retry_through_the_api(api_only):
    c, url = api_only
    case_id = held_case(c)
    c.service.approve(case_id, actor="t", reason="ok")  # a demote in NA, a promote in JP
    action = c.service.case(case_id).actions[0]
    c.ledger.record_attempt(action.id, ActionStatus.FAILED, "403 from the org")
    result = cli("actions", "retry", action.id, "--url", url, "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["status"] == "pending"
    assert any(e.event.kind == "action.retry" and e.event.actor == "local-admin" for e in c.ledger.audit_entries())
    done = c.service.case(case_id).actions[1]
    c.ledger.record_attempt(done.id, ActionStatus.APPLIED)
    refused = cli("actions", "retry", done.id, "--url", url)  # only a failed action can be retried
    assert refused.exit_code == 1 and one_line(refused).startswith("error: 409 ")
    missing = cli("actions", "retry", "no-such-action", "--url", url)
    assert missing.exit_code == 1 and one_line(missing).startswith("error: 404 ")


def test_the_token_file_is_sent_to_loopback_only(host, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    c, url = host
    held_case(c)
    monkeypatch.delenv("ORGGUARD_ADMIN_TOKEN")
    monkeypatch.chdir(tmp_path)
    missing = cli("cases", "list", "--url", url)
    assert missing.exit_code == 1 and "no credentials" in one_line(missing)
    (tmp_path / ".orgguard").mkdir()
    (tmp_path / ".orgguard" / "admin-token").write_text(ADMIN_TOKEN + "\n")
    monkeypatch.setenv("ORGGUARD_URL", url)  # the environment names the URL as well as --url
    assert len(json.loads(cli("cases", "list", "--json").stdout)["items"]) == 1
    elsewhere = cli("cases", "list", "--url", "https://orgguard.example.com")
    assert elsewhere.exit_code == 1 and "no credentials" in one_line(elsewhere)
    monkeypatch.setenv("ORGGUARD_ADMIN_TOKEN", "not-the-token")
    wrong = cli("cases", "list")
    assert wrong.exit_code == 1 and one_line(wrong).startswith("error: 403 Forbidden")


def test_bad_urls_are_one_clear_line(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ORGGUARD_ADMIN_TOKEN", ADMIN_TOKEN)
    port = free_port()  # nothing listens there
    down = cli("cases", "list", "--url", f"http://127.0.0.1:{port}")
    assert down.exit_code == 1 and f"cannot reach OrgGuard at http://127.0.0.1:{port}" in one_line(down)
    plain = cli("migrations", "list", "--url", "http://orgguard.example.com")
    assert plain.exit_code == 2 and "must be https" in one_line(plain)
    assert cli("cases", "list", "--url", "ftp://orgguard.example.com").exit_code == 2


def test_an_answer_that_is_not_orgguards_is_one_line(base_url: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ORGGUARD_ADMIN_TOKEN", ADMIN_TOKEN)
    result = cli("cases", "list", "--url", base_url)  # the simulated orgs, not OrgGuard
    assert result.exit_code == 1 and one_line(result).startswith("error: 404 ")


# --- Entra ID behind App Service Authentication ---------------------------------------------


class EasyAuth:
    """What App Service Authentication does for the API: a valid bearer becomes X-MS-CLIENT-PRINCIPAL."""

    def __init__(self, app: Any, users: dict[str, tuple[str, str]]) -> None:
        self.app, self.users, self.seen = app, users, []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = [(k, v) for k, v in scope["headers"] if k != b"x-ms-client-principal"]  # forged copies go
            auth = dict(headers).get(b"authorization", b"").decode()
            self.seen.append(auth)
            user = self.users.get(auth.removeprefix("Bearer "))
            if user is not None:
                name, role = user
                claims = [{"typ": "name", "val": name}, {"typ": "roles", "val": role}]
                principal = base64.b64encode(json.dumps({"claims": claims}).encode())
                headers.append((b"x-ms-client-principal", principal))
            scope = {**scope, "headers": headers}
        await self.app(scope, receive, send)


class Credential:
    """Has what azure-identity's credentials have: get_token(*scopes) -> AccessToken."""

    def __init__(self, token: str | None) -> None:
        self.token, self.scopes = token, []

    def get_token(self, *scopes: str, **_: Any) -> AccessToken:
        self.scopes.append(scopes)
        if self.token is None:
            raise ClientAuthenticationError("DefaultAzureCredential failed to retrieve a token\nmore lines")
        return AccessToken(self.token, int(time.time()) + 3600)


@pytest.fixture
def easyauth(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    c = container(tmp_path, HOLDING_POLICY, auth="easyauth")
    bootstrap.install(c)
    platform = EasyAuth(
        create_api(),
        {
            "reader-token": ("reader@contoso.com", "OrgGuard.Reader"),
            "approver-token": ("ann@contoso.com", "OrgGuard.Approver"),
        },
    )
    monkeypatch.delenv("ORGGUARD_ADMIN_TOKEN", raising=False)
    monkeypatch.setenv("ORGGUARD_API_SCOPE", SCOPE)
    try:
        with serve(platform) as url:
            yield c, url, platform
    finally:
        bootstrap.install(None)
        c.close()


def signed_in(monkeypatch: pytest.MonkeyPatch, token: str | None) -> Credential:
    credential = Credential(token)
    monkeypatch.setattr(api_client, "entra_credential", lambda: credential)
    return credential


def test_an_entra_token_carries_the_operators_role(easyauth, monkeypatch: pytest.MonkeyPatch):
    c, url, platform = easyauth
    case_id = held_case(c)
    reader = signed_in(monkeypatch, "reader-token")
    assert json.loads(cli("cases", "list", "--url", url, "--json").stdout)["items"][0]["id"] == case_id
    refused = cli("cases", "approve", case_id[:8], "--reason", "ok", "--url", url)
    assert refused.exit_code == 1
    assert one_line(refused) == "error: 403 Forbidden: this needs the OrgGuard.Approver role"
    assert c.service.case(case_id).state.value == "held"
    assert reader.scopes and set(reader.scopes) == {(SCOPE,)}
    assert platform.seen and set(platform.seen) == {"Bearer reader-token"}

    signed_in(monkeypatch, "approver-token")
    approved = cli("cases", "approve", case_id[:8], "--reason", "ok", "--url", url, "--json")
    assert approved.exit_code == 0 and json.loads(approved.stdout)["history"][-1]["actor"] == "ann@contoso.com"

    signed_in(monkeypatch, "someone-else")  # a token the platform does not take: no principal reaches the app
    assert one_line(cli("cases", "list", "--url", url)).startswith("error: 401 ")


def test_no_entra_token_is_one_clear_line(easyauth, monkeypatch: pytest.MonkeyPatch):
    _, url, platform = easyauth
    signed_in(monkeypatch, None)
    result = cli("cases", "list", "--url", url)
    assert result.exit_code == 1
    assert one_line(result).startswith(
        f"error: could not get an Entra token for {SCOPE}: DefaultAzureCredential failed"
    )
    assert platform.seen == []  # nothing was sent without a token
