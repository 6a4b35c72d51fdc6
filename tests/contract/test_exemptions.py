"""Exemptions on every ledger: versioned, audited, and safe when admins add and remove them at once.

Each change is the domain's own plan (``plan_add``, ``plan_remove``, ``plan_expired``) applied by the ledger to
the set it reads inside its transaction, as the service layer does it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from shared.domain.exemptions import (
    Book,
    DuplicateExemption,
    Exemption,
    Plan,
    Scope,
    State,
    plan_add,
    plan_expired,
    plan_remove,
)
from shared.domain.model import InvalidTransition, NotFound
from shared.ledger.port import Ledger
from shared.ledger.tables import TableLedger
from tests.contract.conftest import LedgerSpec, in_processes, needs_processes
from tests.factories import EXEMPTIONS_NOW, exemption

NOW = EXEMPTIONS_NOW


def add(ledger: Ledger, new: Exemption) -> Book:
    return ledger.change_exemptions(lambda book: plan_add(book, new))[0]


def audit_kinds(ledger: Ledger) -> list[str]:
    return [e.event.kind for e in ledger.audit_entries() if e.event.kind.startswith("exemption.")]


def test_an_empty_ledger_has_version_zero_and_no_exemptions(ledger: Ledger) -> None:
    assert ledger.exemptions() == Book(0, ())


def test_each_change_is_a_version_with_its_audit_entry(ledger: Ledger) -> None:
    later = NOW + timedelta(minutes=1)
    first, second = exemption(), exemption(Scope.DOMAIN, "contoso.co.jp", ticket="CHG-1002 ✓ ポリシー", now=later)
    add(ledger, first)
    book = add(ledger, second)
    assert book.version == 2
    assert [e.id for e in book.items] == [first.id, second.id]  # oldest first
    stored = book.get(second.id)
    assert stored is not None and stored.added_in == 2 and stored.ticket == "CHG-1002 ✓ ポリシー"
    assert stored.subject == ("contoso.co.jp",) and stored.expires == date(2026, 11, 30)
    removed, plan = ledger.change_exemptions(
        lambda book: plan_remove(book, first.id, actor="other@contoso.com", reason="done early", now=NOW)
    )
    assert removed.version == 3 and plan.changed[0].removed_by == "other@contoso.com"
    gone = ledger.exemptions().get(first.id)
    assert gone is not None and gone.state(NOW.date()) is State.REMOVED and gone.removed_reason == "done early"
    assert audit_kinds(ledger) == ["exemption.added", "exemption.added", "exemption.removed"]
    entries = [e.event for e in ledger.audit_entries() if e.event.kind.startswith("exemption.")]
    assert [e.data["version"] for e in entries] == [1, 2, 3]
    assert entries[0].subject == f"exemption:{first.id}" and entries[0].actor == "admin@contoso.com"
    assert ledger.verify_audit().ok
    assert ledger.exemptions() == removed  # what the change answered is what a reader sees


def test_a_refused_change_writes_nothing(ledger: Ledger) -> None:
    first = exemption()
    add(ledger, first)
    before = (ledger.exemptions(), len(ledger.audit_entries()))
    with pytest.raises(DuplicateExemption) as dup:
        add(ledger, exemption(ticket="CHG-2"))  # the same mailbox again, by someone else
    assert dup.value.existing == first.id
    with pytest.raises(NotFound):
        ledger.change_exemptions(lambda book: plan_remove(book, "nope", actor="a", reason=None, now=NOW))

    def broken(book: Book) -> Plan:
        raise RuntimeError("the planner failed")

    with pytest.raises(RuntimeError):
        ledger.change_exemptions(broken)
    assert (ledger.exemptions(), len(ledger.audit_entries())) == before


def test_an_expired_exemption_is_reported_once(ledger: Ledger) -> None:
    ending, lasting = exemption(expires="2026-11-03"), exemption(Scope.DOMAIN, "contoso.eu", expires="2026-11-30")
    add(ledger, ending)
    add(ledger, lasting)
    still = datetime(2026, 11, 3, 23, 59, tzinfo=UTC)
    assert ledger.change_exemptions(lambda book: plan_expired(book, still))[1].empty  # its last day
    later = datetime(2026, 11, 4, 0, 1, tzinfo=UTC)
    book, plan = ledger.change_exemptions(lambda book: plan_expired(book, later))
    assert [e.id for e in plan.changed] == [ending.id] and book.version == 3
    assert ledger.change_exemptions(lambda book: plan_expired(book, later + timedelta(hours=1)))[1].empty
    marked = ledger.exemptions().get(ending.id)
    assert marked is not None and marked.expired_at == later and marked.state(later.date()) is State.EXPIRED
    assert audit_kinds(ledger) == ["exemption.added", "exemption.added", "exemption.expired"]
    assert ledger.exemptions().version == 3


def test_admins_adding_at_once_each_add_theirs_and_none_twice(ledger: Ledger, instances: Callable[[], Ledger]) -> None:
    ledgers = [ledger, *(instances() for _ in range(3))]
    wanted = [exemption(Scope.MAILBOX, f"user{i}@contoso.com") for i in range(12)]
    start = threading.Barrier(len(wanted))

    def one(i: int) -> None:
        start.wait()
        add(ledgers[i % len(ledgers)], wanted[i])

    with ThreadPoolExecutor(len(wanted)) as pool:
        list(pool.map(one, range(len(wanted))))
    book = ledger.exemptions()
    assert book.version == 12
    assert sorted(e.id for e in book.items) == sorted(e.id for e in wanted)
    assert sorted(e.added_in for e in book.items) == list(range(1, 13))  # one version each, none shared
    assert audit_kinds(ledger).count("exemption.added") == 12
    assert ledger.verify_audit().ok


def test_two_admins_adding_the_same_exemption_add_it_once(ledger: Ledger, instances: Callable[[], Ledger]) -> None:
    ledgers = [ledger, instances()]
    start = threading.Barrier(8)

    def one(i: int) -> str:
        start.wait()
        try:
            add(ledgers[i % 2], exemption(actor=f"admin{i}@contoso.com"))
        except DuplicateExemption:
            return "refused"
        return "added"

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(8)))
    assert results.count("added") == 1
    assert len(ledger.exemptions().items) == 1 and ledger.exemptions().version == 1
    assert audit_kinds(ledger) == ["exemption.added"]


def test_two_admins_removing_one_exemption_remove_it_once(ledger: Ledger, instances: Callable[[], Ledger]) -> None:
    target = exemption()
    add(ledger, target)
    ledgers = [ledger, instances()]
    start = threading.Barrier(6)

    def one(i: int) -> str:
        start.wait()
        try:
            ledgers[i % 2].change_exemptions(
                lambda book: plan_remove(book, target.id, actor=f"admin{i}", reason=None, now=NOW)
            )
        except InvalidTransition as exc:
            assert exc.state == "removed"
            return "refused"
        return "removed"

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(one, range(6)))
    assert results.count("removed") == 1
    assert ledger.exemptions().version == 2
    assert audit_kinds(ledger) == ["exemption.added", "exemption.removed"]


def _add_in_process(spec: LedgerSpec, who: str, out: Any) -> None:
    ledger = spec.open()
    try:
        add(ledger, exemption(actor=who))
        out.put("added")
    except DuplicateExemption:
        out.put("refused")
    finally:
        ledger.close()


@pytest.mark.slow
def test_two_processes_adding_the_same_exemption_add_it_once(spec: LedgerSpec, ledger: Ledger) -> None:
    needs_processes(spec)
    results = in_processes(_add_in_process, [(spec, f"admin{i}") for i in range(3)], timeout=120)
    assert sorted(results) == ["added", "refused", "refused"]
    assert ledger.exemptions().version == 1 and audit_kinds(ledger) == ["exemption.added"]


def test_table_storage_finishes_the_audit_of_a_change_whose_writer_died(
    spec: LedgerSpec, ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    if spec.kind != "tables":
        pytest.skip("the other ledgers write the audit entry in the change's own transaction")
    assert isinstance(ledger, TableLedger)
    first = exemption()
    with monkeypatch.context() as m:  # the instance dies right after its transaction
        m.setattr(TableLedger, "_finish_exemption_audit", lambda self, head: None)
        add(ledger, first)
    assert audit_kinds(ledger) == []
    assert ledger.exemptions().version == 1  # the change itself landed
    ledger._recover_exemptions()  # what `recover` does with the marker the change left
    ledger._recover_exemptions()  # twice: still once
    assert audit_kinds(ledger) == ["exemption.added"]
    with monkeypatch.context() as m:
        m.setattr(TableLedger, "_finish_exemption_audit", lambda self, head: None)
        add(ledger, exemption(Scope.DOMAIN, "contoso.eu"))
    add(ledger, exemption(Scope.DOMAIN, "contoso.de"))  # the next change appends what was left first
    assert audit_kinds(ledger) == ["exemption.added"] * 3
    versions = [e.event.data["version"] for e in ledger.audit_entries() if e.event.kind == "exemption.added"]
    assert versions == [1, 2, 3] and ledger.verify_audit().ok


def test_a_schema_1_sqlite_ledger_gains_exemptions_and_keeps_its_records(tmp_path) -> None:
    """A ledger written before exemptions existed opens, migrates to schema 2 and keeps its history."""
    import sqlite3

    from shared.ledger.port import LedgerError
    from shared.ledger.sqlite import SCHEMA, SCHEMA_VERSION, SqliteLedger

    path = tmp_path / "old.db"
    old = SCHEMA.split("CREATE TABLE IF NOT EXISTS exemptions")[0]  # the tables of schema 1
    with sqlite3.connect(path) as db:
        db.executescript(old)
        db.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '1')")
        db.execute("INSERT INTO policies (version, text, actor, at) VALUES (1, 'version: 1', 'a', '2026-01-01')")
    ledger = SqliteLedger(path)
    try:
        assert ledger.policy() is not None and ledger.exemptions().version == 0
        add(ledger, exemption())
        assert ledger.exemptions().version == 1
    finally:
        ledger.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (str(SCHEMA_VERSION),)
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(LedgerError, match="newer than this OrgGuard"):
        SqliteLedger(path)


def test_a_change_by_another_instance_is_seen_at_once(ledger: Ledger, instances: Callable[[], Ledger]) -> None:
    """Readers keep the set they read last; a change anywhere moves its version, so nobody reads a stale one."""
    other = instances()
    assert ledger.exemptions().version == 0 and other.exemptions().version == 0  # both have read it
    added = exemption()
    add(other, added)
    assert [e.id for e in ledger.exemptions().items] == [added.id]
    ledger.change_exemptions(lambda book: plan_remove(book, added.id, actor="a", reason=None, now=NOW))
    assert other.exemptions().items[0].removed_by == "a" and other.exemptions().version == 2
