"""The audit log: append-only, hash-chained, and any change to history is found by verify."""

from __future__ import annotations

import itertools
import multiprocessing
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from shared.domain.model import AuditEvent
from shared.ledger import codec
from shared.ledger.port import Ledger
from tests.contract.conftest import T0, Storage, needs_processes


def fill(ledger: Ledger, n: int) -> list[AuditEvent]:
    events = [
        AuditEvent("test.fact", f"subject-{i}", "tester", {"i": i, "note": "ünïcode ✓"}, T0 + timedelta(seconds=i))
        for i in range(1, n + 1)
    ]
    for event in events:
        ledger.append_audit(event)
    return events


def test_appends_are_chained_and_read_back_in_order(ledger: Ledger) -> None:
    events = fill(ledger, 5)
    entries = ledger.audit_entries()
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert [e.event for e in entries] == events
    assert entries[0].prev_hash == codec.GENESIS
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(entries))
    assert [e.seq for e in ledger.audit_entries(after=2, limit=2)] == [3, 4]
    report = ledger.verify_audit()
    assert (report.ok, report.entries, report.first_bad) == (True, 5, None)


def test_append_returns_the_entry_it_wrote(ledger: Ledger) -> None:
    fill(ledger, 2)
    entry = ledger.append_audit(AuditEvent("x", "y", "z", {"nested": {"list": [1, 2]}}, T0))
    assert entry.seq == 3 and ledger.audit_entries(after=2) == [entry]


def test_an_empty_log_verifies(ledger: Ledger) -> None:
    assert ledger.verify_audit().ok and ledger.verify_audit().entries == 0


@pytest.mark.parametrize(
    ("tamper", "first_bad", "reason"),
    [
        (lambda s: s.edit_audit(3, "someone-else"), 3, "changed"),
        (lambda s: s.delete_audit(3), 3, "missing"),
        (lambda s: s.delete_audit(6), 6, "removed"),
    ],
    ids=["edited", "deleted", "truncated-newest"],
)
def test_verify_finds_an_edited_a_deleted_and_a_truncated_entry(ledger: Ledger, storage: Storage, tamper,
                                                                 first_bad: int, reason: str) -> None:  # fmt: skip
    fill(ledger, 6)
    assert ledger.verify_audit().ok
    tamper(storage)
    report = ledger.verify_audit()
    assert not report.ok
    assert report.first_bad == first_bad
    assert report.reason is not None and reason in report.reason


def _append_in_another_process(url: str, count: int, done: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    from tests.contract.conftest import LedgerSpec

    ledger = LedgerSpec("", url).open()
    try:
        for i in range(count):
            ledger.append_audit(AuditEvent("test.other-process", f"p{i}", "tester", {"i": i}))
        done.put(count)
    finally:
        ledger.close()


@pytest.mark.slow
def test_verify_while_others_append_never_raises_a_false_alarm(spec, ledger: Ledger, instances) -> None:
    """Writers in threads, in a second instance and in a second OS process; verify must see a consistent log."""
    needs_processes(spec)
    fill(ledger, 3)
    per_writer = 40 if spec.kind == "sqlite" else 12
    second, checker = instances(), instances()
    ctx = multiprocessing.get_context("spawn")
    done = ctx.Queue()
    process = ctx.Process(target=_append_in_another_process, args=(spec.url, per_writer, done))
    stop = threading.Event()
    reports = []

    def verify_until_stopped() -> None:
        while not stop.is_set():
            reports.append(checker.verify_audit())

    def append(writer: Ledger, name: str) -> None:
        for i in range(per_writer):
            writer.append_audit(AuditEvent("test.thread", f"{name}-{i}", "tester", {"i": i}))

    process.start()
    verifier = threading.Thread(target=verify_until_stopped)
    verifier.start()
    try:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda t: append(ledger if t % 2 else second, f"t{t}"), range(4)))
        assert done.get(timeout=240) == per_writer
    finally:
        stop.set()
        verifier.join(timeout=60)
        process.join(timeout=60)
    alarms = [r for r in reports if not r.ok]
    assert not alarms, f"{len(alarms)} of {len(reports)} verifications cried tamper: {alarms[0]}"
    assert len(reports) >= 3
    final = ledger.verify_audit()
    assert final.ok and final.entries == 3 + 5 * per_writer
