"""The `orgguard` command as an operator uses it: exit codes, --json, and what it changes."""

from __future__ import annotations

import json
import sqlite3

import pytest
from typer.testing import CliRunner

from shared import bootstrap
from shared.cli import app
from tests.factories import HOLDING_POLICY, claim, container

runner = CliRunner()


@pytest.fixture
def installed(tmp_path):
    c = container(tmp_path, HOLDING_POLICY)
    c.service.handle_claim(claim("contoso-na", op="1"))
    held = c.service.handle_claim(claim("contoso-jp", op="2"))
    bootstrap.install(c)
    yield c, held.case_id
    bootstrap.install(None)
    c.close()


def test_policy_validate_exit_codes(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text(HOLDING_POLICY)
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 0\ndefault: explode\nrules: 5\n")
    assert runner.invoke(app, ["policy", "validate", str(good)]).exit_code == 0
    result = runner.invoke(app, ["policy", "validate", str(bad), "--json"])
    assert result.exit_code == 1
    assert len(json.loads(result.stdout)["errors"]) >= 2
    assert runner.invoke(app, ["policy", "validate", str(tmp_path / "missing.yaml")]).exit_code == 2


def test_cases_list_show_and_approve_by_prefix(installed):
    c, case_id = installed
    listed = json.loads(runner.invoke(app, ["cases", "list", "--state", "held", "--json"]).stdout)
    assert [item["id"] for item in listed["items"]] == [case_id]
    shown = runner.invoke(app, ["cases", "show", case_id[:8]])
    assert shown.exit_code == 0 and "contoso-jp" in shown.stdout
    refused = runner.invoke(app, ["cases", "approve", case_id[:8], "--reason", "  "])
    assert refused.exit_code == 1
    assert c.service.case(case_id).state.value == "held"
    approved = runner.invoke(app, ["cases", "approve", case_id[:8], "--reason", "moved to Tokyo", "--json"])
    assert approved.exit_code == 0 and json.loads(approved.stdout)["decision"]["effect"] == "override"
    assert runner.invoke(app, ["cases", "deny", case_id, "--reason", "too late"]).exit_code == 1
    assert runner.invoke(app, ["cases", "show", "nope"]).exit_code == 1


def test_policy_explain_records_nothing(installed):
    c, _ = installed
    before = c.ledger.verify_audit().entries
    result = runner.invoke(
        app, ["policy", "explain", "--mailbox", "Aiko.Tanaka@Contoso.com", "--claimant", "contoso-jp", "--json"]
    )
    assert result.exit_code == 0 and json.loads(result.stdout)["effect"] == "hold"
    assert c.ledger.verify_audit().entries == before
    assert (
        runner.invoke(app, ["policy", "explain", "--mailbox", "not an address", "--claimant", "contoso-jp"]).exit_code
        == 1
    )


def test_audit_verify_fails_when_history_is_edited(installed, tmp_path):
    assert runner.invoke(app, ["audit", "verify"]).exit_code == 0
    db = sqlite3.connect(tmp_path / "ledger.db")
    db.execute("UPDATE audit SET actor = 'someone else' WHERE seq = 2")
    db.commit()
    db.close()
    result = runner.invoke(app, ["audit", "verify", "--json"])
    assert result.exit_code == 1 and json.loads(result.stdout)["ok"] is False


def test_register_is_idempotent_and_refuses_plain_http(tmp_path):
    from sandbox.server import running
    from tests.factories import registry

    plain = ["register", "--org", "contoso-na", "--url", "http://orgguard.example.com"]
    assert runner.invoke(app, plain).exit_code == 2
    with running(mailboxes=5, loopback_webhooks=True) as base:
        c = container(tmp_path)
        c.orgs = registry(base)
        bootstrap.install(c)
        try:
            orgs = ["--org", "contoso-na", "--org", "contoso-jp"]
            args = ["register", *orgs, "--url", "http://127.0.0.1:7071", "--json"]
            first = json.loads(runner.invoke(app, args).stdout)
            again = json.loads(runner.invoke(app, args).stdout)
            assert [r["org"] for r in first] == ["contoso-na", "contoso-jp"] and all(r["created"] for r in first)
            assert all(not r["created"] and not r["updated"] and r["unchanged"] for r in again)
            assert runner.invoke(app, ["register", "--org", "contoso-xx", "--url", "https://x.example"]).exit_code == 1
        finally:
            bootstrap.install(None)
            c.close()
