"""The SQLite ledger's write path: WAL checkpoints off it, and what it no longer reads on every decision.

A checkpoint inside a COMMIT makes that one decision pay for copying the whole log
(a gate answer of hundreds of milliseconds among answers of one); the ledger leaves
checkpoints to a thread of their own. The policy and the audit head are read
cheaply on each decision, so another process's new policy must still be seen.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from shared.domain.model import MailboxKey
from shared.ledger import sqlite as sqlite_ledger
from shared.ledger.checkpoints import Checkpointer
from shared.ledger.sqlite import SqliteLedger
from shared.service.orgguard import OrgGuard
from tests.factories import BLOCKING_POLICY, OVERRIDING_POLICY, claim, registry

PAGE = 4096
SQLITE_AUTOCHECKPOINT_PAGES = 1000  # SQLite's default: a COMMIT past it checkpoints the log itself


def decide_many(ledger: SqliteLedger, n: int, start: int = 0) -> None:
    service = OrgGuard(ledger, registry())
    service.save_policy(BLOCKING_POLICY, actor="test")
    for i in range(start, start + n):
        service.handle_claim(claim("contoso-jp", key=MailboxKey(f"user{i}@contoso.com"), op=f"op-{i}"))


def test_commits_leave_the_log_to_the_checkpoint_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    slow = Checkpointer(every=3600)  # a round that never comes while the decisions are made
    monkeypatch.setattr(sqlite_ledger, "CHECKPOINTS", slow)
    path = tmp_path / "ledger.db"
    ledger = SqliteLedger(path)
    size_before = path.stat().st_size

    decide_many(ledger, 400)

    wal = Path(f"{path}-wal")
    assert wal.stat().st_size > SQLITE_AUTOCHECKPOINT_PAGES * PAGE  # past the point where a commit would checkpoint
    assert path.stat().st_size == size_before  # ...and none did: every page is still only in the log

    ledger.checkpoint()  # what the thread's round does
    assert path.stat().st_size > size_before
    ledger.close()
    assert not wal.exists() or wal.stat().st_size == 0  # closing folds in the rest and empties the log


def test_the_checkpoint_thread_folds_the_log_in_by_itself(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_ledger, "CHECKPOINTS", Checkpointer(every=0.05))
    path = tmp_path / "ledger.db"
    ledger = SqliteLedger(path)
    size_before = path.stat().st_size
    decide_many(ledger, 50)
    deadline = time.monotonic() + 10
    while path.stat().st_size == size_before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert path.stat().st_size > size_before
    assert ledger.audit_entries(limit=1)  # the ledger reads on while the thread works
    ledger.close()


def test_a_policy_saved_by_another_process_is_the_one_decisions_use(tmp_path: Path) -> None:
    here, there = SqliteLedger(tmp_path / "ledger.db"), SqliteLedger(tmp_path / "ledger.db")
    service = OrgGuard(here, registry())
    service.save_policy(BLOCKING_POLICY, actor="test")
    assert service.policy().default.value == "block"

    OrgGuard(there, registry()).save_policy(OVERRIDING_POLICY, actor="other")

    assert here.policy().text == OVERRIDING_POLICY  # type: ignore[union-attr]
    assert service.policy().default.value == "override"


def test_the_audit_chain_stays_whole_across_two_writers(tmp_path: Path) -> None:
    here, there = SqliteLedger(tmp_path / "ledger.db"), SqliteLedger(tmp_path / "ledger.db")
    decide_many(here, 5)
    decide_many(there, 5, start=5)  # the other writer's entries link to this one's, and back
    decide_many(here, 5, start=10)
    report = here.verify_audit()
    assert report.ok, report.reason
    assert report.entries == there.verify_audit().entries >= 18  # 15 claims, 3 policy versions
