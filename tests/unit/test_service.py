"""The use cases over the in-memory ledger (the contract suite holds it to SQLite's and Table Storage's
behaviour): what gets decided, recorded and queued."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from shared.domain.model import (
    ActionKind,
    ActionStatus,
    CaseQuery,
    CaseState,
    DomainError,
    Effect,
    InvalidTransition,
    NotFound,
    Origin,
    UnknownOrg,
)
from shared.domain.policy import PolicyError
from tests.factories import AIKO, BLOCKING_POLICY, HOLDING_POLICY, OVERRIDING_POLICY, claim, container, mailbox_guid


def test_first_claim_is_allowed_and_makes_the_owner(tmp_path):
    c = container(tmp_path, in_memory=True)
    outcome = c.service.handle_claim(claim("contoso-na"))
    assert outcome.effect is Effect.ALLOW and outcome.case_id is None
    assert c.ledger.mailbox(AIKO).ownership.owner == "contoso-na"


def test_owner_claiming_again_opens_no_case(tmp_path):
    c = container(tmp_path, in_memory=True)
    c.service.handle_claim(claim("contoso-na", op="1"))
    outcome = c.service.handle_claim(claim("contoso-na", op="2"))
    assert outcome.effect is Effect.ALLOW
    assert c.ledger.cases(CaseQuery()).items == ()


def test_competing_claim_blocked_at_the_gate_demotes_the_claimant_only(tmp_path):
    c = container(tmp_path, BLOCKING_POLICY, in_memory=True)
    c.service.handle_claim(claim("contoso-na", op="1"))
    outcome = c.service.handle_claim(claim("contoso-jp", op="2"))
    assert outcome.effect is Effect.BLOCK and outcome.decision.stops_claim
    case = c.service.case(outcome.case_id)
    assert (case.owner, case.claimant, case.state) == ("contoso-na", "contoso-jp", CaseState.DECIDED)
    assert [(a.kind, a.org) for a in case.actions] == [(ActionKind.DEMOTE, "contoso-jp")]
    assert c.ledger.mailbox(AIKO).ownership.owner == "contoso-na"


def test_competing_claim_blocked_after_the_fact_also_repairs_the_owner(tmp_path):
    c = container(tmp_path, BLOCKING_POLICY, in_memory=True)
    c.service.handle_claim(claim("contoso-na", op="1", origin=Origin.SERVICEBUS))
    outcome = c.service.handle_claim(claim("contoso-jp", op="2", origin=Origin.SERVICEBUS))
    case = c.service.case(outcome.case_id)
    assert {(a.kind, a.org) for a in case.actions} == {
        (ActionKind.DEMOTE, "contoso-jp"),
        (ActionKind.PROMOTE, "contoso-na"),
    }
    promote = next(a for a in case.actions if a.kind is ActionKind.PROMOTE)
    assert promote.mailbox_id == mailbox_guid("contoso-na")  # the owner's own row, remembered from its claim


def test_override_moves_ownership_and_queues_demote_and_promote(tmp_path):
    c = container(tmp_path, OVERRIDING_POLICY, in_memory=True)
    c.service.handle_claim(claim("contoso-na", op="1"))
    outcome = c.service.handle_claim(claim("contoso-jp", op="2"))
    assert outcome.effect is Effect.OVERRIDE and not outcome.decision.stops_claim
    assert c.ledger.mailbox(AIKO).ownership.owner == "contoso-jp"
    case = c.service.case(outcome.case_id)
    assert {(a.kind, a.org) for a in case.actions} == {
        (ActionKind.DEMOTE, "contoso-na"),
        (ActionKind.PROMOTE, "contoso-jp"),
    }
    assert all(a.status is ActionStatus.PENDING for a in case.actions)


def test_dry_run_records_the_decision_but_queues_nothing(tmp_path):
    c = container(tmp_path, BLOCKING_POLICY.replace("mode: enforce", "mode: dry-run"), in_memory=True)
    c.service.handle_claim(claim("contoso-na", op="1"))
    outcome = c.service.handle_claim(claim("contoso-jp", op="2"))
    assert outcome.decision.dry_run and not outcome.decision.stops_claim
    assert c.service.case(outcome.case_id).actions == ()


def test_redelivered_event_takes_effect_once_and_answers_the_same(tmp_path):
    c = container(tmp_path, BLOCKING_POLICY, in_memory=True)
    c.service.handle_claim(claim("contoso-na", op="1"))
    first = c.service.handle_claim(claim("contoso-jp", op="2"))
    again = c.service.handle_claim(claim("contoso-jp", op="2"))
    assert again.duplicate and again.case_id == first.case_id and again.effect is Effect.BLOCK
    assert len(c.ledger.cases(CaseQuery()).items) == 1


def test_held_case_approved_makes_the_claimant_owner(tmp_path):
    c = container(tmp_path, HOLDING_POLICY, in_memory=True)
    c.service.handle_claim(claim("contoso-na", op="1"))
    held = c.service.handle_claim(claim("contoso-jp", op="2"))
    assert held.effect is Effect.HOLD and held.decision.stops_claim
    assert c.service.case(held.case_id).state is CaseState.HELD
    case = c.service.approve(held.case_id, actor="approver", reason="JP is the user's home org now")
    assert case.state is CaseState.DECIDED and case.decision.effect is Effect.OVERRIDE
    assert c.ledger.mailbox(AIKO).ownership.owner == "contoso-jp"
    assert {(a.kind, a.org) for a in case.actions} == {
        (ActionKind.DEMOTE, "contoso-na"),
        (ActionKind.PROMOTE, "contoso-jp"),
    }
    with pytest.raises(InvalidTransition):
        c.service.deny(held.case_id, actor="approver", reason="too late")


def test_held_case_denied_keeps_the_owner_and_demotes_the_claimant(tmp_path):
    c = container(tmp_path, HOLDING_POLICY, in_memory=True)
    c.service.handle_claim(claim("contoso-na", op="1"))
    held = c.service.handle_claim(claim("contoso-jp", op="2"))
    case = c.service.deny(held.case_id, actor="approver", reason="NA stays primary")
    assert case.state is CaseState.DENIED
    assert c.ledger.mailbox(AIKO).ownership.owner == "contoso-na"
    assert [(a.kind, a.org) for a in case.actions] == [(ActionKind.DEMOTE, "contoso-jp")]


def test_approval_needs_a_reason_and_an_existing_case(tmp_path):
    c = container(tmp_path, HOLDING_POLICY, in_memory=True)
    with pytest.raises(NotFound):
        c.service.approve("no-such-case", actor="a", reason="r")
    c.service.handle_claim(claim("contoso-na", op="1"))
    held = c.service.handle_claim(claim("contoso-jp", op="2"))
    with pytest.raises(DomainError):
        c.service.approve(held.case_id, actor="a", reason="   ")
    assert c.service.case(held.case_id).state is CaseState.HELD


def test_held_cases_expire_per_policy(tmp_path):
    c = container(tmp_path, HOLDING_POLICY, in_memory=True)
    c.service.handle_claim(claim("contoso-na", op="1"))
    held = c.service.handle_claim(claim("contoso-jp", op="2"))
    assert c.service.expire_held() == []
    later = c.service.clock() + timedelta(days=4)
    c.service.clock = lambda: later
    expired = c.service.expire_held()
    assert [e.id for e in expired] == [held.case_id]
    assert expired[0].state is CaseState.EXPIRED and expired[0].decision.effect is Effect.BLOCK


def test_admin_designation_opens_an_override_case(tmp_path):
    c = container(tmp_path, in_memory=True)
    c.service.handle_claim(claim("contoso-na", op="1"))
    case = c.service.designate_owner(AIKO, "contoso-eu", actor="admin", reason="user moved to EU")
    assert c.ledger.mailbox(AIKO).ownership.owner == "contoso-eu"
    assert {(a.kind, a.org) for a in case.actions} == {
        (ActionKind.DEMOTE, "contoso-na"),
        (ActionKind.PROMOTE, "contoso-eu"),
    }
    with pytest.raises(UnknownOrg):
        c.service.designate_owner(AIKO, "contoso-xx", actor="admin", reason="typo")


def test_evaluate_records_nothing(tmp_path):
    c = container(tmp_path, BLOCKING_POLICY, in_memory=True)
    c.service.handle_claim(claim("contoso-na", op="1"))
    before = (c.ledger.verify_audit().entries, c.ledger.mailbox(AIKO).version)
    decision = c.service.evaluate(AIKO, "contoso-jp")
    assert decision.effect is Effect.BLOCK
    assert (c.ledger.verify_audit().entries, c.ledger.mailbox(AIKO).version) == before


def test_unknown_org_claim_is_refused_and_changes_nothing(tmp_path):
    c = container(tmp_path, in_memory=True)
    with pytest.raises(UnknownOrg):
        c.service.handle_claim(replace(claim("contoso-na"), org="nope"))
    assert c.ledger.verify_audit().entries == 1  # only the policy save


def test_invalid_policy_is_refused_and_the_old_one_stays(tmp_path):
    c = container(tmp_path, BLOCKING_POLICY, in_memory=True)
    with pytest.raises(PolicyError):
        c.service.save_policy("version: 2\ndefault: explode\n", actor="admin")
    assert c.service.policy_text()[0] == 1


def test_own_write_carrying_out_a_case_opens_no_case(tmp_path):
    c = container(tmp_path, OVERRIDING_POLICY, in_memory=True)
    c.orgs.with_app_user("contoso-jp", "11111111-2222-3333-4444-555555555555")
    c.service.handle_claim(claim("contoso-na", op="1"))
    c.service.handle_claim(claim("contoso-jp", op="2"))  # override: promote queued for JP
    c.service.designate_owner(AIKO, "contoso-na", actor="admin", reason="back to NA")
    cases_before = len(c.ledger.cases(CaseQuery()).items)
    own = claim("contoso-jp", op="3", user_id="11111111-2222-3333-4444-555555555555")
    outcome = c.service.handle_claim(own)
    assert outcome.decision.rule == "own-write" and not outcome.recorded
    assert len(c.ledger.cases(CaseQuery()).items) == cases_before


def test_a_case_begins_with_one_step_saying_who_decided_and_why(tmp_path):
    c = container(tmp_path, HOLDING_POLICY, in_memory=True)
    c.service.handle_claim(claim("contoso-na", op="1"))
    held = c.service.case(c.service.handle_claim(claim("contoso-jp", op="2")).case_id)
    moved = c.service.designate_owner(AIKO, "contoso-eu", actor="admin", reason="moved to EU")
    for case, actor, state in ((held, "policy", CaseState.HELD), (moved, "admin", CaseState.DECIDED)):
        (first, *_) = case.history
        assert (first.state, first.actor, first.note) == (state, actor, case.decision.explanation)
        assert first.at == case.created_at
    assert moved.decision.explanation == f"admin made contoso-eu the owner of {AIKO}: moved to EU"
