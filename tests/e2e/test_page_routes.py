"""The page's routes over a real socket: the page and its files, the Easy Auth redirect, /api/me, the offline
API docs with their bearer scheme, a mailbox's timeline, and each org's row read live from the sandbox."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
import pytest

from functions import page_routes
from sandbox.server import free_port, running
from shared.config.orgs import parse_orgs
from shared.dataverse.clients import ClientPool
from shared.service.org_rows import OrgRow, read_rows
from tests.factories import (
    ADMIN_TOKEN,
    AIKO,
    HOLDING_POLICY,
    KEYS,
    ORG_IDS,
    claim,
    container,
    easyauth_principal,
    registry,
)
from tests.hosting import api_client

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
STATIC = Path(page_routes.__file__).resolve().parent / "static"


def principal(name: str, *roles: str) -> dict[str, str]:
    return {"x-ms-client-principal": easyauth_principal(name, *roles)}


@pytest.fixture
def api(tmp_path):
    c = container(tmp_path, HOLDING_POLICY)
    with api_client(c) as client:
        yield client, c


@pytest.fixture
def easy(tmp_path):
    c = container(tmp_path, HOLDING_POLICY, auth="easyauth")
    with api_client(c) as client:
        yield client, c


# --- the page and its files ---------------------------------------------------------------


def test_the_page_is_served_with_its_own_scripts_only(api):
    client, _ = api
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert re.search(r'<meta name="orgguard-auth" content="token"\s*/?>', r.text)
    assert '<script type="module" src="/static/js/main.js"></script>' in r.text
    policy = r.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "http://" not in r.text and "https://" not in r.text  # nothing from elsewhere


def test_every_module_the_page_imports_is_served(api):
    """Follow the import graph from main.js: a missing or misnamed module would leave the page blank."""
    client, _ = api
    seen: set[str] = set()
    todo = ["/static/js/main.js"]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        r = client.get(path)
        assert r.status_code == 200, path
        assert r.headers["content-type"].startswith(("text/javascript", "application/javascript")), path
        base = path.rsplit("/", 1)[0]
        for target in re.findall(r'from "(\.{1,2}/[^"]+)"', r.text):
            parts = [*base.split("/"), *target.split("/")]
            resolved: list[str] = []
            for part in parts:
                if part == "..":
                    resolved.pop()
                elif part != ".":
                    resolved.append(part)
            todo.append("/".join(resolved))
    on_disk = {f"/static/{p.relative_to(STATIC).as_posix()}" for p in (STATIC / "js").rglob("*.js")}
    assert seen == on_disk, "a module on disk is not reachable from main.js, or the reverse"
    assert client.get("/static/app.css").headers["content-type"].startswith("text/css")


def test_static_files_refuse_paths_outside_their_folder(api):
    client, _ = api
    assert client.get("/static/nothing-here.js").status_code == 404
    assert client.get("/static/../page_routes.py").status_code == 404
    assert client.get("/static/%2e%2e/page_routes.py").status_code == 404


def test_the_static_files_ship_in_the_package():
    """setuptools package data and .funcignore must both let functions/static through to Azure."""
    import tomllib

    root = STATIC.parents[1]
    data = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "static/**/*" in data["functions"]
    ignored = [line.strip() for line in (root / ".funcignore").read_text().splitlines() if line.strip()]
    assert not any(line.startswith(("functions/static", "static", "*.js", "*.css", "*.html")) for line in ignored)
    assert "functions" not in ignored


# --- signing in behind App Service Authentication ------------------------------------------


def test_easy_auth_sends_a_browser_without_a_session_to_the_platform_login(easy):
    client, _ = easy
    r = client.get("/", follow_redirects=False)
    assert r.status_code == 302
    assert r.headers["location"] == "/.auth/login/aad?post_login_redirect_uri=/"
    signed_in = client.get("/", headers=principal("ayumi@contoso.com", "OrgGuard.Reader"))
    assert signed_in.status_code == 200 and 'content="easyauth"' in signed_in.text
    # The API itself still answers 401 problem+json (a script gets an answer it can read, not a login page).
    api = client.get("/api/cases", follow_redirects=False)
    assert api.status_code == 401 and api.headers["content-type"].startswith("application/problem+json")


def test_the_local_page_needs_no_redirect(api):
    client, _ = api
    assert client.get("/", follow_redirects=False).status_code == 200


# --- /api/me ------------------------------------------------------------------------------


def test_me_for_the_local_admin(api):
    client, _ = api
    me = client.get("/api/me", headers=ADMIN).json()
    assert me == {
        "name": "local-admin",
        "role": "admin",
        "roles": ["OrgGuard.Reader", "OrgGuard.Approver", "OrgGuard.Admin"],
        "auth": "token",
        "orgs": list(ORG_IDS),
    }


@pytest.mark.parametrize(
    ("roles", "role", "count"),
    [
        (("OrgGuard.Reader",), "reader", 1),
        (("OrgGuard.Approver",), "approver", 2),
        (("OrgGuard.Reader", "OrgGuard.Admin"), "admin", 3),
    ],
)
def test_me_behind_easy_auth_names_the_highest_role(easy, roles, role, count):
    client, _ = easy
    me = client.get("/api/me", headers=principal("ayumi@contoso.com", *roles)).json()
    assert me["name"] == "ayumi@contoso.com" and me["role"] == role and len(me["roles"]) == count
    assert me["auth"] == "easyauth"


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer wrong"}, 403),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, 401),
        ({"Authorization": f"Bearer {ADMIN_TOKEN}x"}, 403),
    ],
)
def test_me_refuses_without_the_token(api, headers, status):
    client, _ = api
    r = client.get("/api/me", headers=headers)
    assert r.status_code == status and r.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"x-ms-client-principal": "%%%"}, 401),
        (principal("someone@contoso.com"), 403),  # signed in, but no OrgGuard role
        (principal("someone@contoso.com", "Directory.Reader"), 403),
        ({"Authorization": f"Bearer {ADMIN_TOKEN}"}, 401),  # the local token means nothing behind Easy Auth
    ],
)
def test_me_behind_easy_auth_refuses_without_a_role(easy, headers, status):
    client, _ = easy
    assert client.get("/api/me", headers=headers).status_code == status


# --- the API docs, offline -------------------------------------------------------------------


def test_api_docs_load_swagger_ui_from_the_app_itself(api):
    client, _ = api
    r = client.get("/api/docs")
    assert r.status_code == 200
    assert "/static/vendor/swagger-ui/swagger-ui-bundle.js" in r.text
    assert "/static/vendor/swagger-ui/swagger-ui.css" in r.text
    assert "cdn" not in r.text.lower() and "https://" not in r.text
    assert '"validatorUrl": null' in r.text  # no badge from validator.swagger.io
    js = client.get("/static/vendor/swagger-ui/swagger-ui-bundle.js")
    assert js.status_code == 200 and "SwaggerUIBundle" in js.text
    assert client.get("/static/vendor/swagger-ui/swagger-ui.css").status_code == 200


def test_swagger_ui_is_the_pinned_npm_release():
    import json

    root = STATIC.parents[1]
    pinned = json.loads((root / "package.json").read_text())["devDependencies"]["swagger-ui-dist"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", pinned), "pin an exact version"
    installed = json.loads((root / "node_modules" / "swagger-ui-dist" / "package.json").read_text())["version"]
    assert installed == pinned
    copied = (STATIC / "vendor" / "swagger-ui" / "swagger-ui-bundle.js").read_bytes()
    assert copied == (root / "node_modules" / "swagger-ui-dist" / "swagger-ui-bundle.js").read_bytes()


def test_api_docs_without_their_files_say_how_to_get_them(api, tmp_path, monkeypatch):
    client, _ = api
    monkeypatch.setattr(page_routes, "SWAGGER", tmp_path / "nothing")
    r = client.get("/api/docs")
    assert r.status_code == 503 and r.headers["content-type"].startswith("application/problem+json")
    assert "make static" in r.json()["detail"]


def test_openapi_declares_the_bearer_scheme_on_the_guarded_routes(api):
    client, _ = api
    doc = client.get("/api/openapi.json").json()
    assert doc["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": doc["components"]["securitySchemes"]["bearer"]["description"],
    }
    paths = doc["paths"]
    for path, method in [
        ("/api/cases", "get"),
        ("/api/cases/{case_id}/approve", "post"),
        ("/api/me", "get"),
        ("/api/mailboxes/{address}/orgs", "get"),
        ("/api/sweeps", "post"),
    ]:
        assert paths[path][method]["security"] == [{"bearer": []}], path
    assert "security" not in paths["/api/health"]["get"]
    assert "security" not in paths["/api/dataverse/gate"]["post"]  # Dataverse sends its org key instead


# --- a mailbox's timeline ------------------------------------------------------------------


def test_timeline_tells_who_owned_the_mailbox_when(api):
    client, c = api
    c.service.handle_claim(claim("contoso-na", op="na-first"))  # uncontested: NA becomes the owner
    c.service.handle_claim(claim("contoso-jp", op="jp-claims"))  # held for an approver
    (held,) = [case for case in c.service.mailbox(AIKO).cases if case.state.value == "held"]
    c.service.approve(held.id, actor="ayumi@contoso.com", reason="moved to Tokyo")

    story = client.get(f"/api/mailboxes/{AIKO.address.upper()}/timeline", headers=ADMIN).json()
    assert story["mailbox"] == AIKO.address and story["owner"] == "contoso-jp"
    owners = [(s["owner"], s["how"], s["until"] is None) for s in story["owners"]]
    assert owners == [("contoso-na", "first-claim", False), ("contoso-jp", "approval", True)]
    assert story["owners"][0]["until"] == story["owners"][1]["since"]
    kinds = [e["type"] for e in story["events"]]
    assert kinds.count("claim") == 2 and kinds.count("owner") == 2
    assert [e["at"] for e in story["events"]] == sorted(e["at"] for e in story["events"])
    approval = next(e for e in story["events"] if e["type"] == "owner" and e["owner"] == "contoso-jp")
    assert approval["actor"] == "ayumi@contoso.com" and approval["previous"] == "contoso-na"
    assert story["truncated"] is False


@pytest.mark.parametrize(
    ("address", "status"), [("not-an-address", 400), ("a@b", 400), ("x" * 300 + "@contoso.com", 400)]
)
def test_timeline_and_orgs_refuse_a_bad_address(api, address, status):
    client, _ = api
    for tail in ("timeline", "orgs"):
        r = client.get(f"/api/mailboxes/{address}/{tail}", headers=ADMIN)
        assert r.status_code == status and r.headers["content-type"].startswith("application/problem+json")


def test_timeline_and_orgs_need_a_reader(easy):
    client, _ = easy
    for tail in ("timeline", "orgs"):
        assert client.get(f"/api/mailboxes/{AIKO.address}/{tail}").status_code == 401
        no_role = principal("x@contoso.com")
        assert client.get(f"/api/mailboxes/{AIKO.address}/{tail}", headers=no_role).status_code == 403
        reader = principal("x@contoso.com", "OrgGuard.Reader")
        assert client.get(f"/api/mailboxes/{AIKO.address}/timeline", headers=reader).status_code == 200


# --- each org's row, read live -----------------------------------------------------------------


@pytest.fixture
def live(tmp_path):
    """The API in front of the sandbox's three orgs, plus an org registered at a port nobody listens on."""
    with running(mailboxes=20, overlap=0.3) as sandbox_url:
        orgs = registry(sandbox_url)
        c = container(tmp_path, HOLDING_POLICY)
        c.orgs = orgs
        c.service.orgs = orgs
        with api_client(c, timeout=30) as client:
            yield client, c, sandbox_url


@pytest.mark.sandbox
def test_orgs_show_each_org_row_as_it_is_now(live):
    client, _, sandbox_url = live
    jp_admin = {"Authorization": "Bearer admin-of-contoso-jp"}
    row_url = f"{sandbox_url}/orgs/contoso-jp/api/data/v9.2/mailboxes(f1e2d3c4-b5a6-4978-8a9b-0c1d2e3f4a5b)"
    with httpx.Client(timeout=10) as org:
        assert org.patch(row_url, json={"actdeliverymethod": 2}, headers={**jp_admin, "If-Match": "*"}).is_success

    r = client.get("/api/mailboxes/ Aiko.Tanaka@CONTOSO.com /orgs", headers=ADMIN)
    assert r.status_code == 200
    doc = r.json()
    assert doc["mailbox"] == AIKO.address
    by_org = {row["org"]: row for row in doc["orgs"]}
    assert list(by_org) == list(ORG_IDS)
    jp = by_org["contoso-jp"]
    assert jp["found"] is True and jp["mailboxid"] == "f1e2d3c4-b5a6-4978-8a9b-0c1d2e3f4a5b"
    assert jp["actdeliverymethod"] == 2  # what the org holds now, not what the ledger remembers
    assert set(jp) >= {"orgmarkedasprimaryforexchangesync", "actstatus", "statecode", "emailaddress"}

    nobody = client.get("/api/mailboxes/nobody.here@contoso.com/orgs", headers=ADMIN).json()
    assert [row["found"] for row in nobody["orgs"]] == [False, False, False]


@pytest.mark.sandbox
def test_an_unreachable_or_slow_org_is_reported_and_the_others_still_answer(live):
    _, _, sandbox_url = live
    dead = parse_orgs(
        {
            "orgs": [
                *(
                    {"name": n, "id": i, "url": f"{sandbox_url}/orgs/{n}", "webhook_key": KEYS[n]}
                    for n, i in ORG_IDS.items()
                ),
                {
                    "name": "contoso-gone",
                    "id": "0b0b0b0b-0000-4000-8000-000000000001",
                    "url": f"http://127.0.0.1:{free_port()}/orgs/contoso-gone",
                    "webhook_key": "k" * 20,
                },
            ]
        },
        env={},
    )
    with httpx.Client(base_url=sandbox_url) as sandbox:
        sandbox.put("/_sandbox/settings", json={"org": "contoso-eu", "latency_ms": 3000}).raise_for_status()

    async def read() -> list:
        from shared.dataverse.port import RetryPolicy

        pool = ClientPool(RetryPolicy(attempts=1, timeout=2.0), client_id=None)
        try:
            return await read_rows(list(dead), AIKO, pool, deadline=1.0)
        finally:
            await pool.aclose()

    rows = {row.org: row.doc() for row in asyncio.run(read())}
    assert rows["contoso-na"]["found"] is True and rows["contoso-jp"]["found"] is True
    assert rows["contoso-eu"]["found"] is None and "no answer within 1 s" in rows["contoso-eu"]["error"]
    assert rows["contoso-gone"]["found"] is None and rows["contoso-gone"]["error"]


def test_orgs_answer_per_org_errors_through_the_api(api):
    """With no sandbox listening, every org is unreachable: the route still answers 200, one error per org."""
    client, c = api
    gone = f"http://127.0.0.1:{free_port()}"
    c.orgs = registry(gone)
    r = client.get(f"/api/mailboxes/{AIKO.address}/orgs", headers=ADMIN)
    assert r.status_code == 200
    assert all(row["found"] is None and row["error"] for row in r.json()["orgs"])


def test_org_row_doc_shapes():
    assert OrgRow("contoso-na").doc() == {"org": "contoso-na", "found": False}
    assert OrgRow("contoso-na", error="boom").doc() == {"org": "contoso-na", "found": None, "error": "boom"}
    found = OrgRow("contoso-na", row={"mailboxid": "m", "emailaddress": "a@b.com"}).doc()
    assert found["found"] is True and found["mailboxid"] == "m" and found["actstatus"] is None


def test_every_api_route_refuses_an_anonymous_caller_itself(easy):
    """Defence in depth behind App Service Authentication: should an anonymous request reach the app, every
    route but health and the schema refuses it on its own, and declares the bearer scheme."""
    client, _ = easy
    doc = client.get("/api/openapi.json").json()
    public = {("/api/health", "get")}
    keyed = {("/api/dataverse/gate", "post"), ("/api/dataverse/events", "post")}  # Dataverse's org key
    checked = 0
    for path, operations in doc["paths"].items():
        url = re.sub(r"\{address\}", "aiko.tanaka@contoso.com", path)
        url = re.sub(r"\{[^}]+\}", "00000000-0000-4000-8000-000000000000", url)
        for method, operation in operations.items():
            if (path, method) in public:
                continue
            if (path, method) not in keyed:
                assert operation.get("security") == [{"bearer": []}], f"{method} {path} declares no bearer scheme"
            r = client.request(method.upper(), url, json={})
            assert r.status_code == 401, f"{method.upper()} {path} answered {r.status_code} to nobody"
            checked += 1
    assert checked >= 20
