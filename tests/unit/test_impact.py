"""The impact of a candidate policy: held cases, recent claims and ownerships decided both ways, nothing recorded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.domain.model import CaseQuery, DomainError, MailboxKey
from shared.domain.policy import PolicyError
from shared.service.exemptions import Exemptions
from shared.service.impact import policy_impact
from tests.factories import HOLDING_POLICY, claim, container

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
M1, M2, M3 = (MailboxKey(f"user{i}@contoso.com") for i in (1, 2, 3))

CANDIDATE = """
version: 2
default: hold
primary:
  - when: {mailbox.address: [user1@contoso.com, user3@contoso.com]}
    org: contoso-jp
rules:
  - id: designated
    effect: prefer-primary
  - id: eu-blocked
    when: {claimant: contoso-eu}
    effect: block
approval:
  approvers: [group:OrgGuard Approvers]
  on_expiry: override
"""


@pytest.fixture
def scene(tmp_path):
    c = container(tmp_path, HOLDING_POLICY, in_memory=True)
    clock = [NOW]
    c.service.clock = lambda: clock[0]
    for key in (M1, M2, M3):
        c.service.handle_claim(claim("contoso-na", key=key, op=f"own-{key}"))
    c.service.handle_claim(claim("contoso-jp", key=M1, op="jp-1"))
    c.service.handle_claim(claim("contoso-eu", key=M2, op="eu-2"))
    return c, clock


def snapshot(c):
    return (
        c.ledger.verify_audit().entries,
        [(x.id, x.state) for x in c.ledger.cases(CaseQuery(limit=500)).items],
        [c.ledger.mailbox(k).version for k in (M1, M2, M3)],
        c.service.policy_text(),
        c.ledger.exemptions().version,
    )


def test_held_cases_recent_claims_and_moves_are_reported_and_nothing_is_recorded(scene):
    c, _ = scene
    before = snapshot(c)
    doc = policy_impact(c.service, CANDIDATE, days=30)
    assert snapshot(c) == before and doc["recorded"] is False
    held = {i["mailbox"]: i for i in doc["held"]["items"]}
    assert held[M1.address]["after"]["effect"] == "override"
    assert held[M1.address]["outcome"] == "approved when decided again: the mailbox moves to contoso-jp"
    assert held[M2.address]["after"]["effect"] == "block" and held[M2.address]["outcome"].startswith("denied")
    assert doc["held"]["examined"] == 2 and doc["held"]["changed"] == 2
    claims = {i["mailbox"]: i for i in doc["claims"]["items"]}
    assert claims[M1.address]["before"]["effect"] == "hold" and claims[M1.address]["after"]["rule"] == "designated"
    assert doc["claims"]["examined"] == 2
    moves = {i["mailbox"]: i for i in doc["ownerships"]["items"]}
    assert set(moves) == {M1.address, M3.address} and doc["ownerships"]["examined"] == 3
    assert moves[M3.address]["moves_to"] == "contoso-jp"
    assert moves[M3.address]["outcome"].startswith("would move from contoso-na to contoso-jp")
    assert doc["on_expiry"]["before"] == "block" and doc["on_expiry"]["after"] == "override"
    assert doc["candidate"]["version"] == 2 and doc["current"]["version"] == 1
    assert "2 of 2 held case(s)" in doc["summary"]


def test_the_same_policy_changes_nothing(scene):
    c, _ = scene
    doc = policy_impact(c.service, HOLDING_POLICY.replace("version: 1", "version: 9"))
    assert (doc["held"]["changed"], doc["claims"]["changed"], doc["ownerships"]["changed"]) == (0, 0, 0)
    assert doc["on_expiry"] is None


def test_a_move_the_current_policy_makes_is_reported_when_the_candidate_stops_it(scene):
    c, _ = scene
    c.service.save_policy(CANDIDATE, actor="test")
    doc = policy_impact(c.service, HOLDING_POLICY.replace("version: 1", "version: 3"))
    moves = {i["mailbox"]: i for i in doc["ownerships"]["items"]}
    assert moves[M3.address]["outcome"].startswith("would no longer move to contoso-jp")
    assert moves[M3.address]["moves_to"] is None


def test_claims_older_than_the_window_are_left_out(scene):
    c, clock = scene
    clock[0] = NOW + timedelta(days=10)
    assert policy_impact(c.service, CANDIDATE, days=9)["claims"]["examined"] == 0
    assert policy_impact(c.service, CANDIDATE, days=11)["claims"]["examined"] == 2


def test_an_exemption_in_force_counts_in_both_decisions(scene):
    c, _ = scene
    Exemptions(c.service).add("mailbox", M2.address, reason="r", ticket="T", expires="2026-11-30", actor="a")
    doc = policy_impact(c.service, CANDIDATE)
    held = {i["mailbox"]: i for i in doc["held"]["items"]}
    assert held[M2.address]["after"]["effect"] == "audit" and held[M2.address]["after"]["exemption"]
    assert held[M2.address]["outcome"] == "resolved when decided again: only recorded: an exemption covers it"


def test_a_bad_candidate_or_window_is_refused(scene):
    c, _ = scene
    with pytest.raises(PolicyError) as refused:
        policy_impact(c.service, "version: 2\nrules: [{id: a, effect: {gate: block}}]\n")
    assert refused.value.errors[0]["path"] == "rules[0].effect"
    with pytest.raises(PolicyError, match="not a registered org"):
        policy_impact(c.service, "version: 2\nrules: [{id: a, effect: block, when: {claimant: contoso-xx}}]\n")
    for days in (0, 366, True):
        with pytest.raises(DomainError, match="days"):
            policy_impact(c.service, CANDIDATE, days=days)
