"""Input that must be refused, by class, through every door: a clear problem+json (or exit code), nothing recorded.

Each table below is a class of bad input seen once and tried everywhere it can
enter: the gate, the event intake, the admin API, the CLI, the configuration.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
from urllib.parse import quote

import httpx
import pytest
from typer.testing import CliRunner

from functions.console import app as cli
from functions.http_api import create_api
from shared import bootstrap
from shared.config.orgs import OrgsError, parse_orgs
from shared.config.settings import Settings, SettingsError
from shared.ledger.port import job_ledger
from tests.factories import ADMIN_TOKEN, AIKO, KEYS, ORG_IDS, claim, container, fixture, ledger_snapshot
from tests.hosting import api_client, installed
from tests.serving import serve

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
KEY_VAULT = "@Microsoft.KeyVault(SecretUri=https://contoso-kv.vault.azure.net/secrets/orgguard-key/)"


def is_problem(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["status"] == status and body["detail"]
    return body


def jobs(c) -> int:
    from shared.domain.jobs import JobKind

    ledger = job_ledger(c.ledger)
    return len(ledger.jobs(JobKind.MIGRATION)) + len(ledger.jobs(JobKind.SWEEP))


# --- control and invisible characters in an address, through every entry point -----------------------------

HIDDEN = {
    "newline in the local part": "aiko\n.tanaka@contoso.com",
    "carriage return and a header after it": "aiko.tanaka@contoso.com\r\nBcc: x@fabrikam.com",
    "trailing newline": "aiko.tanaka@contoso.com\n",
    "leading tab": "\taiko.tanaka@contoso.com",
    "NUL in the domain": "aiko.tanaka@con\x00toso.com",
    "DEL": "aiko\x7f.tanaka@contoso.com",
    "C1 control (NEL)": "aiko\x85.tanaka@contoso.com",
    "right-to-left override": "aiko\u202e.tanaka@contoso.com",
    "zero-width space in the domain": "aiko.tanaka@contoso\u200b.com",
    "line separator": "aiko.tanaka@contoso.com\u2028",
    "byte-order mark": "\ufeffaiko.tanaka@contoso.com",
}


def with_address(name: str, address: str) -> bytes:
    doc = fixture(name)
    text = json.dumps(doc).replace(json.dumps("Aiko.Tanaka@Contoso.com")[1:-1], json.dumps(address)[1:-1])
    assert text != json.dumps(doc), "the fixture no longer holds the address"
    return text.encode()


@pytest.mark.parametrize("address", HIDDEN.values(), ids=HIDDEN.keys())
def test_an_address_with_a_hidden_character_is_refused_at_the_gate_and_the_intake(api, address):
    client, c = api
    before = ledger_snapshot(c)
    headers = {"x-orgguard-key": KEYS["contoso-jp"], "content-type": "application/json"}
    gate = client.post("/api/dataverse/gate", content=with_address("gate-test-enable.json", address), headers=headers)
    assert "control or invisible character" in is_problem(gate, 400)["detail"]
    event = with_address("event-post-test-enable.json", address)
    is_problem(client.post("/api/dataverse/events", content=event, headers=headers), 400)
    assert ledger_snapshot(c) == before


@pytest.mark.parametrize("address", HIDDEN.values(), ids=HIDDEN.keys())
def test_an_address_with_a_hidden_character_is_refused_by_the_admin_api(api, address):
    client, c = api
    before, jobs_before = ledger_snapshot(c), jobs(c)
    quoted = "/api/mailboxes/" + quote(address, safe="@")
    is_problem(client.get(quoted, headers=ADMIN), 400)
    is_problem(client.put(quoted + "/owner", json={"org": "contoso-eu", "reason": "x"}, headers=ADMIN), 400)
    is_problem(client.get("/api/cases", params={"mailbox": address}, headers=ADMIN), 400)
    what_if = {"mailbox": address, "claimant": "contoso-jp"}
    is_problem(client.post("/api/policy/evaluate", json=what_if, headers=ADMIN), 400)
    move = {"from": "contoso-na", "to": "contoso-jp", "mailboxes": [address]}
    is_problem(client.post("/api/migrations", json=move, headers=ADMIN), 400)
    domain = address.split("@", 1)[1]
    if domain != domain.strip(" ") or any(not ch.isprintable() for ch in domain):
        by_domain = {"from": "contoso-na", "to": "contoso-jp", "domain": domain}
        is_problem(client.post("/api/migrations", json=by_domain, headers=ADMIN), 400)
    assert ledger_snapshot(c) == before and jobs(c) == jobs_before


@pytest.mark.parametrize("address", HIDDEN.values(), ids=HIDDEN.keys())
def test_an_address_with_a_hidden_character_is_refused_by_the_cli(tmp_path, address):
    with installed(container(tmp_path)) as c:
        explained = CliRunner().invoke(cli, ["policy", "explain", "--mailbox", address, "--claimant", "contoso-jp"])
        # A bad address given to the CLI is bad usage (exit 2), as every 400 is; nothing runs
        assert explained.exit_code == 2 and "control or invisible" in explained.output
        if "\n" not in address:  # a file of addresses, one a line: a newline there only ends a line
            listed = tmp_path / "move.txt"
            listed.write_text(f"# to move\nhana.sato@contoso.com\n{address}\n", encoding="utf-8")
            moved = CliRunner().invoke(
                cli, ["migrate", "--from", "contoso-na", "--to", "contoso-jp", "--mailboxes", str(listed)]
            )
            assert moved.exit_code == 2 and "control or invisible" in moved.output
        assert jobs(c) == 0


def test_a_policy_naming_an_address_with_a_hidden_character_is_refused(api):
    client, _ = api
    text = (
        "version: 1\ndefault: block\nprimary:\n"
        '  - when: {mailbox.address: ["ceo@contoso.com\\n"]}\n'
        "    org: contoso-na\n"
    )
    body = is_problem(client.put("/api/policy", content=text.encode(), headers=ADMIN), 422)
    assert "control or invisible character" in json.dumps(body["errors"])


# --- X-MS-CLIENT-PRINCIPAL of every shape --------------------------------------------------------------------


def b64(raw: bytes | str) -> str:
    return base64.b64encode(raw.encode() if isinstance(raw, str) else raw).decode()


def principal(**doc: object) -> str:
    return b64(json.dumps({"auth_typ": "aad", "name_typ": "name", "role_typ": "roles", **doc}))


ROLE = {"typ": "roles", "val": "OrgGuard.Admin"}
MALFORMED = {
    "claims as a string": principal(claims="roles=OrgGuard.Admin"),
    "claims as a number": principal(claims=5),
    "claims null": principal(claims=None),
    "claims missing": principal(),
    "a claim as a string": principal(claims=["OrgGuard.Admin"]),
    "a claim as a number": principal(claims=[7, ROLE]),
    "val as a list": principal(claims=[{"typ": "roles", "val": ["OrgGuard.Admin"]}]),
    "val as a number": principal(claims=[{"typ": "roles", "val": 3}, ROLE]),
    "val missing": principal(claims=[{"typ": "roles"}, ROLE]),
    "typ as a number": principal(claims=[{"typ": 1, "val": "x"}, ROLE]),
    "role_typ as a list": principal(claims=[ROLE], role_typ=["roles"]),
    "name_typ as a number": principal(claims=[ROLE], name_typ=9),
    "document is a list": b64(json.dumps([ROLE])),
    "document is a string": b64(json.dumps("OrgGuard.Admin")),
    "document is null": b64("null"),
    "not JSON": b64("roles=OrgGuard.Admin"),
    "not UTF-8": b64(b"\xff\xfe{\x00"),
    "bad base64": "%%%not-base64%%%",
    "base64 without padding": principal(claims=[ROLE]).rstrip("="),
    "deeply nested": b64("[" * 5000 + "]" * 5000),
    "huge": principal(claims=[ROLE, *({"typ": "groups", "val": "g" * 60} for _ in range(600))]),
    "a name with a newline": principal(claims=[ROLE, {"typ": "name", "val": "mallory\nadmin approved"}]),
}


def test_a_malformed_client_principal_of_any_shape_is_401_never_500(tmp_path):
    """Each shape as the app receives it (Azure's host passes the header on), and over a real server."""
    with installed(container(tmp_path, auth="easyauth")):
        for shape, header in MALFORMED.items():
            if shape == "base64 without padding" and header.endswith("="):
                continue
            for method, path in (("GET", "/api/cases"), ("PUT", "/api/policy")):
                r = asgi(method, path, headers={"x-ms-client-principal": header}, content=b"x: 1")
                assert r.status_code == 401, (shape, r.status_code, r.text)
                assert r.headers["content-type"].startswith("application/problem+json"), shape
        with serve(create_api()) as url, httpx.Client(base_url=url, timeout=10) as client:
            for shape, header in MALFORMED.items():
                r = client.get("/api/cases", headers={"x-ms-client-principal": header})
                # uvicorn itself may refuse a header block over its limit (400) before OrgGuard sees it
                assert r.status_code in ({400, 401} if shape == "huge" else {401}), shape
            fine = principal(claims=[ROLE, {"typ": "name", "val": "aiko"}])
            assert client.get("/api/cases", headers={"x-ms-client-principal": fine}).status_code == 200


# --- a migration from an org to itself ---------------------------------------------------------------------------


def test_a_migration_from_an_org_to_itself_is_refused_at_once(api, tmp_path):
    client, c = api
    for selection in ({"mailboxes": [AIKO.address]}, {"domain": "contoso.com"}):
        move = {"from": "contoso-na", "to": "contoso-na", **selection}
        body = is_problem(client.post("/api/migrations", json=move, headers=ADMIN), 400)
        assert "two different orgs" in body["detail"]
    assert jobs(c) == 0
    listed = tmp_path / "move.txt"
    listed.write_text(AIKO.address + "\n")
    result = CliRunner().invoke(
        cli, ["migrate", "--from", "contoso-jp", "--to", "contoso-jp", "--mailboxes", str(listed)]
    )
    assert result.exit_code == 2 and "two different orgs" in result.output
    assert jobs(c) == 0


# --- keys and tokens compared exactly --------------------------------------------------------------------------


def asgi(method: str, path: str, **kwargs):
    """A request handed to the ASGI app as sent (no HTTP server trims its header values on the way)."""

    async def go():
        transport = httpx.ASGITransport(app=create_api())
        async with httpx.AsyncClient(transport=transport, base_url="http://orgguard.test") as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(go())


@pytest.mark.parametrize(
    "key",
    [f" {KEYS['contoso-jp']}", f"{KEYS['contoso-jp']} ", f"{KEYS['contoso-jp']}\t", KEYS["contoso-jp"].upper(),
     KEYS["contoso-jp"][:-1], KEYS["contoso-jp"] + "0"],
    ids=["leading space", "trailing space", "trailing tab", "other case", "a prefix", "longer"],
)  # fmt: skip
def test_a_webhook_key_is_compared_exactly(tmp_path, key):
    with installed(container(tmp_path)) as c:
        before = ledger_snapshot(c)
        headers = {"x-orgguard-key": key, "content-type": "application/json"}
        r = asgi(
            "POST",
            "/api/dataverse/gate",
            headers=headers,
            content=with_address("gate-test-enable.json", "aiko@contoso.com"),
        )
        assert r.status_code == 403, r.text
        assert ledger_snapshot(c) == before


@pytest.mark.parametrize(
    "authorization",
    [f"Bearer  {ADMIN_TOKEN}", f"Bearer {ADMIN_TOKEN} ", f"Bearer {ADMIN_TOKEN}\t", f"Bearer {ADMIN_TOKEN[:-1]}",
     f"Bearer {ADMIN_TOKEN.upper()}"],
    ids=["two spaces", "trailing space", "trailing tab", "a prefix", "other case"],
)  # fmt: skip
def test_the_admin_token_is_compared_exactly(tmp_path, authorization):
    with installed(container(tmp_path)):
        assert asgi("GET", "/api/cases", headers={"Authorization": authorization}).status_code == 403
        assert asgi("GET", "/api/cases", headers=ADMIN).status_code == 200


def orgs_doc(key_spec: str) -> dict:
    return {"orgs": [{"name": "contoso-na", "id": ORG_IDS["contoso-na"], "url": "https://na.crm.dynamics.com",
                      "webhook_key": key_spec}]}  # fmt: skip


@pytest.mark.parametrize(
    ("spec", "env", "says"),
    [
        (KEY_VAULT, {}, "Key Vault reference"),
        ("env:NA_KEY", {"NA_KEY": KEY_VAULT}, "unresolved Key Vault reference"),
        ("env:NA_KEY", {"NA_KEY": "  @microsoft.keyvault(VaultName=kv;SecretName=na)"}, "Key Vault reference"),
        ("env:NA_KEY", {"NA_KEY": "a-good-long-key-but\n"}, "white space or a control character"),
        ("env:NA_KEY", {"NA_KEY": " padded-key-0123456789"}, "white space or a control character"),
        ("a key with spaces in it", {}, "white space or a control character"),
        ("key-with-a-nul\x00-0123", {}, "white space or a control character"),
    ],
    ids=["literal reference", "env reference", "env reference, other spelling", "trailing newline",
         "leading space", "inner spaces", "NUL"],
)  # fmt: skip
def test_a_webhook_key_that_could_never_match_is_refused_when_the_orgs_are_loaded(spec, env, says):
    with pytest.raises(OrgsError, match=says) as refused:
        parse_orgs(orgs_doc(spec), env=env)
    assert KEY_VAULT not in refused.value.detail and "padded-key" not in refused.value.detail  # never the value


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("ORGGUARD_ADMIN_TOKEN", KEY_VAULT, "unresolved Key Vault reference"),
        ("ORGGUARD_ADMIN_TOKEN", "token-from-a-file\n", "white space or a control character"),
        ("ORGGUARD_ADMIN_TOKEN", "two words", "white space or a control character"),
        ("ORGGUARD_LEDGER", "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/ledger/)",
         "unresolved Key Vault reference"),
    ],
)  # fmt: skip
def test_a_secret_setting_that_could_never_work_is_refused(name, value, says):
    with pytest.raises(SettingsError, match=says) as refused:
        Settings.from_env({name: value})
    assert refused.value.field == name


def test_an_unresolved_key_vault_reference_stops_start_up_and_shows_in_health(tmp_path, monkeypatch):
    orgs = tmp_path / "orgs.yaml"
    orgs.write_text(f"orgs:\n  - name: contoso-jp\n    id: {ORG_IDS['contoso-jp']}\n"
                    "    url: https://jp.crm.dynamics.com\n    webhook_key: env:ORGGUARD_KEY_JP\n")  # fmt: skip
    monkeypatch.setenv("ORGGUARD_ORGS", str(orgs))
    monkeypatch.setenv("ORGGUARD_LEDGER", f"sqlite:///{tmp_path / 'l.db'}")
    monkeypatch.setenv("ORGGUARD_POLICY", str(tmp_path / "none.yaml"))
    monkeypatch.setenv("ORGGUARD_ADMIN_TOKEN", ADMIN_TOKEN)
    monkeypatch.setenv("ORGGUARD_KEY_JP", KEY_VAULT)
    bootstrap.install(None)
    with serve(create_api()) as url, httpx.Client(base_url=url, timeout=10) as client:
        health = client.get("/api/health")
        assert health.status_code == 503
        reason = health.json()["checks"]["settings"]["reason"]
        assert "ORGGUARD_KEY_JP" in reason and "Key Vault reference" in reason and "contoso-kv" not in reason
        key = {"x-orgguard-key": "any-key-at-all-0123", "content-type": "application/json"}
        gate = client.post("/api/dataverse/gate", content=fixture_bytes_jp(), headers=key)
        assert gate.status_code == 409 and gate.json()["degraded"] is True  # gate.on_error: block
        admin = client.get("/api/cases", headers=ADMIN)
        assert is_problem(admin, 503)["title"] == "OrgGuard is not configured"
    result = CliRunner().invoke(cli, ["audit", "verify"])
    assert result.exit_code == 1 and "Key Vault reference" in " ".join(result.output.split())


def fixture_bytes_jp() -> bytes:
    return with_address("gate-test-enable.json", "aiko.tanaka@contoso.com")


# --- request smuggling: the length said two ways ----------------------------------------------------------------


def raw_request(url: str, head: str, body: bytes = b"") -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize(
    "framing",
    ["Content-Length: 5\nTransfer-Encoding: chunked\n", "Transfer-Encoding: chunked\nContent-Length: 0\n"],
    ids=["CL then TE", "TE then CL"],
)
@pytest.mark.parametrize("path", ["/api/dataverse/gate", "/api/dataverse/events", "/api/policy", "/api/health"])
def test_a_request_whose_length_is_said_two_ways_is_refused(api, framing, path):
    client, c = api
    before = ledger_snapshot(c)
    body = fixture_bytes_jp()
    chunked = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    head = (f"POST {path} HTTP/1.1\nHost: orgguard\nx-orgguard-key: {KEYS['contoso-jp']}\n"
            f"Authorization: Bearer {ADMIN_TOKEN}\nContent-Type: application/json\n{framing}")  # fmt: skip
    answer = raw_request(str(client.base_url), head, chunked)
    status_line, _, rest = answer.partition(b"\r\n")
    assert b" 400 " in status_line, answer[:300]
    assert b"application/problem+json" in rest.lower() and b"connection: close" in rest.lower()
    assert ledger_snapshot(c) == before


@pytest.mark.parametrize(
    ("headers", "says"),
    [
        ([("content-length", "2"), ("transfer-encoding", "chunked")], "both Content-Length and Transfer-Encoding"),
        ([("content-length", "2"), ("content-length", "2")], "more than once"),
        ([("content-length", "+2")], "whole number"),
        ([("transfer-encoding", "gzip, chunked")], "Transfer-Encoding"),
        ([("transfer-encoding", "chunked"), ("transfer-encoding", "identity")], "Transfer-Encoding"),
    ],
    ids=["CL and TE", "CL twice, agreeing", "CL with a sign", "a coding before chunked", "TE twice"],
)
def test_every_ambiguous_framing_is_refused_before_any_route(tmp_path, headers, says):
    """What reaches the app (Azure's host, or a server that lets it through) is judged by one middleware."""
    with installed(container(tmp_path)) as c:
        before = ledger_snapshot(c)
        for path in ("/api/dataverse/gate", "/api/dataverse/events", "/api/policy", "/api/health"):
            r = asgi("POST", path, headers=[*headers, ("x-orgguard-key", KEYS["contoso-jp"])], content=b"{}")
            assert r.status_code == 400 and says in r.json()["detail"], (path, r.text)
            assert r.headers["connection"] == "close"
        assert ledger_snapshot(c) == before


# --- a failed read-back from an org ---------------------------------------------------------------------------


SECRETS_IN_ERRORS = [
    RuntimeError(
        "DefaultAzureCredential failed to retrieve a token: ManagedIdentityCredential: "
        "client_secret=Zx9~secretvalue access_token=eyJ0eXAiOiJKV1QiLCJhbGciOi"
    ),
    __import__("shared.dataverse.port").dataverse.port.DataverseError(
        "Bearer eyJ0eXAiOiJKV1QiLCJhbGciOi is expired", status=401, code="0x80072560"
    ),
    TimeoutError("read timed out after sending Authorization: Bearer eyJ0eXAiOiJKV1QiLCJhbGciOi"),
]


@pytest.mark.parametrize("error", SECRETS_IN_ERRORS, ids=["azure-identity", "dataverse 401", "timeout"])
def test_a_failed_read_back_is_503_org_unavailable_without_credential_details(tmp_path, error, caplog):
    def failing_read_back(org, mailbox_id):
        raise error

    c = container(tmp_path)
    c.intake.read_back = failing_read_back
    with api_client(c) as client:
        before = ledger_snapshot(c)
        headers = {"x-orgguard-key": KEYS["contoso-jp"], "x-ms-dynamics-msg-size-exceeded": "true"}
        event = client.post("/api/dataverse/events", content=fixture_bytes_named("event-size-exceeded.json"),
                            headers=headers)  # fmt: skip
        body = is_problem(event, 503)
        assert body["title"] == "Org unavailable" and "contoso-jp" in body["detail"]
        gate = client.post("/api/dataverse/gate", content=fixture_bytes_named("event-size-exceeded.json"),
                           headers=headers)  # fmt: skip
        assert gate.status_code == 409 and gate.json()["degraded"] is True
        for text in (event.text, gate.text, caplog.text):
            assert "eyJ0eXAi" not in text and "secretvalue" not in text and "Bearer" not in text
        assert ledger_snapshot(c) == before


def fixture_bytes_named(name: str) -> bytes:
    from tests.factories import fixture_bytes

    return fixture_bytes(name)


# --- cursors ------------------------------------------------------------------------------------------------------


def test_an_edited_or_foreign_cursor_is_refused(api, tmp_path):
    client, c = api
    for i in range(4):
        c.service.handle_claim(claim("contoso-jp", op=f"page-{i}"))
    page = client.get("/api/cases", params={"limit": 1}, headers=ADMIN).json()
    cursor = page["next"]
    assert cursor and client.get("/api/cases", params={"limit": 1, "cursor": cursor}, headers=ADMIN).status_code == 200
    body, _, tag = cursor.rpartition(".")
    other = container(tmp_path / "other")  # another deployment's ledger signs with its own secret
    other.service.handle_claim(claim("contoso-na", op="other-owner"))
    for i in range(3):
        other.service.handle_claim(claim("contoso-jp", op=f"other-{i}"))
    foreign = other.ledger.cases(__import__("shared.domain.model").domain.model.CaseQuery(limit=1)).next
    other.close()
    tampered = {
        "a character of the position changed": ("A" if body[0] != "A" else "B") + body[1:] + "." + tag,
        "unsigned, as cursors used to be": body,
        "the tag of another cursor": body + "." + foreign.rpartition(".")[2],
        "another deployment's cursor": foreign,
        "empty tag": body + ".",
        "huge": "x" * 5000 + "." + tag,
    }
    for what, bad in tampered.items():
        r = client.get("/api/cases", params={"limit": 1, "cursor": bad}, headers=ADMIN)
        assert r.status_code == 400, what
        assert "cursor" in r.json()["detail"], what


# --- policy documents that explode --------------------------------------------------------------------------------


def test_put_policy_refuses_a_bomb_with_422_and_keeps_the_version(api):
    from tests.unit.test_documents import HOSTILE, MERGE_BOMB

    client, c = api
    version = client.get("/api/policy", headers=ADMIN).json()["version"]
    body = is_problem(client.put("/api/policy", content=MERGE_BOMB.encode(), headers=ADMIN), 422)
    assert "nodes" in body["errors"][0]["message"]
    for text in HOSTILE.values():
        if len(text.encode()) <= 256 * 1024:  # larger ones are refused by the body limit, 413
            assert client.put("/api/policy", content=text.encode(), headers=ADMIN).status_code == 422
    assert client.get("/api/policy", headers=ADMIN).json()["version"] == version
    assert c.ledger.verify_audit().ok
