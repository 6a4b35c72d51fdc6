"""OrgGuard's HTTP API over a real socket: the gate, the event intake, the admin API, and every bad input."""

from __future__ import annotations

import base64
import json

import pytest

from tests.factories import (
    ADMIN_TOKEN,
    AIKO,
    HOLDING_POLICY,
    KEYS,
    claim,
    container,
    fixture,
    fixture_bytes,
    ledger_snapshot,
)
from tests.hosting import api_client

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def gate(client, body, key=KEYS["contoso-jp"], **headers):
    h = {"content-type": "application/json", **headers}
    if key is not None:
        h["x-orgguard-key"] = key
    return client.post("/api/dataverse/gate", content=body, headers=h)


def test_gate_blocks_a_competing_test_and_enable_with_problem_json(api):
    client, _ = api
    r = gate(client, fixture_bytes("gate-test-enable.json"))
    assert r.status_code == 409
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["effect"] == "block" and body["case"]
    assert "contoso-jp" in body["detail"] and "contoso-na" in body["detail"]
    case = client.get(f"/api/cases/{body['case']}", headers=ADMIN).json()
    assert case["mailbox"] == AIKO.address and case["claimant"] == "contoso-jp"
    assert case["actions"][0]["kind"] == "demote"


def test_gate_allows_act_set_to_none_without_recording(api):
    client, c = api
    before = ledger_snapshot(c)
    r = gate(client, fixture_bytes("gate-act-none.json"))
    assert r.status_code == 200 and r.json()["effect"] == "allow" and r.json()["case"] is None
    assert ledger_snapshot(c) == before


def test_gate_retry_of_the_same_operation_answers_the_same_case(api):
    client, _ = api
    first = gate(client, fixture_bytes("gate-test-enable.json")).json()
    second = gate(client, fixture_bytes("gate-test-enable.json")).json()
    assert second["case"] == first["case"] and second["duplicate"] is True


def test_events_intake_accepts_and_reports_duplicates(api):
    client, _ = api
    headers = {"x-orgguard-key": KEYS["contoso-jp"], "content-type": "application/json"}
    r1 = client.post("/api/dataverse/events", content=fixture_bytes("event-post-test-enable.json"), headers=headers)
    r2 = client.post("/api/dataverse/events", content=fixture_bytes("event-post-test-enable.json"), headers=headers)
    assert r1.status_code == 202 and r1.json()["duplicate"] is False and r1.json()["event"]
    assert r2.status_code == 202 and r2.json()["duplicate"] is True and r2.json()["event"] == r1.json()["event"]


def test_trimmed_event_whose_org_cannot_be_read_is_not_decided(api):
    client, c = api
    before = ledger_snapshot(c)
    r = client.post(
        "/api/dataverse/events",
        content=fixture_bytes("event-size-exceeded.json"),
        headers={"x-orgguard-key": KEYS["contoso-jp"], "x-ms-dynamics-msg-size-exceeded": "true"},
    )
    assert r.status_code == 503 and "mailbox back from contoso-jp" in r.json()["detail"]
    assert ledger_snapshot(c) == before


BAD_GATE_INPUTS = [
    pytest.param(b"{not json", KEYS["contoso-jp"], 400, id="malformed-json"),
    pytest.param(b"[1, 2]", KEYS["contoso-jp"], 400, id="json-array"),
    pytest.param(
        json.dumps({**fixture("gate-test-enable.json"), "Stage": "twenty"}).encode(),
        KEYS["contoso-jp"],
        400,
        id="wrong-type",
    ),
    pytest.param(
        json.dumps({**fixture("gate-test-enable.json"), "PrimaryEntityName": "contact"}).encode(),
        KEYS["contoso-jp"],
        400,
        id="not-a-mailbox",
    ),
    pytest.param(fixture_bytes("gate-test-enable.json"), None, 401, id="no-key"),
    pytest.param(fixture_bytes("gate-test-enable.json"), "wrong-key", 403, id="wrong-key"),
    pytest.param(fixture_bytes("gate-test-enable.json"), KEYS["contoso-na"], 403, id="key-of-another-org"),
    pytest.param(b"{" + b" " * (300 * 1024) + b"}", KEYS["contoso-jp"], 413, id="oversize"),
    pytest.param(
        json.dumps(_bad := fixture("gate-test-enable.json"))
        .replace("Aiko.Tanaka@Contoso.com", "not an address")
        .encode(),
        KEYS["contoso-jp"],
        400,
        id="strange-address",
    ),
    pytest.param(
        json.dumps(
            {**fixture("gate-test-enable.json"), "OrganizationId": "99999999-9999-4999-8999-999999999999"}
        ).encode(),
        KEYS["contoso-jp"],
        403,
        id="unknown-org",
    ),
]


@pytest.mark.parametrize(("body", "key", "status"), BAD_GATE_INPUTS)
def test_every_bad_gate_input_gets_a_clear_error_and_changes_nothing(api, body, key, status):
    client, c = api
    before = ledger_snapshot(c)
    r = gate(client, body, key=key)
    assert r.status_code == status, r.text
    problem = r.json()
    assert r.headers["content-type"].startswith("application/problem+json")
    assert problem["status"] == status and problem["detail"]
    assert ledger_snapshot(c) == before


def test_admin_api_needs_the_token_and_roles(api):
    client, _ = api
    assert client.get("/api/cases").status_code == 401
    assert client.get("/api/cases", headers={"Authorization": "Bearer nope"}).status_code == 403
    assert client.get("/api/cases", headers=ADMIN).status_code == 200
    assert client.get("/api/health").status_code == 200
    assert client.get("/api/openapi.json").json()["info"]["title"] == "OrgGuard"


def test_cases_page_with_cursors(api):
    client, c = api
    for i in range(5):
        c.service.handle_claim(claim("contoso-jp", op=f"page-{i}"))
    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/cases", params=params, headers=ADMIN).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next"]
        if not cursor:
            break
    assert len(seen) == len(set(seen)) == 5
    assert client.get("/api/cases", params={"cursor": "garbage!"}, headers=ADMIN).status_code == 400
    assert client.get("/api/cases", params={"state": "nonsense"}, headers=ADMIN).status_code == 400
    assert client.get("/api/cases", params={"org": "contoso-xx"}, headers=ADMIN).status_code == 404


def test_approve_over_http_and_mailbox_view(api):
    client, c = api
    c.service.save_policy(HOLDING_POLICY, actor="test")
    held = gate(client, fixture_bytes("gate-test-enable.json"))
    assert held.status_code == 409 and held.json()["effect"] == "hold"
    case_id = held.json()["case"]
    assert client.post(f"/api/cases/{case_id}/approve", json={}, headers=ADMIN).status_code == 400
    r = client.post(f"/api/cases/{case_id}/approve", json={"reason": "moved to JP"}, headers=ADMIN)
    assert r.status_code == 200 and r.json()["decision"]["effect"] == "override"
    view = client.get("/api/mailboxes/Aiko.Tanaka@CONTOSO.com", headers=ADMIN).json()
    assert view["owner"] == "contoso-jp" and view["cases"][0]["id"] == case_id
    assert client.post(f"/api/cases/{case_id}/deny", json={"reason": "x"}, headers=ADMIN).status_code == 409
    assert client.get("/api/mailboxes/not-an-address", headers=ADMIN).status_code == 400


def test_owner_designation_and_policy_routes(api):
    client, c = api
    r = client.put(f"/api/mailboxes/{AIKO.address}/owner", json={"org": "contoso-eu", "reason": "moved"}, headers=ADMIN)
    assert r.status_code == 202 and r.json()["claimant"] == "contoso-eu"
    assert (
        client.put(
            f"/api/mailboxes/{AIKO.address}/owner", json={"org": "nowhere", "reason": "x"}, headers=ADMIN
        ).status_code
        == 404
    )
    bad = client.put("/api/policy", content=b"version: 0\ndefault: explode\nrules: 5\n", headers=ADMIN)
    assert bad.status_code == 422 and len(bad.json()["errors"]) >= 2
    assert client.get("/api/policy", headers=ADMIN).json()["version"] == 1
    good = client.put("/api/policy", content=HOLDING_POLICY.encode(), headers=ADMIN)
    assert good.status_code == 200 and good.json()["version"] == 2
    before = ledger_snapshot(c)
    what_if = client.post(
        "/api/policy/evaluate", json={"mailbox": AIKO.address, "claimant": "contoso-jp"}, headers=ADMIN
    ).json()
    assert what_if["effect"] == "hold" and what_if["recorded"] is False
    assert ledger_snapshot(c) == before
    assert (
        client.post("/api/policy/evaluate", json={"mailbox": AIKO.address, "claimant": 5}, headers=ADMIN).status_code
        == 400
    )
    assert client.get("/api/audit/verify", headers=ADMIN).json()["ok"] is True


def test_easy_auth_principal_roles(tmp_path):
    def principal(*roles):
        doc = {
            "auth_typ": "aad",
            "name_typ": "name",
            "role_typ": "roles",
            "claims": [{"typ": "name", "val": "someone"}] + [{"typ": "roles", "val": r} for r in roles],
        }
        return {"x-ms-client-principal": base64.b64encode(json.dumps(doc).encode()).decode()}

    with api_client(container(tmp_path, auth="easyauth")) as client:
        assert client.get("/api/cases", headers=ADMIN).status_code == 401  # bearer means nothing there
        assert client.get("/api/cases", headers=principal("OrgGuard.Reader")).status_code == 200
        assert (
            client.put("/api/policy", content=b"version: 1\n", headers=principal("OrgGuard.Reader")).status_code == 403
        )
        assert client.get("/api/cases", headers=principal()).status_code == 403
        assert client.get("/api/cases", headers={"x-ms-client-principal": "%%%"}).status_code == 401
