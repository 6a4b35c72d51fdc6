"""The `orgguard` command as an operator uses it on the local ledger: exit codes, --json, and what it changes."""

from __future__ import annotations

import json
import sqlite3
from importlib.metadata import version

import click
import pytest
import typer
from typer.testing import CliRunner

from functions.console import app
from shared import bootstrap
from shared.domain.model import ActionStatus, CaseState, MailboxKey
from shared.domain.policy import PolicyError
from tests.factories import AIKO, HOLDING_POLICY, claim, container, ledger_snapshot

runner = CliRunner()
UNKNOWN_ORG_POLICY = HOLDING_POLICY.replace(
    "rules: []", "rules:\n  - id: jp-wins\n    effect: override\n    when: {claimant: [contoso-xx]}"
)


@pytest.fixture
def installed(tmp_path):
    c = container(tmp_path, HOLDING_POLICY)
    c.service.handle_claim(claim("contoso-na", op="1"))
    held = c.service.handle_claim(claim("contoso-jp", op="2"))
    bootstrap.install(c)
    yield c, held.case_id
    bootstrap.install(None)
    c.close()


def test_version_names_the_installed_package():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"orgguard {version('orgguard')}"


def test_policy_validate_exit_codes(installed, tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text(HOLDING_POLICY)
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 0\ndefault: explode\nrules: 5\n")
    assert runner.invoke(app, ["policy", "validate", str(good)]).exit_code == 0
    result = runner.invoke(app, ["policy", "validate", str(bad), "--json"])
    assert result.exit_code == 1
    assert len(json.loads(result.stdout)["errors"]) >= 2
    assert runner.invoke(app, ["policy", "validate", str(tmp_path / "missing.yaml")]).exit_code == 2


def test_policy_validate_refuses_what_put_policy_refuses(installed, tmp_path):
    """One set of checks: an org name that is not registered fails both, with the same errors."""
    c, _ = installed
    file = tmp_path / "unknown-org.yaml"
    file.write_text(UNKNOWN_ORG_POLICY)
    with pytest.raises(PolicyError) as refused:
        c.service.save_policy(UNKNOWN_ORG_POLICY, actor="test")
    result = runner.invoke(app, ["policy", "validate", str(file), "--json"])
    assert result.exit_code == 1
    assert json.loads(result.stdout)["errors"] == refused.value.errors
    assert any("contoso-xx" in e["message"] for e in refused.value.errors)
    assert c.service.policy_text()[0] == 1  # validating saved nothing


def test_cases_list_show_and_approve_by_prefix(installed):
    c, case_id = installed
    listed = json.loads(runner.invoke(app, ["cases", "list", "--state", "held", "--json"]).stdout)
    assert [item["id"] for item in listed["items"]] == [case_id]
    shown = runner.invoke(app, ["cases", "show", case_id[:8]])
    assert shown.exit_code == 0 and "contoso-jp" in shown.stdout
    before = ledger_snapshot(c)
    refused = runner.invoke(app, ["cases", "approve", case_id[:8], "--reason", "  "])
    assert refused.exit_code == 2 and "reason is required" in refused.stderr  # bad usage, one line
    assert ledger_snapshot(c) == before and c.service.case(case_id).state.value == "held"
    approved = runner.invoke(app, ["cases", "approve", case_id[:8], "--reason", "moved to Tokyo", "--json"])
    assert approved.exit_code == 0 and json.loads(approved.stdout)["decision"]["effect"] == "override"
    again = runner.invoke(app, ["cases", "deny", case_id, "--reason", "too late"])
    assert again.exit_code == 1 and "only held cases" in again.stderr and "Traceback" not in again.output
    missing = runner.invoke(app, ["cases", "show", "nope"])
    assert missing.exit_code == 1 and missing.stderr.strip() == "error: no case starts with 'nope'"


def test_cases_show_names_the_owner_when_claimed_and_the_current_owner(installed):
    c, case_id = installed
    c.service.designate_owner(AIKO, "contoso-eu", actor="admin", reason="Aiko moved to Berlin")
    shown = runner.invoke(app, ["cases", "show", case_id[:8]])
    assert shown.exit_code == 0
    lines = [line.strip() for line in shown.stdout.splitlines()]
    claimed = next(line for line in lines if line.startswith("owner when claimed"))
    current = next(line for line in lines if line.startswith("current owner"))
    assert "contoso-na" in claimed and "contoso-eu" not in claimed
    assert "contoso-eu" in current and "(admin)" in current
    assert [line for line in lines if line.startswith("owner ") and line != claimed] == []  # never a bare "owner"
    doc = json.loads(runner.invoke(app, ["cases", "show", case_id, "--json"]).stdout)
    assert doc["owner"] == "contoso-na" and doc["current_owner"]["owner"] == "contoso-eu"


def test_text_from_the_ledger_is_shown_as_it_is(installed):
    """A reason is data: rich's markup in it ("[/red]") is printed, not interpreted (or crashed on)."""
    _, case_id = installed
    reason = "Aiko [bold]moved[/red] to Tokyo [/]"
    assert runner.invoke(app, ["cases", "approve", case_id[:8], "--reason", reason]).exit_code == 0
    shown = runner.invoke(app, ["cases", "show", case_id[:8]])
    assert shown.exit_code == 0 and reason in shown.stdout
    missing = runner.invoke(app, ["cases", "show", "[/red]"])
    assert missing.exit_code == 1 and missing.stderr.strip() == "error: no case starts with '[/red]'"


def test_cases_list_state_open_is_held_decided_or_failed(installed):
    c, held = installed
    from tests.factories import mailbox_guid

    def contested(name: str) -> str:
        key = MailboxKey(f"{name}@contoso.com")
        c.service.handle_claim(claim("contoso-na", key=key, op=f"{name}-1", mailbox_id=mailbox_guid("contoso-na", key)))
        outcome = c.service.handle_claim(
            claim("contoso-jp", key=key, op=f"{name}-2", mailbox_id=mailbox_guid("contoso-jp", key))
        )
        return c.service.approve(outcome.case_id, actor="t", reason="ok").id

    decided, failed, applied = contested("decided"), contested("failed"), contested("applied")
    for action in c.service.case(failed).actions:
        c.ledger.record_attempt(action.id, ActionStatus.FAILED, "403 from the org")
    for action in c.service.case(applied).actions:
        c.ledger.record_attempt(action.id, ActionStatus.APPLIED)
    assert c.service.case(failed).state is CaseState.FAILED and c.service.case(applied).state is CaseState.APPLIED
    listed = json.loads(runner.invoke(app, ["cases", "list", "--state", "open", "--json"]).stdout)
    assert {i["id"] for i in listed["items"]} == {held, decided, failed}
    dates = [i["created_at"] for i in listed["items"]]
    assert dates == sorted(dates, reverse=True)


def test_actions_retry_makes_a_failed_action_pending_again(installed):
    c, case_id = installed
    c.service.approve(case_id, actor="t", reason="ok")
    action = c.service.case(case_id).actions[0]
    c.ledger.record_attempt(action.id, ActionStatus.FAILED, "403 from the org")
    result = runner.invoke(app, ["actions", "retry", action.id, "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout) == {"action": action.id, "status": "pending"}
    case = c.service.case(case_id)
    assert next(a for a in case.actions if a.id == action.id).status is ActionStatus.PENDING
    assert case.state is CaseState.DECIDED
    assert runner.invoke(app, ["actions", "retry", "no-such-action"]).exit_code == 1


def test_mailbox_show_tells_the_owner_claims_and_cases(installed):
    _, case_id = installed
    doc = json.loads(runner.invoke(app, ["mailbox", "show", "Aiko.Tanaka@Contoso.com", "--json"]).stdout)
    assert doc["mailbox"] == AIKO.address and doc["owner"] == "contoso-na" and doc["how"] == "first-claim"
    assert doc["since"] and [c["org"] for c in doc["claims"]] == ["contoso-jp", "contoso-na"]
    assert [c["id"] for c in doc["cases"]] == [case_id]
    shown = runner.invoke(app, ["mailbox", "show", AIKO.address])
    assert shown.exit_code == 0 and "contoso-na since" in shown.stdout and case_id[:8] in shown.stdout
    bad = runner.invoke(app, ["mailbox", "show", "not an address"])
    assert bad.exit_code == 2 and bad.stderr.count("\n") == 1


def test_policy_explain_records_nothing(installed):
    c, _ = installed
    before = c.ledger.verify_audit().entries
    result = runner.invoke(
        app, ["policy", "explain", "--mailbox", "Aiko.Tanaka@Contoso.com", "--claimant", "contoso-jp", "--json"]
    )
    assert result.exit_code == 0 and json.loads(result.stdout)["effect"] == "hold"
    assert c.ledger.verify_audit().entries == before
    bad = runner.invoke(app, ["policy", "explain", "--mailbox", "not an address", "--claimant", "contoso-jp"])
    assert bad.exit_code == 2


def test_audit_verify_fails_when_history_is_edited(installed, tmp_path):
    assert runner.invoke(app, ["audit", "verify"]).exit_code == 0
    db = sqlite3.connect(tmp_path / "ledger.db")
    db.execute("UPDATE audit SET actor = 'someone else' WHERE seq = 2")
    db.commit()
    db.close()
    result = runner.invoke(app, ["audit", "verify", "--json"])
    assert result.exit_code == 1 and json.loads(result.stdout)["ok"] is False


def test_boolean_options_are_plain_flags():
    """`--apply`, `--json`, `--sandbox`: no `--x/--no-x` pair anywhere (serve keeps a hidden `--no-sandbox`)."""
    pairs = []

    def walk(command: click.Command, path: str) -> None:
        for param in command.params:
            if isinstance(param, click.Option) and param.secondary_opts and not param.hidden:
                pairs.append(f"{path} {'/'.join(param.opts + param.secondary_opts)}")
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, f"{path} {name}")

    walk(typer.main.get_command(app), "orgguard")
    assert pairs == []
    assert "--no-sandbox" not in runner.invoke(app, ["serve", "--help"]).stdout


def test_register_is_idempotent_and_refuses_plain_http(tmp_path):
    from sandbox.server import running
    from tests.factories import registry

    plain = ["register", "--org", "contoso-na", "--url", "http://orgguard.example.com"]
    assert runner.invoke(app, plain).exit_code == 2
    sneaky = ["register", "--org", "contoso-na", "--url", "http://127.0.0.1.example.com"]
    assert runner.invoke(app, sneaky).exit_code == 2  # not loopback, whatever it starts with
    with running(mailboxes=5, loopback_webhooks=True) as base:
        c = container(tmp_path)
        c.orgs = registry(base)
        bootstrap.install(c)
        try:
            orgs = ["--org", "contoso-na", "--org", "contoso-jp"]
            args = ["register", *orgs, "--url", "http://127.0.0.1:8071", "--json"]
            first = json.loads(runner.invoke(app, args).stdout)
            again = json.loads(runner.invoke(app, args).stdout)
            assert [r["org"] for r in first] == ["contoso-na", "contoso-jp"] and all(r["created"] for r in first)
            assert all(not r["created"] and not r["updated"] and r["unchanged"] for r in again)
            assert runner.invoke(app, ["register", "--org", "contoso-xx", "--url", "https://x.example"]).exit_code == 1
        finally:
            bootstrap.install(None)
            c.close()
