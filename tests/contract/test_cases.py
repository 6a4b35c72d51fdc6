"""Cases: reads, updates, paging newest first with cursors, filters, long histories."""

from __future__ import annotations

import base64
from dataclasses import replace

import pytest

from shared.domain.model import CaseQuery, CaseState, Change, DomainError, Effect, HistoryEntry
from shared.ledger.port import Ledger
from tests.contract.conftest import Clock, claim, contested, mailbox, resolve


def test_a_case_reads_back_whole_with_its_actions_in_order(ledger: Ledger) -> None:
    case = contested(ledger, Clock(), Effect.BLOCK)
    assert ledger.case(case.id) == case
    assert [a.kind.value for a in case.actions] == ["demote", "promote"]
    assert ledger.case("no-such-case") is None


def test_a_case_update_replaces_it_and_adds_only_new_actions(ledger: Ledger) -> None:
    clock = Clock()
    held = contested(ledger, clock, Effect.HOLD)
    assert held.actions == () and held.state is CaseState.HELD
    approved = resolve(ledger, held, Effect.OVERRIDE, CaseState.DECIDED, clock())
    assert approved.actions and ledger.case(held.id) == approved
    # Production never sends a recorded action back with other values (only the outbox changes them):
    # this change does, to show the ledger keeps the outbox's record whatever a change carries.
    again = replace(approved.moved_to(CaseState.DECIDED, actor="x", note="again", at=clock()),
                    actions=tuple(replace(a, attempts=7) for a in approved.actions))  # fmt: skip
    ledger.commit(Change(held.key, ledger.mailbox(held.key).version, cases=(again,)))
    stored = ledger.case(held.id)
    assert stored is not None and stored.history == again.history
    assert stored.actions == approved.actions  # recorded actions are the outbox's, not the change's
    page = ledger.cases(CaseQuery(mailbox=held.key))
    assert [c.id for c in page.items] == [held.id]


def test_cases_page_newest_first_with_cursors(ledger: Ledger) -> None:
    clock = Clock()
    made = [contested(ledger, clock, Effect.BLOCK, key=mailbox(i % 3)).id for i in range(7)]
    seen, cursor = [], None
    while True:
        page = ledger.cases(CaseQuery(limit=3, cursor=cursor))
        assert len(page.items) <= 3
        seen += [c.id for c in page.items]
        if not page.next:
            break
        cursor = page.next
    assert seen == made[::-1]
    assert ledger.cases(CaseQuery(limit=7)).next is None


def test_cases_filter_by_state_org_and_mailbox(ledger: Ledger) -> None:
    clock = Clock()
    held = contested(ledger, clock, Effect.HOLD, key=mailbox(1), owner="contoso-na", claimant="contoso-jp")
    blocked = contested(ledger, clock, Effect.BLOCK, key=mailbox(2), owner="contoso-eu", claimant="contoso-jp")
    overridden = contested(ledger, clock, Effect.OVERRIDE, key=mailbox(3), owner="contoso-na", claimant="contoso-eu")

    def ids(**query: object) -> list[str]:
        return [c.id for c in ledger.cases(CaseQuery(**query)).items]  # type: ignore[arg-type]

    assert ids(state=CaseState.HELD) == [held.id]
    assert ids(state=CaseState.DECIDED) == [overridden.id, blocked.id]
    assert ids(org="contoso-jp") == [blocked.id, held.id]  # as claimant
    assert ids(org="contoso-na") == [overridden.id, held.id]  # as owner
    assert ids(org="contoso-eu", state=CaseState.DECIDED) == [overridden.id, blocked.id]
    assert ids(mailbox=mailbox(2)) == [blocked.id]
    assert ids(mailbox=mailbox(2), state=CaseState.HELD) == []
    assert ids(org="contoso-xx") == []
    assert ids(mailbox=mailbox(9)) == []


def test_a_filter_follows_the_case_when_it_moves(ledger: Ledger) -> None:
    clock = Clock()
    held = contested(ledger, clock, Effect.HOLD)
    other = contested(ledger, clock, Effect.HOLD)
    overriding, _ = claim(ledger, held.key, "contoso-eu", "eu:op-1", clock(), Effect.OVERRIDE)  # the owner changes
    assert overriding is not None and overriding.cases
    denied = resolve(ledger, held, Effect.BLOCK, CaseState.DENIED, clock())
    assert denied.owner == "contoso-eu"
    assert [c.id for c in ledger.cases(CaseQuery(state=CaseState.HELD)).items] == [other.id]
    assert [c.id for c in ledger.cases(CaseQuery(state=CaseState.DENIED)).items] == [held.id]
    assert held.id in [c.id for c in ledger.cases(CaseQuery(org="contoso-eu")).items]
    assert held.id not in [c.id for c in ledger.cases(CaseQuery(org="contoso-na")).items]
    assert held.id in [c.id for c in ledger.cases(CaseQuery(org="contoso-jp")).items]


def test_filtered_pages_keep_their_order_across_cursors(ledger: Ledger) -> None:
    clock = Clock()
    made = []
    for i in range(6):
        effect = Effect.HOLD if i % 2 else Effect.BLOCK
        made.append((contested(ledger, clock, effect, key=mailbox(i)).id, effect))
    held = [case_id for case_id, effect in made if effect is Effect.HOLD][::-1]
    first = ledger.cases(CaseQuery(state=CaseState.HELD, limit=2))
    assert [c.id for c in first.items] == held[:2] and first.next
    rest = ledger.cases(CaseQuery(state=CaseState.HELD, limit=2, cursor=first.next))
    assert [c.id for c in rest.items] == held[2:] and rest.next is None


@pytest.mark.parametrize("cursor", ["not a cursor", "%%%", base64.urlsafe_b64encode(b"seq:x").decode(), "cnM6"])
def test_a_cursor_this_ledger_did_not_give_out_is_a_domain_error(ledger: Ledger, cursor: str) -> None:
    contested(ledger, Clock(), Effect.BLOCK)
    with pytest.raises(DomainError) as bad:
        ledger.cases(CaseQuery(cursor=cursor))
    assert bad.value.field == "cursor"


def test_a_long_history_is_kept_or_trimmed_with_a_note_and_still_reads(ledger: Ledger) -> None:
    clock = Clock()
    case = contested(ledger, clock, Effect.HOLD)
    base = clock()
    notes = tuple(
        HistoryEntry(base, CaseState.HELD, "approver@contoso", f"reminder {i}: " + "n" * 400) for i in range(1500)
    )
    # Production adds such entries one commit at a time; written at once, they are the shape years of them make.
    long = replace(case, history=case.history + notes)  # about 700 KB of history
    ledger.commit(Change(case.key, ledger.mailbox(case.key).version, cases=(long,)))
    stored = ledger.case(case.id)
    assert stored is not None and stored.state is CaseState.HELD
    assert stored.history[0] == case.history[0]
    assert stored.history[-50:] == long.history[-50:]
    if len(stored.history) != len(long.history):
        assert "trimmed" in stored.history[1].note and stored.history[1].actor == "orgguard"
    claim(ledger, case.key, "contoso-eu", "eu:after", clock())  # the mailbox keeps working
    assert ledger.cases(CaseQuery(mailbox=case.key)).items[-1].id == case.id
