"""The ledger contract: every test here runs against every ledger (in memory, SQLite, Table Storage on Azurite).

``spec`` says how to open a ledger (a URL, so another thread, instance or OS
process can open the same one); ``ledger`` is one open instance; ``storage``
reaches under the ledger to tamper with it the way someone with write access
to the file or the storage account could. The builders compute the ``Change``
a decision writes with the service layer's own case work (``casework``), so the
ledgers are tested against the changes production writes; only the policy's
verdict is given (``effect``).
"""

from __future__ import annotations

import multiprocessing
import sqlite3
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any

import pytest

from shared.domain import casework
from shared.domain.model import (
    AuditEntry,
    Case,
    CaseState,
    Change,
    Claim,
    ClaimKind,
    Decision,
    Effect,
    EventOutcome,
    MailboxKey,
    MailboxView,
    Origin,
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


SPAWN = multiprocessing.get_context("spawn")


def in_processes(target: Callable[..., None], argsets: Sequence[tuple[object, ...]], *, timeout: float) -> list[Any]:
    """Run ``target(*args, out)`` in a fresh OS process per ``args``; what each put on ``out``, as they came."""
    out = SPAWN.Queue()
    procs = [SPAWN.Process(target=target, args=(*args, out)) for args in argsets]
    for proc in procs:
        proc.start()
    results = [out.get(timeout=timeout) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0
    return results


def needs_processes(spec: LedgerSpec) -> None:
    """Races between OS processes need a ledger two processes can open; the in-memory one is one process's."""
    if spec.kind == "memory":
        pytest.skip("the in-memory ledger lives in one process")


@pytest.fixture
def storage(spec: LedgerSpec, ledger: Ledger) -> Storage:
    return Storage(spec, ledger)


# --- builders: the service layer's case work, with a policy standing in -----------------------

RULE = "test-rule"
EXPIRES_AFTER = timedelta(days=3)  # how long a held case waits for an approver (the policy's default)


class Clock:
    """Strictly increasing times, so "newest first" means one thing on every ledger."""

    def __init__(self, start: datetime = T0) -> None:
        self._ticks = count(1)
        self._start = start

    def __call__(self) -> datetime:
        return self._start + timedelta(seconds=next(self._ticks))


def mailbox(n: int = 0) -> MailboxKey:
    return MailboxKey(f"user{n}@contoso.com")


def claim_of(key: MailboxKey, org: str, op: str, now: datetime) -> Claim:
    """What ``org``'s Service Bus message ``op`` says: it enabled ``key`` on its own mailbox row ``mbx-<org>``."""
    return Claim(key, org, f"mbx-{org}", ClaimKind.TEST_ENABLE, Origin.SERVICEBUS, {"operation": op}, now)


def event_key(org: str, op: str) -> str:
    """The event key production derives from ``org``'s operation ``op`` (the one ``ledger.event`` answers to)."""
    return claim_of(mailbox(), org, op, T0).event_key


def decide(view: MailboxView, org: str, op: str, now: datetime, effect: Effect = Effect.BLOCK) -> Change:
    """The change production writes for ``org``'s claim against ``view`` (``casework.plan_claim``).

    The policy is stood in for: an uncontested claim is allowed, a contested one gets ``effect``.
    """
    owner = view.ownership.owner if view.ownership else None
    decided = effect if owner not in (None, org) else Effect.ALLOW
    decision = Decision(decided, RULE, f"{decided.value}: {org} claims a mailbox {owner or 'nobody'} owns")
    claimed = claim_of(view.key, org, op, now)
    return casework.plan_claim(claimed, view, decision, now=now, expires_after=EXPIRES_AFTER).change


def claim(
    ledger: Ledger, key: MailboxKey, org: str, op: str, now: datetime, effect: Effect = Effect.BLOCK
) -> tuple[Change | None, EventOutcome]:
    """Read, decide, commit, and on a conflict read again: the service layer's loop.

    Returns the committed change (None when the event had been processed) and the event's outcome.
    """
    while True:
        seen = ledger.event(event_key(org, op))
        if seen is not None:
            return None, seen
        change = decide(ledger.mailbox(key), org, op, now, effect)
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
    claim(ledger, key, owner, f"op-{uuid.uuid4()}", clock())
    change, _ = claim(ledger, key, claimant, f"op-{uuid.uuid4()}", clock(), effect)
    assert change is not None and change.cases
    return change.cases[0]


def resolve(ledger: Ledger, held: Case, effect: Effect, state: CaseState, now: datetime) -> Case:
    """An approver's verdict on a held case, committed as production writes it (``casework.plan_resolution``)."""
    change = casework.plan_resolution(held, ledger.mailbox(held.key), effect=effect, state=state,
                                      actor="approver@contoso", reason=f"{state.value} by the approver", rule=RULE,
                                      now=now)  # fmt: skip
    ledger.commit(change)
    return change.cases[0]
