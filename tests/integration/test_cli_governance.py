"""`orgguard exemptions`, `report` and `policy impact` on the local ledger and through the API (--url), with their
exit codes; the compliance a real sweep of the sandbox's orgs leaves behind, and its gauge."""

from __future__ import annotations

import asyncio
import csv
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from functions.console import app
from functions.http_api import create_api
from sandbox.server import running
from shared import bootstrap, telemetry
from shared.domain.model import CaseQuery, Effect
from tests.factories import ADMIN_TOKEN, AIKO, BLOCKING_POLICY, HOLDING_POLICY, claim, container, ledger_snapshot
from tests.jobs_support import ADMIN, API, row_for, wired
from tests.serving import serve

runner = CliRunner()
UNTIL = (datetime.now(UTC).date() + timedelta(days=7)).isoformat()


@pytest.fixture
def installed(tmp_path: Path) -> Iterator[bootstrap.Container]:
    c = container(tmp_path, BLOCKING_POLICY)
    c.service.handle_claim(claim("contoso-na", op="1"))
    bootstrap.install(c)
    yield c
    bootstrap.install(None)
    c.close()


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_exemptions_add_list_remove_on_the_ledger(installed):
    c = installed
    code, stdout, _ = run("exemptions", "add", "--mailbox", AIKO.address, "--reason", "Tokyo", "--ticket", "CHG-9",
                          "--expires", UNTIL, "--json")  # fmt: skip
    assert code == 0, stdout
    added = json.loads(stdout)
    assert added["mailbox"] == AIKO.address and added["created_by"].startswith("cli:")
    assert c.service.handle_claim(claim("contoso-jp", op="2")).effect is Effect.AUDIT
    code, stdout, _ = run("exemptions", "list")
    assert code == 0 and added["id"][:8] in stdout and "CHG-9" in stdout and "version 1" in stdout
    code, stdout, _ = run("exemptions", "remove", added["id"][:8], "--reason", "back home")
    assert code == 0 and "removed" in stdout
    assert c.service.handle_claim(claim("contoso-jp", op="3")).effect is Effect.BLOCK
    code, _, stderr = run("exemptions", "remove", added["id"])
    assert code == 1 and "removed already" in stderr


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (["--reason", "r", "--ticket", "t", "--expires", UNTIL], 2, "exactly one of"),
        (["--mailbox", "a@b.com", "--domain", "b.com", "--reason", "r", "--ticket", "t", "--expires", UNTIL], 2,
         "exactly one of"),
        (["--mailbox", "nobody", "--reason", "r", "--ticket", "t", "--expires", UNTIL], 2, "'@'"),
        (["--org", "contoso-na", "--reason", "r", "--ticket", "t", "--expires", UNTIL], 2, "exactly two"),
        (["--org", "contoso-na", "--org", "contoso-zz", "--reason", "r", "--ticket", "t", "--expires", UNTIL], 2,
         "not a registered org"),
        (["--domain", "contoso.com", "--reason", "r", "--ticket", "t", "--expires", "2020-01-01"], 2, "in the past"),
        (["--domain", "contoso.com", "--reason", "", "--ticket", "t", "--expires", UNTIL], 2, "reason is required"),
        (["--domain", "contoso.com", "--ticket", "t", "--expires", UNTIL], 2, "Missing option"),
    ],
)  # fmt: skip
def test_a_bad_exemption_exits_2_and_changes_nothing(installed, args, code, fragment):
    before = (ledger_snapshot(installed), installed.ledger.exemptions().version)
    got, _, stderr = run("exemptions", "add", *args)
    assert got == code and fragment in stderr, stderr
    assert (ledger_snapshot(installed), installed.ledger.exemptions().version) == before


def test_exemptions_list_and_remove_refuse_bad_usage(installed):
    assert run("exemptions", "list", "--state", "gone")[0] == 2
    code, _, stderr = run("exemptions", "remove", "no-such")
    assert code == 1 and "no exemption" in stderr


def test_policy_impact_prints_what_would_change_and_records_nothing(installed, tmp_path):
    c = installed
    c.service.handle_claim(claim("contoso-jp", op="2"))  # blocked under the policy in force
    candidate = tmp_path / "candidate.yaml"
    candidate.write_text("version: 2\ndefault: override\n")
    before = (ledger_snapshot(c), c.service.policy_text())
    code, stdout, _ = run("policy", "impact", str(candidate))
    assert code == 0 and "1 of 1 recent competing claim(s)" in stdout and "moves to contoso-jp" in stdout
    code, stdout, _ = run("policy", "impact", str(candidate), "--json", "--days", "3")
    assert code == 0 and json.loads(stdout)["days"] == 3
    assert (ledger_snapshot(c), c.service.policy_text()) == before
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 2\nrules: [{id: a, effect: {gate: block}}]\n")
    code, _, stderr = run("policy", "impact", str(bad))
    assert code == 2 and "says nothing for" in stderr
    assert run("policy", "impact", str(tmp_path / "missing.yaml"))[0] == 2
    assert run("policy", "impact", str(candidate), "--days", "0")[0] == 2


def test_report_as_a_table_json_and_csv(installed, tmp_path):
    out_file = tmp_path / "compliance.csv"
    code, stdout, _ = run("report", "--csv", str(out_file))
    assert code == 0 and "no sweep has run yet" in stdout and "contoso-na" in stdout
    with out_file.open(encoding="utf-8") as handle:
        found = list(csv.DictReader(handle))
    assert found[0].keys() >= {"scope", "name", "compliant", "conflict", "exempt", "held", "failed"}
    assert {r["name"] for r in found if r["scope"] == "org"} == {"contoso-na", "contoso-jp", "contoso-eu"}
    code, stdout, _ = run("report", "--json", "--sweeps", "3")
    assert code == 0 and json.loads(stdout)["last_sweep"] is None
    assert run("report", "--sweeps", "0")[0] == 2
    code, _, stderr = run("report", "--csv", str(tmp_path / "no" / "such" / "dir.csv"))
    assert code == 1 and "cannot write" in stderr


# --- through the API ----------------------------------------------------------------------------------


@pytest.fixture
def hosted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, bootstrap.Container]]:
    c = container(tmp_path, HOLDING_POLICY)
    c.service.handle_claim(claim("contoso-na", op="1"))
    bootstrap.install(c)
    monkeypatch.setenv("ORGGUARD_ADMIN_TOKEN", ADMIN_TOKEN)
    with serve(create_api()) as url:
        yield url, c
    bootstrap.install(None)
    c.close()


def test_the_governance_commands_through_the_api(hosted, tmp_path):
    url, c = hosted
    code, stdout, _ = run("exemptions", "add", "--org", "contoso-na", "--org", "contoso-jp", "--reason", "pilot",
                          "--ticket", "T-1", "--expires", UNTIL, "--json", "--url", url)  # fmt: skip
    assert code == 0, stdout
    added = json.loads(stdout)
    assert added["created_by"] == "local-admin"  # the API's caller, not the CLI's user
    code, _, stderr = run("exemptions", "add", "--org", "contoso-jp", "--org", "contoso-na", "--reason", "again",
                          "--ticket", "T-2", "--expires", UNTIL, "--url", url)  # fmt: skip
    assert code == 1 and "409" in stderr and "exempt already" in stderr
    assert c.service.handle_claim(claim("contoso-jp", op="2")).effect is Effect.AUDIT
    code, stdout, _ = run("exemptions", "list", "--json", "--url", url)
    assert code == 0 and json.loads(stdout)["items"][0]["id"] == added["id"]
    code, stdout, _ = run("exemptions", "remove", added["id"][:8], "--url", url)  # a prefix, resolved by the CLI
    assert code == 0 and "removed" in stdout
    candidate = tmp_path / "candidate.yaml"
    candidate.write_text("version: 2\ndefault: override\n")
    code, stdout, _ = run("policy", "impact", str(candidate), "--json", "--url", url)
    assert code == 0 and json.loads(stdout)["recorded"] is False
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 2\ndefault: explode\n")
    code, _, stderr = run("policy", "impact", str(bad), "--url", url)
    assert code == 2 and "422" in stderr
    code, stdout, _ = run("report", "--json", "--url", url)
    assert code == 0 and json.loads(stdout)["exemptions"]["removed"] == 1


# --- a real sweep's compliance -------------------------------------------------------------------------


SANDBOX_SEED = {"mailboxes": 40, "overlap": 0.4}


@pytest.mark.sandbox
def test_each_sweep_leaves_its_compliance_and_the_report_trends_it(sandbox, base_url, tmp_path, monkeypatch):
    c = wired(tmp_path, base_url, BLOCKING_POLICY)
    seen: list[tuple[float, dict[str, object]]] = []
    monkeypatch.setattr(telemetry, "gauge", lambda instrument, value, **kw: seen.append((value, kw)))
    jp = row_for(sandbox, "contoso-jp", "Aiko.Tanaka@Contoso.com")
    na = row_for(sandbox, "contoso-na", "Aiko.Tanaka@Contoso.com")
    for org, row in (("contoso-na", na), ("contoso-jp", jp)):  # Aiko syncs in both orgs, unknown to the ledger
        sandbox.patch(API.format(org=org) + f"mailboxes({row['mailboxid']})", json={"actdeliverymethod": 1},
                      headers={**ADMIN, "If-Match": "*"}).raise_for_status()  # fmt: skip
    from shared.service.exemptions import Exemptions

    Exemptions(c.service).add("mailbox", AIKO.address, reason="pilot", ticket="T-1", expires=UNTIL, actor="test")
    jobs = c.jobs()
    dry, result = asyncio.run(jobs.run_sweep(jobs.start_sweep([], apply=False, actor="test")))
    snapshot = dry.result["compliance"]
    aiko = next(f for f in result.conflicts if f["mailbox"] == AIKO.address)
    assert aiko["exemption"] is not None and aiko["effect"] == "audit"
    assert snapshot["totals"]["exempt"] >= 1 and snapshot["totals"]["mailboxes"] == result.keys
    na_row = snapshot["orgs"]["contoso-na"]
    assert na_row["mailboxes"] == result.rows_by_org["contoso-na"]
    assert na_row["compliant"] == na_row["mailboxes"] - na_row["conflict"] - na_row["exempt"]
    gauges = {(kw["org"], kw["status"]): value for value, kw in seen if "org" in kw}  # orgguard.compliance
    assert gauges[("contoso-na", "conflict")] == na_row["conflict"]
    assert gauges[("contoso-na", "compliant")] == na_row["compliant"]
    applied, _ = asyncio.run(jobs.run_sweep(jobs.start_sweep([], apply=True, actor="test")))
    after = applied.result["compliance"]["totals"]
    assert after["conflict"] < snapshot["totals"]["conflict"]  # the applied sweep settled what it could
    bootstrap.install(c)
    try:
        doc = json.loads(run("report", "--json")[1])
    finally:
        bootstrap.install(None)
    assert doc["last_sweep"]["sweep"] == applied.id and [p["sweep"] for p in doc["trend"]] == [dry.id, applied.id]
    assert doc["trend"][0]["conflict"] > doc["trend"][1]["conflict"]
    assert c.ledger.cases(CaseQuery()).items  # the applied sweep recorded its cases
    c.close()


def test_discovery_lists_and_registers_the_sandboxs_orgs(tmp_path, monkeypatch):
    """Every environment of the sandbox's tenant, which is registered, and registering two in one step."""
    with running(port=0, mailboxes=10, orgs=4, loopback_webhooks=True) as url:
        orgs = tmp_path / "orgs.yaml"
        orgs.write_text(f"# the orgs OrgGuard hears\norgs:\n  - name: contoso-na\n"
                        f"    id: 3f0e6c1a-5b7d-4e2a-9c11-2a6f0b8d4e01\n    url: {url}/orgs/contoso-na\n"
                        "    webhook_key: key-contoso-na-0123456789\n")  # fmt: skip
        for name, value in {"ORGGUARD_ORGS": str(orgs), "ORGGUARD_LEDGER": f"sqlite:///{tmp_path}/ledger.db",
                            "ORGGUARD_POLICY": str(tmp_path / "none"),
                            "ORGGUARD_DISCOVERY_URL": f"{url}/discovery"}.items():  # fmt: skip
            monkeypatch.setenv(name, value)
        bootstrap.install(None)
        code, stdout, _ = run("discover", "--json")
        assert code == 0, stdout
        found = {e["name"]: e for e in json.loads(stdout)["environments"]}
        assert set(found) == {"contoso-na", "contoso-jp", "contoso-eu", "contoso-org4"}
        assert found["contoso-na"]["registered_as"] == "contoso-na" and not found["contoso-org4"]["registered"]
        assert (found["contoso-eu"]["type"], found["contoso-org4"]["type"]) == ("sandbox", "trial")
        code, stdout, _ = run("discover")
        assert code == 0 and "1 registered" in stdout and "--register contoso-jp" in stdout
        code, stdout, stderr = run("discover", "--register", "contoso-org4", "--register", "Contoso-EU",
                                   "--url", "http://127.0.0.1:9")  # fmt: skip
        assert code == 0, stderr
        assert "contoso-org4: 7 created" in stdout
        text = orgs.read_text()
        assert text.startswith("# the orgs OrgGuard hears") and "type: trial" in text and "type: sandbox" in text
        assert oct(orgs.stat().st_mode & 0o777) == "0o600"
        endpoints = httpx.get(f"{url}/orgs/contoso-org4/api/data/v9.2/serviceendpoints",
                              headers={"Authorization": "Bearer an-admin"}).json()["value"]  # fmt: skip
        assert any("127.0.0.1:9" in (e.get("url") or "") for e in endpoints)
        bootstrap.install(None)
        code, stdout, _ = run("discover", "--json")
        registered = {e["name"]: e["registered_as"] for e in json.loads(stdout)["environments"]}
        assert registered["contoso-org4"] == "contoso-org4" and registered["contoso-jp"] is None
        assert run("discover", "--register", "contoso-org4", "--url", "http://127.0.0.1:9")[0] == 2
        assert run("discover", "--register", "nowhere", "--url", "http://127.0.0.1:9")[0] == 2
        assert run("discover", "--register", "contoso-jp")[0] == 2  # no --url
        assert run("discover", "--register", "contoso-jp", "--url", "http://orgguard.example.com")[0] == 2
        assert run("discover", "--discovery-url", "http://disco.example.com")[0] == 2
        code, _, stderr = run("discover", "--discovery-url", "http://127.0.0.1:9/discovery")
        assert code == 1 and "discovery service" in stderr
        bootstrap.install(None)


@pytest.mark.sandbox
def test_an_exempt_alerting_mailbox_is_not_repaired_by_the_sweep(sandbox, base_url, tmp_path):
    """S2 with an exemption on the mailbox: the sweep reports it exempt and writes nothing; without, it repairs."""
    from shared.service.exemptions import Exemptions
    from tests.integration.test_sweep import jp_fails_with_the_alert, policy_designating, sweep

    jp_fails_with_the_alert(sandbox)
    c = wired(tmp_path, base_url, policy_designating("contoso-jp"))
    added = Exemptions(c.service).add("mailbox", AIKO.address, reason="r", ticket="T", expires=UNTIL, actor="a")
    before = row_for(sandbox, "contoso-jp", "Aiko.Tanaka@Contoso.com")
    job, result = sweep(c, apply=True)
    aiko = next(f for f in result.conflicts if f["mailbox"] == AIKO.address)
    assert (aiko["effect"], aiko["exemption"], aiko["cases"]) == ("audit", added.id, [])
    assert row_for(sandbox, "contoso-jp", "Aiko.Tanaka@Contoso.com")["versionnumber"] == before["versionnumber"]
    assert job.result["compliance"]["totals"]["exempt"] >= 1
    Exemptions(c.service).remove(added.id, actor="a")
    _, result = sweep(c, apply=True)
    aiko = next(f for f in result.conflicts if f["mailbox"] == AIKO.address)
    assert aiko["effect"] == "override" and aiko["cases"] and aiko["exemption"] is None
    c.close()
