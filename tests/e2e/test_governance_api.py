"""Exemptions, the compliance report and the policy impact over a real socket, every bad input included."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from functions.http_api import create_api
from shared import bootstrap
from shared.domain.compliance import SweepCompliance
from shared.domain.jobs import Job, JobKind, JobState
from shared.ledger.port import job_ledger
from tests.factories import (
    ADMIN_TOKEN,
    AIKO,
    BLOCKING_POLICY,
    HOLDING_POLICY,
    KEYS,
    claim,
    container,
    easyauth_principal,
    fixture_bytes,
    ledger_snapshot,
)
from tests.serving import serve

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
TOMORROW = (datetime.now(UTC).date() + timedelta(days=1)).isoformat()
GOOD = {"mailbox": AIKO.address, "reason": "moves to Tokyo", "ticket": "CHG-1001", "expires": TOMORROW}


@pytest.fixture
def api(tmp_path):
    c = container(tmp_path, BLOCKING_POLICY)
    c.service.handle_claim(claim("contoso-na", op="seed-owner"))  # NA owns Aiko's mailbox
    bootstrap.install(c)
    with serve(create_api()) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield client, c
    bootstrap.install(None)
    c.close()


@pytest.fixture
def easy(tmp_path):
    c = container(tmp_path, HOLDING_POLICY, auth="easyauth")
    bootstrap.install(c)
    with serve(create_api()) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield client, c
    bootstrap.install(None)
    c.close()


def as_role(*roles: str) -> dict[str, str]:
    return {"x-ms-client-principal": easyauth_principal("someone@contoso.com", *roles)}


def snapshot(c) -> tuple[object, ...]:
    return (*ledger_snapshot(c), c.ledger.exemptions().version)


# --- exemptions ---------------------------------------------------------------------------------------


def test_an_admin_adds_lists_and_removes_an_exemption(api):
    client, _ = api
    r = client.post("/api/exemptions", json=GOOD, headers=ADMIN)
    assert r.status_code == 201, r.text
    added = r.json()
    assert added["scope"] == "mailbox" and added["mailbox"] == AIKO.address and added["state"] == "active"
    assert (added["ticket"], added["expires"], added["created_by"], added["version"]) == (
        "CHG-1001",
        TOMORROW,
        "local-admin",
        1,
    )
    listed = client.get("/api/exemptions", headers=ADMIN).json()
    assert listed["version"] == 1 and [e["id"] for e in listed["items"]] == [added["id"]]
    assert client.get("/api/exemptions?state=removed", headers=ADMIN).json()["items"] == []
    r = client.delete(f"/api/exemptions/{added['id']}", params={"reason": "back in Seattle"}, headers=ADMIN)
    assert r.status_code == 200 and r.json()["state"] == "removed" and r.json()["removed_reason"] == "back in Seattle"
    again = client.delete(f"/api/exemptions/{added['id']}", headers=ADMIN)
    assert again.status_code == 409 and again.json()["state"] == "removed"
    assert client.get("/api/exemptions?state=active", headers=ADMIN).json()["items"] == []
    assert client.get("/api/exemptions", headers=ADMIN).json()["version"] == 2
    verify = client.get("/api/audit/verify", headers=ADMIN).json()
    assert verify["ok"]


def test_each_kind_of_subject_is_taken_as_it_is_named(api):
    client, _ = api
    bodies = [
        {"domain": "Contoso.CO.JP"},
        {"user": "aiko@contoso.onmicrosoft.com"},
        {"orgs": ["contoso-na", "contoso-eu"]},
    ]
    views = [
        client.post("/api/exemptions", json={**b, "reason": "r", "ticket": "t", "expires": TOMORROW}, headers=ADMIN)
        for b in bodies
    ]
    assert [v.status_code for v in views] == [201, 201, 201]
    assert views[0].json()["domain"] == "contoso.co.jp"
    assert views[2].json()["orgs"] == ["contoso-eu", "contoso-na"] and "claims between" in views[2].json()["what"]


def test_an_exempt_claim_passes_the_gate_as_audit_naming_the_exemption(api):
    client, _ = api
    added = client.post("/api/exemptions", json=GOOD, headers=ADMIN).json()
    r = client.post(
        "/api/dataverse/gate",
        content=fixture_bytes("gate-test-enable.json"),
        headers={"content-type": "application/json", "x-orgguard-key": KEYS["contoso-jp"]},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["effect"] == "audit" and body["exemption"] == added["id"] and "CHG-1001" in body["explanation"]
    case = client.get(f"/api/cases/{body['case']}", headers=ADMIN).json()
    assert case["decision"]["exemption"] == added["id"] and case["actions"] == []


def test_two_admins_adding_the_same_exemption_at_once_add_it_once(api):
    client, c = api
    start = threading.Barrier(6)

    def one(i: int) -> httpx.Response:
        start.wait()
        return client.post("/api/exemptions", json={**GOOD, "ticket": f"CHG-{i}"}, headers=ADMIN)

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(one, range(6)))
    assert sorted(a.status_code for a in answers) == [201, 409, 409, 409, 409, 409]
    winner = next(a.json() for a in answers if a.status_code == 201)
    refused = next(a.json() for a in answers if a.status_code == 409)
    assert refused["exemption"] == winner["id"] and "exempt already" in refused["detail"]
    assert c.ledger.exemptions().version == 1


REFUSED = [
    # body changes, status, field or path fragment, detail fragment
    ({"mailbox": None}, 400, "", "give exactly one of mailbox, domain, user, orgs"),
    ({"domain": "contoso.com"}, 400, "", "not mailbox and domain"),
    ({"tenant": "x"}, 400, "tenant", "Extra inputs"),
    ({"mailbox": "nobody"}, 400, "mailbox", "exactly one '@'"),
    ({"mailbox": "aiko\u202e@contoso.com"}, 400, "mailbox", "invisible"),
    ({"mailbox": None, "domain": "*.contoso.com"}, 400, "domain", "not a domain"),
    ({"mailbox": None, "orgs": ["contoso-na"]}, 400, "orgs", "exactly two"),
    ({"mailbox": None, "orgs": ["contoso-na", "contoso-na", "contoso-jp"]}, 400, "orgs", "at most 2"),
    ({"mailbox": None, "orgs": ["contoso-na", "nowhere"]}, 400, "orgs", "not a registered org"),
    ({"mailbox": None, "user": "Aiko Tanaka"}, 400, "user", "'@'"),
    ({"reason": ""}, 400, "reason", "at least 1"),
    ({"reason": "why\x00"}, 400, "reason", "control"),
    ({"ticket": "CHG\n1"}, 400, "ticket", "control"),
    ({"ticket": "T" * 101}, 400, "ticket", "at most 100"),
    ({"expires": "2020-01-01"}, 400, "expires", "in the past"),
    ({"expires": "next week"}, 400, "expires", "like 2026-12-31"),
    ({"expires": "2026-02-30"}, 400, "expires", "not a date"),
    ({"expires": "2999-01-01"}, 400, "expires", "366 days"),
    ({"expires": 20261231}, 400, "expires", "string"),
]


@pytest.mark.parametrize(("change", "status", "field", "fragment"), REFUSED)
def test_a_bad_exemption_is_refused_and_changes_nothing(api, change, status, field, fragment):
    client, c = api
    before = snapshot(c)
    body = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    r = client.post("/api/exemptions", json=body, headers=ADMIN)
    assert r.status_code == status, r.text
    problem = r.json()
    assert r.headers["content-type"].startswith("application/problem+json")
    assert fragment in problem["detail"], problem
    assert field in (problem.get("field") or problem["detail"])
    assert snapshot(c) == before


def test_bad_requests_to_list_and_remove_are_refused(api):
    client, c = api
    added = client.post("/api/exemptions", json=GOOD, headers=ADMIN).json()
    before = snapshot(c)
    assert client.get("/api/exemptions?state=ended", headers=ADMIN).status_code == 400
    assert client.delete("/api/exemptions/no-such-id", headers=ADMIN).status_code == 404
    assert client.delete(f"/api/exemptions/{added['id'][:8]}", headers=ADMIN).status_code == 404  # ids whole here
    r = client.delete(f"/api/exemptions/{added['id']}", params={"reason": "x\x1b[2J"}, headers=ADMIN)
    assert r.status_code == 400 and "control" in r.json()["detail"]
    assert client.post("/api/exemptions", content=b"{not json", headers=ADMIN).status_code == 400
    assert client.post("/api/exemptions", json=GOOD).status_code == 401
    assert snapshot(c) == before


def test_readers_see_exemptions_and_only_admins_change_them(easy):
    client, _ = easy
    reader, admin = as_role("OrgGuard.Reader"), as_role("OrgGuard.Admin")
    assert client.get("/api/exemptions", headers=reader).status_code == 200
    assert client.post("/api/exemptions", json=GOOD, headers=reader).status_code == 403
    assert client.post("/api/exemptions", json=GOOD, headers=as_role("OrgGuard.Approver")).status_code == 403
    added = client.post("/api/exemptions", json=GOOD, headers=admin)
    assert added.status_code == 201 and added.json()["created_by"] == "someone@contoso.com"
    assert client.delete(f"/api/exemptions/{added.json()['id']}", headers=reader).status_code == 403


# --- the compliance report ------------------------------------------------------------------------


def a_finished_sweep(c, apply: bool = False) -> Job:
    tally = SweepCompliance(apply=apply)
    tally.add(["contoso-na", "contoso-jp"], "default", "block", None)
    doc = tally.doc({"contoso-na": 10, "contoso-jp": 5}, mailboxes=14, cases_by_org={}, cases={})
    job = Job.start(JobKind.SWEEP, {"orgs": []}, actor="test", apply=apply)
    done = Job(job.id, JobKind.SWEEP, JobState.DONE, job.params, "test", job.created_at, job.updated_at,
               result={"compliance": doc})  # fmt: skip
    return job_ledger(c.ledger).save_job(done)


def test_the_compliance_report_shows_the_last_sweep_the_cases_waiting_and_the_trend(api):
    client, c = api
    empty = client.get("/api/reports/compliance", headers=ADMIN).json()
    assert empty["last_sweep"] is None and empty["trend"] == []
    assert {r["org"] for r in empty["orgs"]} == {"contoso-na", "contoso-jp", "contoso-eu"}
    c.service.handle_claim(claim("contoso-jp", op="competing"))  # blocked: no held case under this policy
    first, second = a_finished_sweep(c), a_finished_sweep(c, apply=True)
    doc = client.get("/api/reports/compliance?sweeps=5", headers=ADMIN).json()
    assert doc["last_sweep"]["sweep"] in {first.id, second.id} and len(doc["trend"]) == 2
    na = next(r for r in doc["orgs"] if r["org"] == "contoso-na")
    assert na["mailboxes"] == 10 and na["conflict"] + na["compliant"] == 10
    assert next(r for r in doc["rules"] if r["rule"] == "default")
    assert len(client.get("/api/reports/compliance?sweeps=1", headers=ADMIN).json()["trend"]) == 1
    assert doc["exemptions"]["active"] == 0


@pytest.mark.parametrize("sweeps", ["0", "101", "ten", "-1"])
def test_a_bad_trend_length_is_refused(api, sweeps):
    client, _ = api
    r = client.get(f"/api/reports/compliance?sweeps={sweeps}", headers=ADMIN)
    assert r.status_code == 400 and "sweeps" in r.json()["detail"]


# --- the impact of a policy change ------------------------------------------------------------------


CANDIDATE = """
version: 2
default: override
rules: []
"""


def test_the_impact_of_a_candidate_policy_is_answered_and_nothing_is_recorded(api):
    client, c = api
    c.service.handle_claim(claim("contoso-jp", op="competing"))  # blocked under the policy in force
    before = (snapshot(c), c.service.policy_text())
    r = client.post("/api/policy/impact?days=7", content=CANDIDATE, headers=ADMIN)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["recorded"] is False and doc["days"] == 7 and doc["candidate"]["version"] == 2
    (changed,) = doc["claims"]["items"]
    assert (changed["before"]["effect"], changed["after"]["effect"]) == ("block", "override")
    assert "the mailbox moves to contoso-jp" in changed["outcome"]
    as_json = client.post(
        "/api/policy/impact", json={"version": 2, "default": "override"}, headers=ADMIN
    )  # JSON is YAML
    assert as_json.status_code == 200 and as_json.json()["claims"]["changed"] == 1
    assert (snapshot(c), c.service.policy_text()) == before


@pytest.mark.parametrize(
    ("body", "query", "status", "fragment"),
    [
        (b"version: 2\nrules: [{id: a, effect: {gate: block}}]\n", "", 422, "says nothing for"),
        (b"version: 2\ndefault: explode\n", "", 422, "unknown effect"),
        (b"", "", 422, "empty"),
        (b"\xff\xfe", "", 422, "not UTF-8"),
        (CANDIDATE.encode(), "?days=0", 400, "days"),
        (CANDIDATE.encode(), "?days=366", 400, "days"),
        (CANDIDATE.encode(), "?days=soon", 400, "days"),
    ],
)
def test_a_bad_candidate_or_window_is_refused(api, body, query, status, fragment):
    client, c = api
    before = snapshot(c)
    r = client.post(f"/api/policy/impact{query}", content=body, headers=ADMIN)
    assert r.status_code == status and fragment in str(r.json()), r.text
    assert snapshot(c) == before


def test_a_reader_may_ask_for_the_impact_and_the_report(easy):
    client, _ = easy
    reader = as_role("OrgGuard.Reader")
    assert client.post("/api/policy/impact", content=CANDIDATE, headers=reader).status_code == 200
    assert client.get("/api/reports/compliance", headers=reader).status_code == 200
    assert client.post("/api/policy/impact", content=CANDIDATE).status_code == 401


# --- the tenant's environments ------------------------------------------------------------------------


def test_the_tenants_environments_are_listed_with_the_org_each_is_registered_as(tmp_path):
    from sandbox.server import running

    with running(port=0, mailboxes=5, orgs=4) as sandbox_url:
        c = container(tmp_path, BLOCKING_POLICY, discovery_url=f"{sandbox_url}/discovery")
        bootstrap.install(c)
        try:
            with serve(create_api()) as url, httpx.Client(base_url=url, timeout=30) as client:
                doc = client.get("/api/discovery", headers=ADMIN).json()
                found = {e["name"]: e for e in doc["environments"]}
                assert doc["discovery"] == f"{sandbox_url}/discovery"
                assert found["contoso-na"]["registered_as"] == "contoso-na" and found["contoso-na"]["registered"]
                assert not found["contoso-org4"]["registered"] and found["contoso-org4"]["type"] == "trial"
                assert client.get("/api/discovery").status_code == 401
        finally:
            bootstrap.install(None)
            c.close()


def test_a_discovery_service_that_fails_is_502_saying_why(tmp_path):
    c = container(tmp_path, BLOCKING_POLICY, discovery_url="http://127.0.0.1:9/discovery")
    bootstrap.install(c)
    try:
        with serve(create_api()) as url, httpx.Client(base_url=url, timeout=30) as client:
            r = client.get("/api/discovery", headers=ADMIN)
            assert r.status_code == 502 and "cannot reach the discovery service" in r.json()["detail"]
            assert r.headers["content-type"].startswith("application/problem+json")
    finally:
        bootstrap.install(None)
        c.close()
