"""The ledger contract: every test here runs against every ledger (in memory, SQLite, Table Storage on Azurite).

``spec`` says how to open a ledger (a URL, so another thread, instance or OS
process can open the same one); ``ledger`` is one open instance; ``storage``
reaches under the ledger to tamper with it the way someone with write access
to the file or the storage account could. The builders stand in for the
service layer: they compute the ``Change`` a decision writes.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from itertools import count

import pytest

from shared.domain.model import (
    Action,
    ActionKind,
    AuditEntry,
    AuditEvent,
    Case,
    CaseState,
    Change,
    ClaimKind,
    ClaimRecord,
    Decision,
    Effect,
    EventOutcome,
    MailboxKey,
    MailboxView,
    Origin,
    Ownership,
    new_id,
)
from shared.ledger import open_ledger
from shared.ledger.memory import MemoryLedger, forget
from shared.ledger.port import ConcurrencyConflict, DuplicateEvent, Ledger
from shared.ledger.tables import TableLedger

BACKENDS = ("memory", "sqlite", pytest.param("tables", marks=pytest.mark.azurite))
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


@dataclass(frozen=True)
class LedgerSpec:
    """How to open one ledger; picklable, so a spawned process can open the same one."""

    kind: str
    url: str

    def open(self) -> Ledger:
        return open_ledger(self.url)


def table_spec(connection_string: str) -> LedgerSpec:
    """A fresh set of tables in the shared Azurite: a unique prefix per test."""
    return LedgerSpec("tables", f"tables:{connection_string.rstrip(';')};TablePrefix=t{uuid.uuid4().hex[:16]}")


@pytest.fixture(params=BACKENDS)
def spec(request: pytest.FixtureRequest, tmp_path) -> LedgerSpec:
    if request.param == "sqlite":
        return LedgerSpec("sqlite", f"sqlite:///{tmp_path / 'ledger.db'}")
    if request.param == "memory":
        return LedgerSpec("memory", f"memory:{uuid.uuid4().hex}")
    return table_spec(request.getfixturevalue("azurite"))


@pytest.fixture
def instances(spec: LedgerSpec) -> Iterator[Callable[[], Ledger]]:
    """Open more instances of the same ledger (as several app instances would); all closed at the end."""
    opened: list[Ledger] = []

    def another() -> Ledger:
        opened.append(spec.open())
        return opened[-1]

    yield another
    if spec.kind == "memory":
        forget(spec.url.removeprefix("memory:"))
    for ledger in opened:
        if isinstance(ledger, TableLedger) and ledger is opened[0]:
            ledger.drop_tables()
        ledger.close()


@pytest.fixture
def ledger(instances: Callable[[], Ledger]) -> Ledger:
    return instances()


class Storage:
    """The storage under a ledger, for tampering with the audit log directly."""

    def __init__(self, spec: LedgerSpec, ledger: Ledger) -> None:
        self.spec = spec
        self.ledger = ledger

    def _sql(self, statement: str, *args: object) -> None:
        path = self.spec.url.removeprefix("sqlite:///")
        with sqlite3.connect(path) as db:
            db.execute(statement, args)

    def _audit_row(self, seq: int) -> tuple[str, str]:
        return "chain", f"e{seq:016d}"

    def edit_audit(self, seq: int, subject: str) -> None:
        if isinstance(self.ledger, MemoryLedger):
            self.ledger.tamper(lambda log: log.__setitem__(seq - 1, _with_subject(log[seq - 1], subject)))
            return
        if self.spec.kind == "sqlite":
            self._sql("UPDATE audit SET subject = ? WHERE seq = ?", subject, seq)
            return
        assert isinstance(self.ledger, TableLedger)
        table = self.ledger.table("audit")
        row = table.get_entity(*self._audit_row(seq))
        table.update_entity({**row, "Subject": subject})

    def delete_audit(self, seq: int) -> None:
        if isinstance(self.ledger, MemoryLedger):
            self.ledger.tamper(lambda log: log.pop(seq - 1))
            return
        if self.spec.kind == "sqlite":
            self._sql("DELETE FROM audit WHERE seq = ?", seq)
            return
        assert isinstance(self.ledger, TableLedger)
        self.ledger.table("audit").delete_entity(*self._audit_row(seq))


def _with_subject(entry: AuditEntry, subject: str) -> AuditEntry:
    return replace(entry, event=replace(entry.event, subject=subject))


def needs_processes(spec: LedgerSpec) -> None:
    """Races between OS processes need a ledger two processes can open; the in-memory one is one process's."""
    if spec.kind == "memory":
        pytest.skip("the in-memory ledger lives in one process")


@pytest.fixture
def storage(spec: LedgerSpec, ledger: Ledger) -> Storage:
    return Storage(spec, ledger)


# --- builders: what the service layer would write ---------------------------------------------


class Clock:
    """Strictly increasing times, so "newest first" means one thing on every ledger."""

    def __init__(self, start: datetime = T0) -> None:
        self._ticks = count(1)
        self._start = start

    def __call__(self) -> datetime:
        return self._start + timedelta(seconds=next(self._ticks))


def mailbox(n: int = 0) -> MailboxKey:
    return MailboxKey(f"user{n}@contoso.com")


def actions_for(case: Case, effect: Effect, now: datetime) -> tuple[Action, ...]:
    def act(org: str | None, kind: ActionKind) -> Action:
        return Action(new_id(), case.id, org or "", f"mbx-{org}", kind, created_at=now, updated_at=now)

    if effect is Effect.BLOCK:
        return (act(case.claimant, ActionKind.DEMOTE), act(case.owner, ActionKind.PROMOTE))
    if effect is Effect.OVERRIDE:
        return (act(case.owner, ActionKind.DEMOTE), act(case.claimant, ActionKind.PROMOTE))
    return ()


def open_case(key: MailboxKey, owner: str, claimant: str, effect: Effect, now: datetime) -> Case:
    case = Case(
        id=new_id(), key=key, owner=owner, claimant=claimant, claimant_mailbox_id=f"mbx-{claimant}",
        owner_mailbox_id=f"mbx-{owner}", kind=ClaimKind.TEST_ENABLE, origin=Origin.SERVICEBUS,
        decision=Decision(effect, "test-rule", f"{effect.value}: {claimant} claims a mailbox {owner} owns"),
        state=CaseState.OPEN, created_at=now, updated_at=now,
    )  # fmt: skip
    case = case.moved_to(CaseState.HELD if effect is Effect.HOLD else CaseState.DECIDED, actor="policy",
                         note=case.decision.explanation, at=now)  # fmt: skip
    return replace(case, actions=actions_for(case, effect, now))


def decide(view: MailboxView, org: str, event_key: str, now: datetime, effect: Effect = Effect.BLOCK) -> Change:
    """The change recording ``org``'s claim on the mailbox: allowed when uncontested, else ``effect``."""
    owner = view.ownership
    case, ownership = None, None
    if owner is None or owner.owner == org:
        decided = Effect.ALLOW
        if owner is None:
            ownership = Ownership(view.key, org, now, "first-claim", 1, f"mbx-{org}")
    else:
        decided = effect
        case = open_case(view.key, owner.owner, org, effect, now)
        if effect is Effect.OVERRIDE:
            ownership = Ownership(view.key, org, now, "rule:test-rule", owner.version + 1, f"mbx-{org}")
    case_id = case.id if case else None
    event = EventOutcome(event_key, decided, case_id, now)
    claim = ClaimRecord(view.key, org, ClaimKind.TEST_ENABLE, Origin.SERVICEBUS, event_key, decided, case_id, now)
    audit = AuditEvent("claim.decided", view.key.address, org, {"effect": decided.value, "case": case_id}, now)
    return Change(view.key, view.version, ownership, event, claim, (case,) if case else (), (audit,))


def claim(
    ledger: Ledger, key: MailboxKey, org: str, event_key: str, now: datetime, effect: Effect = Effect.BLOCK
) -> tuple[Change | None, EventOutcome]:
    """Read, decide, commit, and on a conflict read again: the service layer's loop.

    Returns the committed change (None when the event had been processed) and the event's outcome.
    """
    while True:
        seen = ledger.event(event_key)
        if seen is not None:
            return None, seen
        change = decide(ledger.mailbox(key), org, event_key, now, effect)
        try:
            ledger.commit(change)
        except ConcurrencyConflict:
            continue
        except DuplicateEvent as dup:
            return None, dup.outcome
        assert change.event is not None
        return change, change.event


def contested(ledger: Ledger, clock: Clock, effect: Effect, *, key: MailboxKey | None = None,
              owner: str = "contoso-na", claimant: str = "contoso-jp") -> Case:  # fmt: skip
    """A mailbox owned by ``owner`` and a competing claim from ``claimant`` decided with ``effect``."""
    key = key or mailbox(int(uuid.uuid4().int % 10**6))
    claim(ledger, key, owner, f"{owner}:op-{uuid.uuid4()}", clock())
    change, _ = claim(ledger, key, claimant, f"{claimant}:op-{uuid.uuid4()}", clock(), effect)
    assert change is not None and change.cases
    return change.cases[0]
