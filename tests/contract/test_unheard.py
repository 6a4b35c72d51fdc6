"""Saves that skipped the gate, reconciled on every ledger: which claims say so, why, and who saved.

The service runs for real over the ledger under test; the asynchronous channels and the sweep bring
claims after the save; the gate's own record (or its absence), the last registration check and the
gate's undecided answers decide what the case and its audit entry say (``shared.domain.unheard``).
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from shared.domain.drift import Drift, DriftKind, OrgRegistration, Part
from shared.domain.model import Claim, Effect, Found, MailboxKey, Origin, Unheard
from shared.domain.unheard import why_unheard
from shared.ledger.port import Ledger
from shared.service.orgguard import OrgGuard
from tests.contract.conftest import T0, Clock
from tests.factories import BLOCKING_POLICY, claim, registry

ADMIN_USER = "9b1a3c55-0d1e-4f6a-8b2c-3d4e5f607182"
BEHALF = "11111111-2222-4333-8444-555555555555"
AUDIT_POLICY = BLOCKING_POLICY.replace("default: block", "default: audit")


def service(ledger: Ledger, policy: str = BLOCKING_POLICY) -> OrgGuard:
    guard = OrgGuard(ledger=ledger, orgs=registry(), clock=Clock())  # type: ignore[arg-type]
    guard.save_policy(policy, actor="test")
    return guard


def owned_by_na(guard: OrgGuard) -> MailboxKey:
    key = MailboxKey(f"user{uuid.uuid4().hex[:10]}@contoso.com")
    guard.handle_claim(claim("contoso-na", key=key, op=f"op-{uuid.uuid4()}"))
    return key


def later(guard: OrgGuard, key: MailboxKey, org: str, origin: Origin, *, at: datetime, **stamps: object) -> Claim:
    """A claim of ``org`` brought after the save by ``origin``, the save made at ``at``."""
    base = claim(org, key=key, op=f"op-{uuid.uuid4()}", origin=origin, user_id=ADMIN_USER)
    return replace(base, observed_at=at, **stamps)  # type: ignore[arg-type]


def checked(guard: OrgGuard, org: str, *drift: Drift) -> None:
    guard.registrations.record([OrgRegistration(org, guard.clock(), tuple(drift))])


GATE_OFF = Drift(Part.GATE, "sdkmessageprocessingstep:OrgGuard: mailbox Update (gate)", DriftKind.DISABLED, "off")


@pytest.mark.parametrize(
    ("setup", "found"),
    [
        ("nothing checked", Found.UNHEARD),
        ("gate enabled", Found.BYPASS),
        ("gate disabled", Found.GATE_DISABLED),
        ("gate answered undecided", Found.GATE_DEGRADED),
    ],
)
def test_an_event_for_a_save_the_gate_never_heard_says_why_and_who_saved(ledger: Ledger, setup: str, found: Found):
    guard = service(ledger)
    key = owned_by_na(guard)
    saved = guard.clock()
    if setup == "gate enabled":
        checked(guard, "contoso-jp")
    elif setup == "gate disabled":
        checked(guard, "contoso-jp", GATE_OFF)
    elif setup == "gate answered undecided":
        checked(guard, "contoso-jp")
        guard.undecided.note("contoso-jp", claim("contoso-jp", key=key).mailbox_id, saved - timedelta(seconds=1))
    event = later(
        guard, key, "contoso-jp", Origin.WEBHOOK, at=saved, modified_by=ADMIN_USER, modified_on_behalf_of=BEHALF
    )
    outcome = guard.handle_claim(event)
    assert outcome.effect is Effect.BLOCK and outcome.case_id
    case = ledger.case(outcome.case_id)
    assert case is not None and case.unheard == Unheard(found, Origin.WEBHOOK, ADMIN_USER, BEHALF, saved)
    assert "never reached OrgGuard's gate" in case.history[-1].note
    entry = next(e.event for e in reversed(ledger.audit_entries(limit=10_000)) if e.event.data.get("case") == case.id)
    assert (entry.data["found"], entry.data["by"], entry.data["saved_by"]) == (found.value, "webhook", ADMIN_USER)
    assert ledger.verify_audit().ok


def test_an_event_for_a_save_the_gate_let_through_says_nothing(ledger: Ledger):
    guard = service(ledger, AUDIT_POLICY)
    key = owned_by_na(guard)
    checked(guard, "contoso-jp")
    at_the_gate = guard.handle_claim(claim("contoso-jp", key=key, op="gate-op"))  # audit: the save goes on
    assert at_the_gate.effect is Effect.AUDIT
    event = guard.handle_claim(later(guard, key, "contoso-jp", Origin.SERVICEBUS, at=guard.clock()))
    case = ledger.case(str(event.case_id))
    assert case is not None and case.unheard is None


def test_a_save_after_the_gate_stopped_one_is_a_save_the_gate_never_heard(ledger: Ledger):
    """An admin is blocked at the gate, then saves again with the bypass headers: the event says bypass."""
    guard = service(ledger)
    key = owned_by_na(guard)
    checked(guard, "contoso-jp")
    assert guard.handle_claim(claim("contoso-jp", key=key, op="blocked")).effect is Effect.BLOCK
    event = guard.handle_claim(later(guard, key, "contoso-jp", Origin.EVENTGRID, at=guard.clock()))
    case = ledger.case(str(event.case_id))
    assert case is not None and case.unheard is not None and case.unheard.found is Found.BYPASS


def test_the_sweep_labels_a_row_changed_after_the_owner_was_recorded_and_unheard_since(ledger: Ledger):
    guard = service(ledger)
    key = owned_by_na(guard)
    since = ledger.mailbox(key).ownership.since  # type: ignore[union-attr]
    checked(guard, "contoso-jp")
    before = later(guard, key, "contoso-jp", Origin.SWEEP, at=T0, modified_on=since - timedelta(hours=1))
    assert guard.unheard(before) is None  # synced before OrgGuard knew the mailbox: a latent conflict
    after = later(
        guard, key, "contoso-jp", Origin.SWEEP, at=T0, modified_on=since + timedelta(seconds=1), modified_by=ADMIN_USER
    )
    found = guard.unheard(after)
    assert found == Unheard(Found.BYPASS, Origin.SWEEP, ADMIN_USER, None, since + timedelta(seconds=1))
    outcome = guard.handle_claim(after)
    case = ledger.case(str(outcome.case_id))
    assert case is not None and case.origin is Origin.SWEEP and case.unheard == found
    unchanged = later(guard, key, "contoso-jp", Origin.SWEEP, at=T0, modified_on=None)
    assert guard.unheard(unchanged) is None  # the sweep did not read who changed it: nothing to say


def test_the_owner_s_own_row_and_an_unowned_mailbox_are_never_labelled(ledger: Ledger):
    guard = service(ledger)
    key = owned_by_na(guard)
    checked(guard, "contoso-na")
    own = later(guard, key, "contoso-na", Origin.SWEEP, at=T0, modified_on=guard.clock())
    assert guard.unheard(own) is None
    nobody = MailboxKey(f"nobody{uuid.uuid4().hex[:8]}@contoso.com")
    assert guard.unheard(later(guard, nobody, "contoso-jp", Origin.SWEEP, at=T0, modified_on=guard.clock())) is None


def test_why_the_gate_missed_a_save():
    from shared.domain.drift import GateState

    assert why_unheard(degraded=True, gate=GateState.ENABLED) is Found.GATE_DEGRADED
    assert why_unheard(degraded=False, gate=GateState.OFF) is Found.GATE_DISABLED
    assert why_unheard(degraded=False, gate=GateState.ENABLED) is Found.BYPASS
    assert why_unheard(degraded=False, gate=GateState.UNKNOWN) is Found.UNHEARD
