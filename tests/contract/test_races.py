"""Races: threads and OS processes sharing one ledger must not break invariants 1-4.

Each writer runs the service layer's loop (read, decide, commit, and on a
conflict read and decide again). Afterwards the ledger's own records must
tell one linear story: every version decided once, every owner handed on
from the one before, every event taking effect exactly once, and an audit
chain that verifies.
"""

from __future__ import annotations

import multiprocessing
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from itertools import count, pairwise

import pytest

from shared.domain import model
from shared.ledger.port import ConcurrencyConflict, DuplicateEvent, Ledger
from tests.contract.conftest import Clock, LedgerSpec, contested, in_processes, mailbox, needs_processes

pytestmark = pytest.mark.slow
ORGS = ("contoso-na", "contoso-jp", "contoso-eu", "contoso-dev")


def take_over(ledger: Ledger, key: model.MailboxKey, org: str, event_key: str) -> bool:
    """``org`` takes the mailbox: one decision, retried until it lands; False when the event was done.

    A writer that lost a race waits a little, growing and jittered, before deciding again, as a client of
    optimistic concurrency should (without it, writers of Table Storage mostly collide with each other).

    Not a change production writes (a take-over there is ``overrides.plan_move``, which also opens a case
    with two actions and keeps no claim record): this one carries the version, the previous owner and the
    event in its audit entry and keeps its claim, so the story can be checked from the ledger's own
    records, and the races stay about the mailbox aggregate rather than the outbox.
    """
    for attempt in count():
        if attempt:
            time.sleep(random.uniform(0, min(0.2, 0.01 * 2**attempt)))
        if ledger.event(event_key) is not None:
            return False
        view = ledger.mailbox(key)
        now = model.utcnow()
        version = view.version + 1
        previous = view.ownership.owner if view.ownership else None
        data: dict[str, object] = {"version": version, "owner": org, "previous": previous, "event": event_key}
        change = model.Change(
            key, view.version, model.Ownership(key, org, now, "race", version),
            model.EventOutcome(event_key, model.Effect.OVERRIDE, None, now),
            model.ClaimRecord(
                key, org, model.ClaimKind.ADMIN, model.Origin.ADMIN, event_key, model.Effect.OVERRIDE, None, now
            ),
            audit=(model.AuditEvent("owner.set", key.address, org, data, now),),
        )  # fmt: skip
        try:
            ledger.commit(change)
        except ConcurrencyConflict:
            continue
        except DuplicateEvent:
            return False
        return True


def assert_one_story(ledger: Ledger, keys: dict[model.MailboxKey, list[str]]) -> None:
    """Per mailbox: versions 1..n each decided once, each owner taking over from the previous one."""
    report = ledger.verify_audit()
    assert report.ok, report
    entries = [e.event for e in ledger.audit_entries(limit=100_000) if e.event.kind == "owner.set"]
    for key, events in keys.items():
        view = ledger.mailbox(key)
        assert view.version == len(events)
        story = sorted((e.data for e in entries if e.subject == key.address), key=lambda d: int(d["version"]))  # type: ignore[arg-type]
        assert [d["version"] for d in story] == list(range(1, len(events) + 1))
        assert all(b["previous"] == a["owner"] for a, b in pairwise(story))
        assert view.ownership is not None and view.ownership.owner == story[-1]["owner"]
        assert Counter(d["event"] for d in story) == Counter(events)  # every event once, none lost
        claims = ledger.claims(key, limit=len(events) + 10)
        assert sorted(c.event_key for c in claims) == sorted(events)
        assert all(ledger.event(e) is not None for e in events)


def test_threads_racing_on_one_mailbox_leave_one_linear_history(ledger: Ledger, spec: LedgerSpec,
                                                                instances: Callable[[], Ledger]) -> None:  # fmt: skip
    # Every Table Storage commit is ~7 HTTP calls and two entity-group transactions (~10 ms of SDK CPU each
    # here), and 8 writers on one key mostly collide: fewer commits there keep the suite fast, not the race easy.
    threads, per_thread = 8, (50 if spec.kind == "sqlite" else 15)
    key = mailbox(1)
    second = instances()  # half the threads use a second instance, as a second app instance would
    won = Counter[int]()
    lock = threading.Lock()

    def run(t: int) -> None:
        me = ledger if t % 2 else second
        for i in range(per_thread):
            if take_over(me, key, ORGS[t % len(ORGS)], f"t{t}:op-{i}"):
                with lock:
                    won[t] += 1

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(run, range(threads)))
    assert sum(won.values()) == threads * per_thread
    assert_one_story(ledger, {key: [f"t{t}:op-{i}" for t in range(threads) for i in range(per_thread)]})


def test_threads_redelivering_the_same_events_apply_each_once(ledger: Ledger) -> None:
    keys = {mailbox(i): [f"m{i}:op-{n}" for n in range(10)] for i in range(3)}
    work = [(key, e) for key, events in keys.items() for e in events]

    def run(seed: int) -> int:
        mine = work[:]
        random.Random(seed).shuffle(mine)
        return sum(take_over(ledger, key, ORGS[seed % 4], e) for key, e in mine)

    with ThreadPoolExecutor(6) as pool:
        assert sum(pool.map(run, range(6))) == len(work)
    assert_one_story(ledger, keys)


def test_concurrent_appends_make_one_chain(ledger: Ledger, instances: Callable[[], Ledger]) -> None:
    second = instances()

    def run(t: int) -> list[int]:
        me = ledger if t % 2 else second
        return [me.append_audit(model.AuditEvent("race", f"t{t}", "tester", {"i": i})).seq for i in range(15)]

    with ThreadPoolExecutor(6) as pool:
        seqs = [seq for got in pool.map(run, range(6)) for seq in got]
    assert sorted(seqs) == list(range(1, 91))
    report = ledger.verify_audit()
    assert report.ok and report.entries == 90


def test_attempts_racing_on_one_case_settle_it_once(ledger: Ledger, instances: Callable[[], Ledger]) -> None:
    second = instances()
    cases = [contested(ledger, Clock(), model.Effect.BLOCK) for _ in range(3)]
    work = [(a.id, i % 2) for case in cases for i, a in enumerate(case.actions)]

    def run(item: tuple[str, int]) -> None:
        action_id, which = item
        (ledger if which else second).record_attempt(action_id, model.ActionStatus.APPLIED)

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(run, work))
    for case in cases:
        stored = ledger.case(case.id)
        assert stored is not None and stored.state is model.CaseState.APPLIED
        assert [h.note for h in stored.history].count("every action applied") == 1
        assert all(a.status is model.ActionStatus.APPLIED and a.attempts == 1 for a in stored.actions)
    assert ledger.pending_actions() == []
    assert ledger.verify_audit().ok


def hammer(url: str, seed: int, work: list[tuple[str, str]], out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    """A second OS process: open the same ledger and take every event in its own order."""
    ledger = LedgerSpec("", url).open()
    try:
        mine = work[:]
        random.Random(seed).shuffle(mine)
        won = [event for address, event in mine if take_over(ledger, model.MailboxKey(address), ORGS[seed % 4], event)]
        out.put(won)
    finally:
        ledger.close()


def test_two_processes_sharing_a_ledger_apply_every_event_exactly_once(spec: LedgerSpec, ledger: Ledger) -> None:
    needs_processes(spec)
    keys = {mailbox(i): [f"m{i}:op-{n}" for n in range(12)] for i in range(4)}
    work = [(key.address, e) for key, events in keys.items() for e in events]
    ledger.ping()  # the tables exist before the children start
    won = in_processes(hammer, [(spec.url, seed, work) for seed in (1, 2)], timeout=240)
    assert sorted(won[0] + won[1]) == sorted(e for _, e in work)  # each event won by exactly one process
    assert not set(won[0]) & set(won[1])
    assert_one_story(ledger, keys)
