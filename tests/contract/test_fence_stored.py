"""The email fence a decision fixed on its actions, as every ledger keeps it through the outbox."""

from __future__ import annotations

import uuid

from shared.domain.model import ActionKind, ActionStatus, Effect, Fence, MailboxKey, Origin
from shared.ledger.port import Ledger
from shared.service.orgguard import OrgGuard
from tests.contract.conftest import Clock
from tests.factories import BLOCKING_POLICY, claim, registry


def test_a_fenced_demote_and_its_promote_keep_their_fence_through_every_attempt(ledger: Ledger) -> None:
    guard = OrgGuard(ledger=ledger, orgs=registry(), clock=Clock())  # type: ignore[arg-type]
    guard.save_policy(BLOCKING_POLICY + "fence: [act, email]\n", actor="test")
    key = MailboxKey(f"user{uuid.uuid4().hex[:10]}@contoso.com")
    guard.handle_claim(claim("contoso-na", key=key, op="first"))
    outcome = guard.handle_claim(claim("contoso-jp", key=key, op="second", origin=Origin.SERVICEBUS))
    assert outcome.effect is Effect.BLOCK and outcome.case_id
    pending = {a.kind: a for a in ledger.pending_actions(100) if a.case_id == outcome.case_id}
    assert {kind: a.fence for kind, a in pending.items()} == {
        ActionKind.DEMOTE: (Fence.ACT, Fence.EMAIL),
        ActionKind.PROMOTE: (Fence.ACT, Fence.EMAIL),
    }
    demote = pending[ActionKind.DEMOTE]
    ledger.record_attempt(demote.id, ActionStatus.FAILED, "400: refused")
    retried = guard.retry_action(demote.id, actor="operator")
    assert retried.fence == (Fence.ACT, Fence.EMAIL)  # a retry writes what was decided, not today's policy
    case = ledger.case(outcome.case_id)
    assert case is not None and {a.fence for a in case.actions} == {(Fence.ACT, Fence.EMAIL)}
