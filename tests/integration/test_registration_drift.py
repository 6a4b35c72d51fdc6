"""Drift of OrgGuard's own registration, found against the sandbox's orgs over their Web API.

Someone with the privileges disables the gate step, deletes the events step, points an endpoint elsewhere
or sets another key: ``orgguard register --check`` says so per org and exits 1, the sweep reports it, health
shows the gate off (from the last check, within its second), and ``orgguard register`` puts it right.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from functions.console import app
from shared import bootstrap
from shared.domain.drift import DriftKind, GateState, Part
from tests.factories import HOLDING_POLICY, container, registry

pytestmark = pytest.mark.sandbox
runner = CliRunner()
ORGGUARD = "http://127.0.0.1:9"  # what the endpoints point at (nothing is called in these tests)
ADMIN = {"Authorization": "Bearer someone-else"}  # an org admin, not OrgGuard
API = "/orgs/{org}/api/data/v9.2/"


SANDBOX_SEED = {"mailboxes": 5, "loopback_webhooks": True}


@pytest.fixture
def installed(base_url: str, tmp_path: Path) -> Iterator[bootstrap.Container]:
    httpx.post(f"{base_url}/_sandbox/reset").raise_for_status()
    c = container(tmp_path, HOLDING_POLICY)
    c.orgs = registry(base_url)
    c.service.orgs = c.orgs
    asyncio.run(c.register(c.orgs.names, ORGGUARD))
    bootstrap.install(c)
    yield c
    bootstrap.install(None)
    c.close()


def step_id(base_url: str, org: str, name: str) -> str:
    rows = httpx.get(
        f"{base_url}{API.format(org=org)}sdkmessageprocessingsteps",
        params={"$select": "sdkmessageprocessingstepid,name", "$filter": f"name eq '{name}'"},
        headers=ADMIN,
    ).json()["value"]
    return str(rows[0]["sdkmessageprocessingstepid"])


def change(base_url: str, org: str, entity_set: str, row_id: str, values: dict[str, Any] | None) -> None:
    url = f"{base_url}{API.format(org=org)}{entity_set}({row_id})"
    answer = httpx.delete(url, headers=ADMIN) if values is None else httpx.patch(url, json=values, headers=ADMIN)
    assert answer.status_code == 204, answer.text


def check(*names: str, url: str = ORGGUARD) -> tuple[int, list[dict[str, Any]]]:
    args = ["register", "--check", *(a for n in names for a in ("--org", n)), "--url", url, "--json"]
    result = runner.invoke(app, args)
    return result.exit_code, json.loads(result.stdout) if result.stdout.strip() else []


GATE_STEP = "OrgGuard: mailbox Update (gate)"
EVENTS_STEP = "OrgGuard: mailbox Update (events)"


def test_a_fresh_registration_is_as_registered_everywhere(installed: bootstrap.Container):
    code, found = check("contoso-na", "contoso-jp", "contoso-eu")
    assert code == 0, found
    assert [(f["org"], f["ok"], f["gate"], f["events"]) for f in found] == [
        ("contoso-na", True, "enabled", "enabled"),
        ("contoso-jp", True, "enabled", "enabled"),
        ("contoso-eu", True, "enabled", "enabled"),
    ]


def test_a_disabled_gate_step_and_a_deleted_events_step_are_found_and_register_repairs_them(
    installed: bootstrap.Container, base_url: str
):
    gate = step_id(base_url, "contoso-jp", GATE_STEP)
    change(base_url, "contoso-jp", "sdkmessageprocessingsteps", gate, {"statecode": 1, "statuscode": 2})
    change(base_url, "contoso-jp", "sdkmessageprocessingsteps", step_id(base_url, "contoso-jp", EVENTS_STEP), None)
    code, found = check("contoso-na", "contoso-jp")
    assert code == 1
    na, jp = found
    assert na["ok"] and not jp["ok"]
    assert (jp["gate"], jp["events"]) == ("off", "off")
    kinds = {(d["part"], d["record"], d["kind"]) for d in jp["drift"]}
    assert kinds == {
        ("gate", f"sdkmessageprocessingstep:{GATE_STEP}", "disabled"),
        ("events", f"sdkmessageprocessingstep:{EVENTS_STEP}", "missing"),
    }
    assert jp["repair"] == f"orgguard register --org contoso-jp --url {ORGGUARD}"
    told = runner.invoke(app, ["register", "--check", "--org", "contoso-jp", "--url", ORGGUARD])
    assert told.exit_code == 1 and "Traceback" not in told.output
    assert f"gate: sdkmessageprocessingstep:{GATE_STEP} disabled" in told.stderr
    assert f"repair: orgguard register --org contoso-jp --url {ORGGUARD}" in told.stderr
    assert runner.invoke(app, ["register", "--org", "contoso-jp", "--url", ORGGUARD]).exit_code == 0
    assert check("contoso-jp")[0] == 0  # register put it right


def test_an_endpoint_pointed_elsewhere_a_changed_filter_and_another_key_are_changes(
    installed: bootstrap.Container, base_url: str
):
    rows = httpx.get(
        f"{base_url}{API.format(org='contoso-na')}serviceendpoints",
        params={"$select": "serviceendpointid,name"},
        headers=ADMIN,
    ).json()["value"]
    gate_endpoint = next(r["serviceendpointid"] for r in rows if r["name"] == "OrgGuard gate")
    change(base_url, "contoso-na", "serviceendpoints", gate_endpoint, {"url": "https://elsewhere.example/hook"})
    change(
        base_url,
        "contoso-na",
        "sdkmessageprocessingsteps",
        step_id(base_url, "contoso-na", EVENTS_STEP),
        {"filteringattributes": "testemailconfigurationscheduled"},
    )
    code, (na,) = check("contoso-na")
    assert code == 1
    details = {d["record"]: d for d in na["drift"]}
    assert details["serviceendpoint:OrgGuard gate"]["kind"] == "changed"
    assert "https://elsewhere.example/hook" in details["serviceendpoint:OrgGuard gate"]["detail"]
    assert details[f"sdkmessageprocessingstep:{EVENTS_STEP}"]["part"] == "events"
    assert "filteringattributes" in details[f"sdkmessageprocessingstep:{EVENTS_STEP}"]["detail"]
    # another key in the orgs file than the one registered: the fingerprint says so, the key never shows
    installed.orgs = registry(base_url, keys={"contoso-na": "a-new-key-0123456789"})
    installed.service.orgs = installed.orgs
    _, (na,) = check("contoso-na")
    keyed = [d for d in na["drift"] if "webhook key" in d["detail"]]
    assert keyed and "a-new-key" not in json.dumps(na)


def test_an_org_that_cannot_be_read_is_unknown_not_as_registered(installed: bootstrap.Container, base_url: str):
    httpx.put(f"{base_url}/_sandbox/settings", json={"org": "contoso-eu", "fail": {"status": 503, "count": 50}})
    try:
        code, (eu,) = check("contoso-eu")
    finally:
        httpx.put(f"{base_url}/_sandbox/settings", json={"org": "contoso-eu", "fail": None})
    assert code == 1 and eu["ok"] is False and eu["gate"] == "unknown" and "HTTP 503" in eu["error"]


def test_register_and_check_refuse_a_port_dataverse_never_calls_for_a_real_org(installed: bootstrap.Container):
    real = registry("https://contoso-na.crm.dynamics.com")
    installed.orgs = real
    for args in (["register"], ["register", "--check"]):
        result = runner.invoke(app, [*args, "--org", "contoso-na", "--url", "https://orgguard.example.com:8443"])
        assert result.exit_code == 2, result.output
        assert "ports 80 and 443" in result.stderr and "8443" in result.stderr


def test_health_shows_a_disabled_gate_step_from_the_last_check_within_its_second(
    installed: bootstrap.Container, base_url: str
):
    from functions.http_api import create_api
    from tests.serving import serve

    with serve(create_api()) as api:
        before = httpx.get(f"{api}/api/health").json()["checks"]["registration"]
        assert before["orgs"]["contoso-jp"]["reason"] == "not checked yet" and before["advisory"] is True
        gate = step_id(base_url, "contoso-jp", GATE_STEP)
        change(base_url, "contoso-jp", "sdkmessageprocessingsteps", gate, {"statecode": 1, "statuscode": 2})
        asyncio.run(installed.refresh_registration())  # what the housekeeping timer does
        started = time.monotonic()
        answer = httpx.get(f"{api}/api/health")
        assert time.monotonic() - started < 1.0
    assert answer.status_code == 200  # an org's registration is not this instance's health
    registration = answer.json()["checks"]["registration"]
    assert registration["ok"] is False
    jp = registration["orgs"]["contoso-jp"]
    assert (jp["ok"], jp["gate"], jp["events"], jp["drift"]) == (False, "off", "enabled", 1)
    assert jp["age_s"] < 60 and jp["checked_at"]
    assert registration["orgs"]["contoso-na"]["gate"] == "enabled"
    assert installed.service.registrations.gate("contoso-jp", installed.service.clock()) is GateState.OFF


def test_the_sweep_reports_the_registration_of_each_org_it_sweeps(installed: bootstrap.Container, base_url: str):
    gate = step_id(base_url, "contoso-eu", GATE_STEP)
    change(base_url, "contoso-eu", "sdkmessageprocessingsteps", gate, None)
    jobs = installed.jobs()
    _, result = asyncio.run(jobs.run_sweep(jobs.start_sweep([], apply=False, actor="test")))
    doc = result.doc()
    assert doc["registration_drift"] == 1
    eu = next(r for r in doc["registration"] if r["org"] == "contoso-eu")
    assert eu["gate"] == "off" and eu["drift"][0]["kind"] == DriftKind.MISSING.value
    assert eu["drift"][0]["part"] == Part.GATE.value
    printed = runner.invoke(app, ["sweep"])
    assert "OrgGuard's registration in contoso-eu is not as registered" in printed.stdout


def test_a_check_is_one_request_per_org_for_service_protection(installed: bootstrap.Container, base_url: str):
    """Its five queries go in one ``$batch``: one request against the org's window, five operations."""
    httpx.delete(f"{base_url}/_sandbox/requests").raise_for_status()
    gate = step_id(base_url, "contoso-jp", GATE_STEP)
    answer = httpx.patch(
        f"{base_url}{API.format(org='contoso-jp')}sdkmessageprocessingsteps({gate})",
        json={"statecode": 1, "statuscode": 2},
        headers={**ADMIN, "If-Match": "*"},
    )
    assert answer.status_code == 204, answer.text
    httpx.delete(f"{base_url}/_sandbox/requests").raise_for_status()
    found = asyncio.run(installed.check_registration(["contoso-na", "contoso-jp"], ORGGUARD))
    served = httpx.get(f"{base_url}/_sandbox/requests").json()
    assert [(served[o]["http"], served[o]["requests"]) for o in ("contoso-na", "contoso-jp")] == [(1, 5), (1, 5)]
    assert [(r.org, r.ok) for r in found] == [("contoso-na", True), ("contoso-jp", False)]
    assert [d.kind for d in found[1].drift] == [DriftKind.DISABLED]
