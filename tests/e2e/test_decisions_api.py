"""Deciding held cases over HTTP: 409 with the state a case is in now, bulk decisions, totals, the overview."""

from __future__ import annotations

import base64
import json
import threading
import uuid

import httpx
import pytest

from shared import bootstrap
from shared.domain.model import ActionStatus, MailboxKey, Origin
from tests.factories import ADMIN_TOKEN, HOLDING_POLICY, claim, container
from tests.hosting import api_client

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
PROBLEM = "application/problem+json"


def held_case(c: bootstrap.Container, n: int) -> str:
    key = MailboxKey(f"person{n}@contoso.com")
    c.service.handle_claim(claim("contoso-na", key=key, op=f"own-{uuid.uuid4()}"))
    outcome = c.service.handle_claim(claim("contoso-jp", key=key, op=f"op-{uuid.uuid4()}", origin=Origin.SERVICEBUS))
    assert outcome.case_id
    return outcome.case_id


@pytest.fixture
def api(tmp_path):
    c = container(tmp_path, policy=HOLDING_POLICY)
    with api_client(c, timeout=30, headers=ADMIN) as client:
        yield client, c


def test_approve_then_deny_answers_409_naming_the_state(api):
    client, c = api
    case = held_case(c, 1)
    ok = client.post(f"/api/cases/{case}/approve", json={"reason": "both admins agree"})
    assert ok.status_code == 200 and ok.json()["state"] == "decided"
    late = client.post(f"/api/cases/{case}/deny", json={"reason": "too late"})
    assert late.status_code == 409 and late.headers["content-type"].startswith(PROBLEM)
    assert late.json()["state"] == "decided" and "held" in late.json()["detail"]
    assert len(client.get(f"/api/cases/{case}").json()["actions"]) == 2


def test_concurrent_approve_and_deny_requests_one_wins(api):
    client, c = api
    case = held_case(c, 2)
    start = threading.Barrier(8)
    answers: list[httpx.Response] = []

    def click(i: int) -> None:
        start.wait()
        verb = "approve" if i % 2 else "deny"
        answers.append(client.post(f"/api/cases/{case}/{verb}", json={"reason": f"click {i}"}))

    threads = [threading.Thread(target=click, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = sorted(a.status_code for a in answers)
    assert codes == [200] + [409] * 7
    winner = next(a for a in answers if a.status_code == 200).json()["state"]
    assert {a.json()["state"] for a in answers if a.status_code == 409} == {winner}
    assert len(client.get(f"/api/cases/{case}").json()["actions"]) == 2


def test_bulk_approve_over_a_filter_counts_and_skips(api):
    client, c = api
    cases = [held_case(c, n) for n in range(10, 15)]
    client.post(f"/api/cases/{cases[0]}/deny", json={"reason": "decided first"})
    listing = client.get("/api/cases", params={"state": "held", "mailbox": "person1"}).json()
    assert listing["total"] == 4
    r = client.post(
        "/api/cases:bulk",
        json={"filter": {"state": "held", "mailbox": "person1"}, "decision": "approve", "reason": "ok"},
    )
    assert r.status_code == 200
    body = r.json()
    assert body["decided"] == 4 and sorted(body["cases"]) == sorted(cases[1:]) and body["more"] is False
    assert client.get("/api/cases", params={"state": "held"}).json()["total"] == 0
    again = client.post("/api/cases:bulk", json={"filter": {}, "decision": "deny", "reason": "nothing left"}).json()
    assert again["decided"] == 0


@pytest.mark.parametrize(
    "body",
    [
        {"filter": {}, "decision": "approve"},
        {"filter": {}, "decision": "approve", "reason": ""},
        {"filter": {}, "decision": "maybe", "reason": "x"},
        {"filter": {"state": "failed"}, "decision": "approve", "reason": "x"},
        {"filter": {"state": "nonsense"}, "decision": "approve", "reason": "x"},
        {"filter": {"org": "contoso-xx"}, "decision": "approve", "reason": "x"},
        {"filter": {"mailbox": "two@@contoso.com"}, "decision": "approve", "reason": "x"},
        {"filter": {"colour": "red"}, "decision": "approve", "reason": "x"},
        {"filter": {}, "decision": "approve", "reason": "x", "extra": 1},
        [],
    ],
)
def test_bulk_refuses_bad_bodies_and_changes_nothing(api, body):
    client, c = api
    case = held_case(c, 30)
    r = client.post("/api/cases:bulk", json=body)
    assert r.status_code in (400, 404) and r.headers["content-type"].startswith(PROBLEM)
    assert client.get(f"/api/cases/{case}").json()["state"] == "held"


def test_a_reader_cannot_bulk_decide(tmp_path):
    c = container(tmp_path, policy=HOLDING_POLICY, auth="easyauth")
    case = held_case(c, 40)
    principal = {"auth_typ": "aad", "claims": [{"typ": "roles", "val": "OrgGuard.Reader"}, {"typ": "name", "val": "r"}]}
    header = base64.b64encode(json.dumps(principal).encode()).decode()
    with api_client(c, headers={"x-ms-client-principal": header}) as client:
        r = client.post("/api/cases:bulk", json={"filter": {}, "decision": "approve", "reason": "x"})
        assert r.status_code == 403 and r.headers["content-type"].startswith(PROBLEM)
        assert client.get(f"/api/cases/{case}").json()["state"] == "held"


def test_case_list_takes_open_and_a_search_and_gives_a_total(api):
    client, c = api
    for n in range(7):
        held_case(c, 100 + n)
    page = client.get("/api/cases", params={"state": "open", "limit": 3}).json()
    assert page["total"] == 7 and len(page["items"]) == 3 and page["next"]
    rest = client.get("/api/cases", params={"state": "open", "limit": 5, "cursor": page["next"]}).json()
    assert len(rest["items"]) == 4 and rest["next"] is None and rest["total"] == 7
    assert client.get("/api/cases", params={"mailbox": "PERSON104"}).json()["total"] == 1
    assert client.get("/api/cases", params={"mailbox": "person104@contoso.com"}).json()["total"] == 1
    bad = client.get("/api/cases", params={"state": "opened"})
    assert bad.status_code == 400 and bad.headers["content-type"].startswith(PROBLEM)


def test_overview_counts_by_state_and_org_with_the_oldest_held(api):
    client, c = api
    first = held_case(c, 200)
    held_case(c, 201)
    body = client.get("/api/overview").json()
    assert body["counts"]["held"] == 2 and body["counts"]["open"] == 2 and body["counts"]["failed"] == 0
    assert body["by_org"]["contoso-jp"] == {"held": 2, "failed": 0, "open": 2}
    assert body["oldest_held"]["case"] == first and body["oldest_held"]["expires_at"]


def test_retrying_an_action_that_is_not_failed_is_409(api):
    client, c = api
    case = held_case(c, 300)
    decided = client.post(f"/api/cases/{case}/approve", json={"reason": "ok"}).json()
    action = decided["actions"][0]["id"]
    r = client.post(f"/api/actions/{action}/retry")
    assert r.status_code == 409 and r.json()["state"] == "pending"
    c.ledger.record_attempt(action, ActionStatus.FAILED, "403: not allowed")
    first = client.post(f"/api/actions/{action}/retry")
    assert first.status_code == 202 and first.json()["status"] == "pending"
    second = client.post(f"/api/actions/{action}/retry")
    assert second.status_code == 409 and second.json()["state"] == "pending"
    missing = client.post("/api/actions/no-such-action/retry")
    assert missing.status_code == 404
