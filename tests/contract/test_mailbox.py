"""The mailbox aggregate: versions, optimistic concurrency, idempotency, claims."""

from __future__ import annotations

from dataclasses import replace

import pytest

from shared.domain.model import AuditEvent, Change, Effect, EventOutcome, MailboxKey, Ownership
from shared.ledger.port import ConcurrencyConflict, DuplicateEvent, Ledger
from tests.contract.conftest import Clock, claim, decide, event_key, mailbox


def test_an_unseen_mailbox_has_version_0_and_no_owner(ledger: Ledger) -> None:
    view = ledger.mailbox(mailbox(1))
    assert (view.version, view.ownership) == (0, None)
    assert ledger.claims(mailbox(1)) == []
    assert ledger.event("nobody:op-1:mbx") is None


def test_each_commit_moves_the_version_by_one_and_keeps_the_owner(ledger: Ledger) -> None:
    clock, key = Clock(), mailbox(1)
    claim(ledger, key, "contoso-na", "na:op-1", clock())
    first = ledger.mailbox(key)
    assert first.version == 1
    assert first.ownership is not None and first.ownership.owner == "contoso-na"
    assert first.ownership.mailbox_id == "mbx-contoso-na"
    claim(ledger, key, "contoso-na", "na:op-2", clock())  # uncontested again: no new ownership in the change
    second = ledger.mailbox(key)
    assert second.version == 2
    assert second.ownership == first.ownership


def test_a_decision_made_on_a_stale_version_is_refused_and_writes_nothing(ledger: Ledger) -> None:
    clock, key = Clock(), mailbox(2)
    stale = ledger.mailbox(key)
    claim(ledger, key, "contoso-na", "na:op-1", clock())
    before = (ledger.mailbox(key), list(ledger.claims(key)), ledger.verify_audit().entries)
    with pytest.raises(ConcurrencyConflict):
        ledger.commit(decide(stale, "contoso-jp", "jp:op-1", clock()))
    assert (ledger.mailbox(key), list(ledger.claims(key)), ledger.verify_audit().entries) == before
    assert ledger.event(event_key("contoso-jp", "jp:op-1")) is None


def test_a_processed_event_comes_back_with_its_first_outcome_and_writes_nothing(ledger: Ledger) -> None:
    clock, key = Clock(), mailbox(3)
    claim(ledger, key, "contoso-na", "na:op-1", clock())
    first, outcome = claim(ledger, key, "contoso-jp", "jp:op-1", clock(), Effect.BLOCK)
    assert first is not None and outcome.case_id is not None
    before = (ledger.mailbox(key), list(ledger.claims(key)), ledger.verify_audit().entries)
    again = decide(ledger.mailbox(key), "contoso-jp", "jp:op-1", clock(), Effect.OVERRIDE)  # a redelivery
    with pytest.raises(DuplicateEvent) as dup:
        ledger.commit(again)
    assert dup.value.outcome == outcome
    assert ledger.event(event_key("contoso-jp", "jp:op-1")) == outcome
    with pytest.raises(DuplicateEvent):  # a duplicate wins over a stale version, as a redelivery should
        ledger.commit(replace(again, expected_version=0))
    assert (ledger.mailbox(key), list(ledger.claims(key)), ledger.verify_audit().entries) == before


def test_claims_are_kept_per_mailbox_newest_first(ledger: Ledger) -> None:
    clock, one, two = Clock(), mailbox(4), mailbox(5)
    for i, org in enumerate(["contoso-na", "contoso-jp", "contoso-eu", "contoso-jp"]):
        claim(ledger, one, org, f"op-{i}", clock())
    claim(ledger, two, "contoso-eu", "eu:op-9", clock())
    records = ledger.claims(one)
    assert [r.event_key for r in records] == [
        event_key("contoso-jp", "op-3"),
        event_key("contoso-eu", "op-2"),
        event_key("contoso-jp", "op-1"),
        event_key("contoso-na", "op-0"),
    ]
    assert [r.effect for r in records] == [Effect.BLOCK, Effect.BLOCK, Effect.BLOCK, Effect.ALLOW]
    assert all(r.key == one for r in records)
    assert records[0].case_id is not None and ledger.case(records[0].case_id) is not None
    assert [r.event_key for r in ledger.claims(one, limit=2)] == [
        event_key("contoso-jp", "op-3"),
        event_key("contoso-eu", "op-2"),
    ]
    assert [r.org for r in ledger.claims(two)] == ["contoso-eu"]


def test_a_change_without_a_claim_or_event_still_moves_the_version(ledger: Ledger) -> None:
    clock, key = Clock(), mailbox(6)
    now = clock()
    # Production's changes without a claim or an event are resolutions and reminders, which carry a case;
    # this one carries only an ownership, so the test stays about the mailbox row and its version.
    owner = Ownership(key, "contoso-eu", now, "admin", 1, None)
    ledger.commit(Change(key, 0, owner, audit=(AuditEvent("owner.designated", key.address, "admin@contoso", {}, now),)))
    ledger.commit(Change(key, 1))
    view = ledger.mailbox(key)
    assert view.version == 2 and view.ownership == owner
    assert ledger.claims(key) == []


@pytest.mark.parametrize(
    "address",
    [
        "o'brien/ops#1?x%41|y~z@contoso.com",  # every character a key must not hold, and the escapes' own
        "a" * 64 + "@" + ".".join(["sub" + "d" * 56] * 3) + ".example",  # 250 characters: a hashed key
        "jürgen@xn--mnchen-3ya.de",
    ],
)
def test_awkward_addresses_and_event_keys_round_trip(ledger: Ledger, address: str) -> None:
    key = MailboxKey.parse(address)
    clock = Clock()
    op = f"{address}/#?\\'%"  # the message id reaches the event key: every awkward character with it
    claim(ledger, key, "contoso-na", op, clock())
    change, _ = claim(ledger, key, "contoso-jp", "x" * 300, clock())  # a key too long to keep: hashed
    assert ledger.mailbox(key).version == 2
    assert [r.key for r in ledger.claims(key)] == [key, key]
    outcome = ledger.event(event_key("contoso-na", op))
    assert isinstance(outcome, EventOutcome) and outcome.effect is Effect.ALLOW
    assert change is not None and ledger.case(change.cases[0].id) == change.cases[0]
    assert ledger.mailbox(MailboxKey.parse("other@contoso.com")).version == 0
