"""The policy's ``fence``: what a demote sets to None in the org that loses a mailbox (ACT, and email too).

FACTS.md: ``incomingemaildeliverymethod`` 0 None, ``outgoingemaildeliverymethod`` 0 None. The fence is read
from the policy when a claim is decided, kept on the demote action, sent by the executor, and judged by the
same "already in the target state" rule after a lost answer or a restart.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from shared.config.policy_file import load_policy
from shared.dataverse.schema import ACT_METHOD, INCOMING_EMAIL, OUTGOING_EMAIL, PRIMARY_FLAG, columns_set
from shared.domain.model import ACT_ONLY, Action, ActionKind, Effect, Fence, Origin
from shared.ledger.codec import action_doc, action_from
from shared.service.org_writes import landed
from shared.service.rollout import done_in_org
from tests.factories import BLOCKING_POLICY, claim, container
from tests.unit.test_policy import DESIGN_POLICY, errors_of

BOTH = (Fence.ACT, Fence.EMAIL)
AT = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def test_the_design_policy_loads_unchanged_and_fences_act_only():
    assert load_policy(DESIGN_POLICY).fence == ACT_ONLY


@pytest.mark.parametrize(
    ("written", "fence"),
    [("[act, email]", BOTH), ("[email, act]", (Fence.EMAIL, Fence.ACT)), ("act", ACT_ONLY), ("[act, act]", ACT_ONLY)],
)
def test_a_policy_may_fence_email_as_well(written, fence):
    policy = load_policy(f"version: 1\nfence: {written}\n")
    assert policy.fence == fence
    assert load_policy(json.dumps(policy.model_dump(mode="json"))).fence == fence  # GET /api/policy puts back


@pytest.mark.parametrize(
    ("written", "fragment"),
    [
        ("[email]", "must include act"),
        ("[act, sms]", "unknown value 'sms'; use one of act, email"),
        ("[]", "at least one value"),
        ("{act: true}", "not a mapping"),
        ("[act, 2]", "text"),
    ],
)
def test_a_fence_without_act_or_with_an_unknown_lever_is_refused_with_its_path(written, fragment):
    errors = errors_of(f"version: 1\nfence: {written}\n")
    assert errors and all(e["path"].startswith("fence") for e in errors), errors
    assert fragment in " ".join(e["message"] for e in errors)


def test_a_demote_fencing_email_sets_both_email_methods_to_none_and_the_winner_s_promote_turns_them_back_on():
    assert columns_set(ActionKind.DEMOTE) == {ACT_METHOD: 2, PRIMARY_FLAG: False}
    assert columns_set(ActionKind.DEMOTE, BOTH) == {
        ACT_METHOD: 2,
        PRIMARY_FLAG: False,
        INCOMING_EMAIL: 0,
        OUTGOING_EMAIL: 0,
    }
    assert columns_set(ActionKind.PROMOTE, BOTH) == {
        **columns_set(ActionKind.PROMOTE),
        INCOMING_EMAIL: 2,  # server-side synchronization: it may have been fenced in an earlier case
        OUTGOING_EMAIL: 2,
    }


@pytest.mark.parametrize(
    ("incoming", "outgoing", "expected"), [(0, 0, True), (2, 0, False), (0, 2, False), (None, None, False)]
)
def test_a_demote_fencing_email_has_landed_only_when_email_is_none_too(incoming, outgoing, expected):
    row = {ACT_METHOD: 2, PRIMARY_FLAG: False, INCOMING_EMAIL: incoming, OUTGOING_EMAIL: outgoing}
    assert landed(ActionKind.DEMOTE, row, None, BOTH) is expected
    assert landed(ActionKind.DEMOTE, row, None) is True  # an ACT-only demote does not look at email
    action = Action("a", "c", "contoso-jp", "m", ActionKind.DEMOTE, created_at=AT, updated_at=AT, fence=BOTH)
    assert done_in_org(action, row) is expected  # a resumed job reads it back by the same rule


def test_the_fence_is_kept_on_the_action_and_an_action_stored_before_fences_is_act_only():
    action = Action("a", "c", "contoso-jp", "m", ActionKind.DEMOTE, created_at=AT, updated_at=AT, fence=BOTH)
    assert action_from(json.loads(json.dumps(action_doc(action)))).fence == BOTH
    old = action_doc(action)
    del old["fence"]
    assert action_from(old).fence == ACT_ONLY


@pytest.mark.parametrize("fence", ["[act]", "[act, email]"])
def test_a_blocked_claim_s_demote_carries_the_policy_s_fence_and_keeps_it_when_the_policy_changes(tmp_path, fence):
    service = container(tmp_path, BLOCKING_POLICY + f"fence: {fence}\n", in_memory=True).service
    service.handle_claim(claim("contoso-na", op="op-1"))
    outcome = service.handle_claim(claim("contoso-jp", op="op-2", origin=Origin.WEBHOOK))
    assert outcome.effect is Effect.BLOCK
    case = service.case(str(outcome.case_id))
    writes = [a for a in case.actions if a.kind is not ActionKind.NOTIFY]  # JP demoted, NA promoted (after the fact)
    assert {a.kind for a in writes} == {ActionKind.DEMOTE, ActionKind.PROMOTE}
    assert {a.fence for a in writes} == {load_policy(f"version: 1\nfence: {fence}\n").fence}
    service.save_policy(BLOCKING_POLICY, actor="test")  # the decision was taken under the old fence
    assert service.case(case.id).actions == case.actions
    approved = service.handle_claim(claim("contoso-eu", op="op-3"))  # decided under the new policy: ACT only
    assert {a.fence for a in service.case(str(approved.case_id)).actions} == {ACT_ONLY}
