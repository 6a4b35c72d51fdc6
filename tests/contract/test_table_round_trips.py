"""Table Storage on the gate's path: the requests a decision makes (counted on the wire against Azurite), and
the work moved off it -- done by the ledger's backlog, seen by every reader at once, finished after a crash."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

from shared.domain.exemptions import plan_remove
from shared.domain.model import CaseQuery, CaseState, Effect, MailboxKey
from shared.ledger.port import ConcurrencyConflict, DuplicateEvent
from shared.ledger.tables import TableLedger
from shared.ledger.tables.keys import escape
from tests.contract.conftest import Clock, claim, contested, decide, event_key, mailbox
from tests.contract.test_exemptions import NOW, add
from tests.factories import exemption
from tests.round_trips import TARGET, CountingTransport, counted_ledger, example_service, gate_round_trips

pytestmark = pytest.mark.azurite

# What the gate's path holds now: the policy's and the exemptions' versions (one query), the mailbox (root and
# journals, one query), the transaction. The recovery marker is written after the answer, with the roll-forward.
BUDGET = {
    "first claim (allow)": 3,
    "competing claim (block)": 3,
    "competing claim (override)": 3,
    "competing claim (held case)": 3,
    "repeated claim (owner again)": 3,
    "duplicate event (a retry)": 2,
}
DERIVED = {"events", "cases", "actions", "audit"}  # tables only the roll-forward writes


@pytest.fixture
def counted(azurite: str) -> Iterator[tuple[TableLedger, CountingTransport]]:
    ledger, transport = counted_ledger(azurite)
    yield ledger, transport
    ledger.drop_tables()
    ledger.close()


@pytest.fixture
def make(azurite: str) -> Iterator[Callable[..., TableLedger]]:
    """Instances of one fresh Table Storage ledger (same prefix)."""
    prefix, opened = f"r{uuid.uuid4().hex[:12]}", []

    def build(**options: Any) -> TableLedger:
        opened.append(TableLedger.from_connection_string(azurite, prefix=prefix, **options))
        return opened[-1]

    yield build
    for ledger in opened:
        ledger.drop_tables()
        ledger.close()


def test_each_kind_of_gate_decision_stays_within_its_requests(counted: tuple[TableLedger, CountingTransport]) -> None:
    ledger, transport = counted
    found = gate_round_trips(example_service(ledger), transport, rounds=2, settle=ledger.settle_backlog)
    effects = {kind: {d.outcome.effect.value for d in runs} for kind, runs in found.items()}
    assert effects == {
        "first claim (allow)": {"allow"},
        "competing claim (block)": {"block"},
        "competing claim (override)": {"override"},
        "competing claim (held case)": {"hold"},
        "repeated claim (owner again)": {"allow"},
        "duplicate event (a retry)": {"allow"},
    }
    for kind, runs in found.items():
        for decided in runs:
            assert len(decided.trips) <= BUDGET[kind], (kind, [str(t) for t in decided.trips])
            assert not {t.table for t in decided.trips} & DERIVED, (kind, [str(t) for t in decided.trips])
            if not kind.startswith("duplicate"):
                assert {t.table for t in decided.after} >= {"events", "audit"}, "the indexes were written after"


def test_a_gate_decision_takes_at_most_three_requests(counted: tuple[TableLedger, CountingTransport]) -> None:
    ledger, transport = counted
    found = gate_round_trips(example_service(ledger), transport, rounds=1, settle=ledger.settle_backlog)
    assert {kind: max(len(d.trips) for d in runs) for kind, runs in found.items()} == {
        kind: min(TARGET, n) for kind, n in BUDGET.items()
    }


def test_the_backlog_writes_what_a_decision_derives_without_anyone_reading(make: Callable[..., TableLedger]) -> None:
    ledger = make()
    case = contested(ledger, Clock(), Effect.BLOCK)
    ledger.settle_backlog()
    rows = ledger.table("cases").query_entities(f"PartitionKey eq 'id|{case.id}'")
    assert [r["Address"] for r in rows] == [case.key.address]
    queued = {r["ActionId"] for r in ledger.table("actions").query_entities("PartitionKey eq 'queue'")}
    assert queued == {a.id for a in case.actions}
    assert len(list(ledger.table("audit").query_entities("RowKey ge 'e' and RowKey lt 'f'"))) == 2
    assert list(ledger.table("mailboxes").query_entities("PartitionKey eq '~journals'")) == []
    assert list(ledger.table("mailboxes").query_entities("RowKey ge 'journal|' and RowKey lt 'journal}'")) == []


def test_another_instance_sees_a_decision_whose_derived_work_is_still_in_flight(
    make: Callable[..., TableLedger], monkeypatch: pytest.MonkeyPatch
) -> None:
    writer, reader, clock = make(), make(), Clock()
    monkeypatch.setattr(writer, "_roll_forward", lambda journal: False)  # marked, not rolled forward: in flight
    case = contested(writer, clock, Effect.HOLD)
    writer.settle_backlog()
    assert [m["RowKey"] for m in writer.table("mailboxes").query_entities("PartitionKey eq '~journals'")] == [
        escape(case.key.address)
    ]
    assert reader.case(case.id) == case
    assert [c.id for c in reader.cases(CaseQuery(state=CaseState.HELD)).items] == [case.id]
    assert [e.event.actor for e in reader.audit_entries()] == ["contoso-na", "contoso-jp"]
    assert reader.verify_audit().ok and reader.event(event_key("contoso-jp", "x")) is None


def test_work_of_an_instance_that_died_after_answering_is_finished_by_the_housekeeping_round(
    make: Callable[..., TableLedger], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed right after the mailbox's transaction: no marker names the mailbox, yet its journal is found."""
    dying = make()
    monkeypatch.setattr(dying._backlog, "submit", lambda work: True)  # the process died with its backlog
    case = contested(dying, Clock(), Effect.BLOCK)
    assert list(dying.table("mailboxes").query_entities("PartitionKey eq '~journals'")) == []
    patient = make(takeover_after=timedelta(hours=1))  # young work stays for its writer
    assert patient.pending_actions() == [] and patient.recover() == 0
    assert patient.mailbox(case.key).version == 2  # the decision itself is recorded and read at once
    housekeeper = make(takeover_after=timedelta(0))  # the timer's outbox round: pending_actions -> recover
    assert {a.id for a in housekeeper.pending_actions()} == {a.id for a in case.actions}
    assert list(housekeeper.table("mailboxes").query_entities("RowKey ge 'journal|' and RowKey lt 'journal}'")) == []
    assert housekeeper.verify_audit().entries == 2


def test_a_policy_saved_by_an_instance_that_died_before_putting_it_in_force_is_put_in_force(
    make: Callable[..., TableLedger], monkeypatch: pytest.MonkeyPatch
) -> None:
    dying, reader = make(), make()
    dying.save_policy("version: 1\n", "admin")
    monkeypatch.setattr(dying, "_advance_policy_pointer", lambda version: None)  # dies before moving the pointer
    with pytest.raises(AttributeError):
        monkeypatch.setattr(dying, "_audit_policy", lambda row: (_ for _ in ()).throw(AttributeError("killed")))
        dying.save_policy("version: 2\n", "admin")
    assert reader.policy() is not None and reader.policy().version == 1  # type: ignore[union-attr]
    housekeeper = make(takeover_after=timedelta(0))
    housekeeper.recover()
    assert reader.policy() is not None and reader.policy().text == "version: 2\n"  # type: ignore[union-attr]
    assert [e.event.subject for e in reader.audit_entries()] == ["policy:1", "policy:2"]


def test_a_policy_saved_by_an_instance_still_on_the_code_before_the_pointer_is_put_in_force_by_housekeeping(
    make: Callable[..., TableLedger], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rolling upgrade: an instance on the old code saves a policy (its row, no pointer move) and its own
    ``recover`` deletes the ``~policy`` marker without moving the pointer. The next housekeeping round of an
    instance on this code finds the row beyond the pointer and puts it in force (off the gate's path)."""
    old, reader = make(), make()
    old.save_policy("version: 1\n", "admin")
    monkeypatch.setattr(old, "_advance_policy_pointer", lambda version: None)  # the old code moves no pointer
    old.save_policy("version: 2\n", "admin")
    old.table("mailboxes").delete_entity("~journals", "~policy")  # the old code's recover: audited, marker gone
    assert reader.policy().version == 1  # type: ignore[union-attr]  # the gate reads the pointer only
    housekeeper = make(takeover_after=timedelta(hours=1))  # a young marker would wait; a lagging pointer does not
    assert housekeeper.pending_actions() == []  # the timer's outbox round: pending_actions -> recover
    assert reader.policy().text == "version: 2\n"  # type: ignore[union-attr]
    assert [e.event.subject for e in reader.audit_entries()] == ["policy:1", "policy:2"]

    old.save_policy("version: 3\n", "admin")
    old.table("mailboxes").delete_entity("~journals", "~policy")
    housekeeper.recover()  # at most once per takeover_after per instance
    assert reader.policy().version == 2  # type: ignore[union-attr]
    make(takeover_after=timedelta(0)).recover()
    assert reader.policy().version == 3  # type: ignore[union-attr]


def test_a_ledger_from_before_the_policy_pointer_reads_its_newest_policy(make: Callable[..., TableLedger]) -> None:
    old, reader = make(), make()
    old.save_policy("version: 1\n", "admin")
    old.save_policy("version: 2\n", "admin")
    old.table("policies").delete_entity("exemptions", "policy")  # as an OrgGuard before the pointer left it
    assert reader.policy() is not None and reader.policy().version == 2  # type: ignore[union-attr]
    assert old.table("policies").get_entity("exemptions", "policy")["Version"] == 2  # written on the way
    assert reader.save_policy("version: 3\n", "admin").version == 3 and old.policy().version == 3  # type: ignore[union-attr]


def test_the_exemptions_read_with_the_policy_answer_that_decision_only(
    make: Callable[..., TableLedger], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The head read with the policy's version answers the same thread's next exemptions() once, never later."""
    from shared.ledger.tables import versions

    monkeypatch.setattr(versions, "FRESH_S", 60.0)  # the reads below are "within the decision" however slow Azurite is
    ledger, other = make(), make()
    assert ledger.policy() is None and ledger.exemptions().version == 0
    ledger.policy()
    add(other, exemption())  # another instance changes the set after this decision's read
    assert ledger.exemptions().version == 0  # the snapshot this decision started from
    assert ledger.exemptions().version == 1  # the next read sees the change at once
    ledger.policy()
    ledger.commit(decide(ledger.mailbox(mailbox(3)), "contoso-na", "na:9", Clock()()))  # the decision ended
    other.change_exemptions(lambda book: plan_remove(book, book.items[0].id, actor="a", reason=None, now=NOW))
    assert ledger.exemptions().version == 2


def test_an_instance_reads_its_own_exemptions_change_at_once(make: Callable[..., TableLedger]) -> None:
    """A head read with the policy, then a change of the set by the same instance: the next read is the new set."""
    ledger = make()
    assert ledger.exemptions().version == 0
    ledger.save_policy("version: 1\n", "admin")
    ledger.policy()  # as a timer's work does before it changes the exemptions (report_expired, then measure)
    add(ledger, exemption())
    assert ledger.exemptions().version == 1


def test_a_repeated_event_answers_its_first_outcome_whether_or_not_it_is_the_newest(
    make: Callable[..., TableLedger],
) -> None:
    ledger, clock, key = make(), Clock(), mailbox(7)
    _, first = claim(ledger, key, "contoso-na", "na:1", clock())
    _, second = claim(ledger, key, "contoso-jp", "jp:1", clock(), Effect.BLOCK)
    for op, org, outcome in (("jp:1", "contoso-jp", second), ("na:1", "contoso-na", first)):  # newest, older
        change = decide(ledger.mailbox(key), org, op, clock())
        with pytest.raises(DuplicateEvent) as seen:
            ledger.commit(change)
        assert seen.value.outcome == outcome
    assert ledger.mailbox(key).version == 2 and len(ledger.claims(key)) == 2


def test_a_decision_planned_on_a_root_that_moved_is_refused_and_decided_again(
    make: Callable[..., TableLedger],
) -> None:
    one, two, clock, key = make(), make(), Clock(), MailboxKey("race@contoso.com")
    stale = decide(one.mailbox(key), "contoso-na", "na:1", clock())
    claim(two, key, "contoso-jp", "jp:1", clock())  # the other instance wins the mailbox first
    with pytest.raises(ConcurrencyConflict):
        one.commit(stale)
    assert [c.org for c in one.claims(key)] == ["contoso-jp"] and one.mailbox(key).version == 1


def test_a_full_backlog_finishes_inline_and_a_failed_marker_never_fails_the_landed_decision(
    make: Callable[..., TableLedger], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The backlog full, the work runs on the committing thread; past the deadline a storage call gets one try, and
    the marker write failing then (``PastDeadline``) must not turn a landed decision into an error."""
    from shared.ledger.tables.timeouts import PastDeadline

    ledger = make()
    monkeypatch.setattr(ledger._backlog, "submit", lambda work: False)  # full: nothing taken
    mailboxes = ledger.table("mailboxes")
    upsert = mailboxes.upsert_entity

    def no_marker(entity: Any, **kwargs: Any) -> Any:
        if entity["PartitionKey"] == "~journals":
            raise PastDeadline("the gate's deadline passed; one try only")
        return upsert(entity, **kwargs)

    monkeypatch.setattr(mailboxes, "upsert_entity", no_marker)
    case = contested(ledger, Clock(), Effect.HOLD)  # returns: the decision is recorded, not "may or may not be"
    assert ledger.mailbox(case.key).version == 2
    assert [c.id for c in ledger.cases(CaseQuery(state=CaseState.HELD)).items] == [case.id]  # rolled forward inline
    assert list(mailboxes.query_entities("PartitionKey eq '~journals'")) == []


def test_the_scan_for_unmarked_journals_runs_once_per_its_interval(
    make: Callable[..., TableLedger], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scan reads the whole table on Table Storage: an instance runs it at most once per ``scan_every``."""
    dying = make()
    monkeypatch.setattr(dying._backlog, "submit", lambda work: True)  # died with its backlog: no marker, no roll-fwd
    housekeeper = make(takeover_after=timedelta(0), scan_every=timedelta(hours=1))
    first = contested(dying, Clock(), Effect.BLOCK)
    assert housekeeper.recover() > 0  # the first round scans and finds its journals
    assert housekeeper.case(first.id) == first
    second = contested(dying, Clock(), Effect.BLOCK)
    assert housekeeper.recover() == 0  # the next round, within the hour: no scan, nothing found
    assert make(takeover_after=timedelta(0), scan_every=timedelta(0)).recover() > 0  # one due to scan finds them
    assert housekeeper.case(second.id) == second
