"""The work queue contract: what every ``WorkQueue`` must do, run for real on the local (SQLite) queue.

Service Bus' own semantics, each tried the way production meets it: two consumers at once,
a consumer that crashes holding a lock, a message that keeps failing, a message scheduled
for later, an operator replaying a dead letter twice at once. No Service Bus broker can run
on these machines; the Service Bus adapter is tested against autospec'd SDK clients and the
SDK's real message types in ``tests/unit/test_servicebus_queue.py``.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.bus.local import LocalQueue
from shared.bus.port import (
    MAX_DELIVERIES_REASON,
    LockLost,
    Message,
    NoSuchDeadLetter,
    QueueError,
    Received,
    WorkQueue,
)


class Clock:
    """Seconds that move only when the test says so: lock expiry and scheduling without sleeping."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def at(self, seconds: float) -> datetime:
        return datetime.fromtimestamp(self.now + seconds, UTC)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def opened(tmp_path: Path, clock: Clock) -> Iterator[Callable[..., WorkQueue]]:
    """Open an instance of a queue in one file (as several consumers, threads or processes would)."""
    queues: list[LocalQueue] = []

    def open_queue(name: str = "work", *, sessions: bool = True, max_deliveries: int = 3, lock_s: float = 30.0):
        q = LocalQueue(
            tmp_path / "bus.db", name, sessions=sessions, max_deliveries=max_deliveries, lock_s=lock_s, clock=clock
        )
        queues.append(q)
        return q

    yield open_queue
    for q in queues:
        q.close()


def msg(n: int | str, session: str | None = "s1", **kw) -> Message:
    return Message(body=f"body {n}".encode(), message_id=f"m{n}", session=session, **kw)


def bodies(deliveries) -> list[bytes]:
    return [d.body for d in deliveries]


# --- what goes in comes out, once ---------------------------------------------------------------


def test_a_message_comes_out_as_it_went_in_and_once_completed_is_gone(opened) -> None:
    q = opened()
    q.send([msg(1, properties={"kind": "work", "n": 2, "flag": True})])
    (d,) = q.receive(max_messages=5)
    assert (d.message_id, d.body, d.session, d.delivery_count) == ("m1", b"body 1", "s1", 1)
    assert dict(d.properties) == {"kind": "work", "n": 2, "flag": True}
    assert d.locked_until is not None and d.enqueued_at is not None
    q.complete(d)
    assert q.receive(max_messages=5) == []
    assert q.counts().active == 0


def test_a_session_queue_refuses_a_message_without_a_session(opened) -> None:
    q = opened()
    with pytest.raises(QueueError, match="sessions"):
        q.send([msg(1, session=None)])
    assert q.counts().active == 0


def test_a_locked_message_is_invisible_to_every_other_consumer(opened) -> None:
    a, b = opened(sessions=False), opened(sessions=False)
    a.send([msg(1, session=None)])
    assert len(a.receive()) == 1
    assert b.receive(max_messages=5) == []


# --- sessions: one mailbox's work in order, on one consumer at a time -----------------------------


def test_a_session_gives_its_next_message_only_once_the_one_before_is_settled(opened) -> None:
    q = opened()
    q.send([msg(1, "a"), msg(2, "a"), msg(3, "b"), msg(4, "a")])
    first = q.receive(max_messages=10)
    assert bodies(first) == [b"body 1", b"body 3"]  # one per session, each session's oldest
    assert q.receive(max_messages=10) == []  # both sessions are busy
    q.complete(first[0])
    (second,) = q.receive(max_messages=10)
    assert second.body == b"body 2"
    q.dead_letter(second, "test", "a head dead-lettered")
    (third,) = q.receive(max_messages=10)
    assert third.body == b"body 4"  # a dead-lettered head frees its session


def test_two_consumers_never_work_one_session_at_once_and_keep_its_order(opened) -> None:
    """Two consumers (threads, each its own instance of the queue) drain 6 sessions of 15 messages."""
    a, b = opened(lock_s=60), opened(lock_s=60)
    a.send([msg(f"{s}-{i}", f"s{s}") for i in range(15) for s in range(6)])
    seen: dict[str, list[int]] = defaultdict(list)
    busy: set[str] = set()
    overlap: list[str] = []
    guard = threading.Lock()

    def consume(q: WorkQueue) -> None:
        idle = 0
        while idle < 3:
            got = q.receive(max_messages=2, wait_s=0.05)
            if not got:
                idle += 1
                continue
            idle = 0
            for d in got:
                with guard:
                    if d.session in busy:
                        overlap.append(d.session or "")
                    busy.add(d.session or "")
                time.sleep(0.001)
                with guard:
                    seen[d.session or ""].append(int(d.body.decode().split("-")[1]))
                    busy.discard(d.session or "")
                q.complete(d)

    threads = [threading.Thread(target=consume, args=(q,)) for q in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert overlap == []
    assert {s: order for s, order in seen.items()} == {f"s{s}": list(range(15)) for s in range(6)}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    sends=st.lists(st.sampled_from("abc"), min_size=1, max_size=25),
    settle=st.lists(st.sampled_from(["complete", "abandon"]), min_size=60, max_size=60),
)
def test_whatever_is_abandoned_a_session_completes_in_the_order_it_was_sent(tmp_path_factory, sends, settle) -> None:
    q = LocalQueue(tmp_path_factory.mktemp("q") / "bus.db", "work", sessions=True, max_deliveries=1000)
    try:
        q.send([msg(f"{s}{i}", s) for i, s in enumerate(sends)])
        completed: dict[str, list[str]] = defaultdict(list)
        choices = iter(settle)
        while True:
            got = q.receive(max_messages=3)
            if not got:
                break
            for d in got:
                if next(choices, "complete") == "complete":
                    q.complete(d)
                    completed[d.session or ""].append(d.message_id)
                else:
                    q.abandon(d)
        expected: dict[str, list[str]] = defaultdict(list)
        for i, s in enumerate(sends):
            expected[s].append(f"m{s}{i}")
        assert completed == expected
    finally:
        q.close()


# --- locks, crashes and retries -----------------------------------------------------------------


def test_a_crashed_consumers_message_comes_back_when_its_lock_runs_out(opened, clock) -> None:
    crashed, survivor = opened(lock_s=30), opened(lock_s=30)
    crashed.send([msg(1), msg(2)])
    (held,) = crashed.receive()
    assert survivor.receive() == []  # locked, and its session with it
    clock.advance(31)
    (again,) = survivor.receive()
    assert (again.message_id, again.delivery_count) == ("m1", 2)
    with pytest.raises(LockLost):
        crashed.complete(held)  # too late: the survivor has it
    survivor.complete(again)
    (nxt,) = survivor.receive()
    assert nxt.message_id == "m2"


def test_settling_after_the_lock_ran_out_is_refused_even_before_anyone_else_takes_it(opened, clock) -> None:
    q = opened(lock_s=5)
    q.send([msg(1)])
    (d,) = q.receive()
    clock.advance(6)
    for settle in (q.complete, q.abandon, lambda x: q.dead_letter(x, "r", "d")):
        with pytest.raises(LockLost):
            settle(d)
    assert q.counts().active == 1


def test_a_consumer_process_that_dies_holding_a_message_loses_it_to_another(tmp_path: Path) -> None:
    path = tmp_path / "bus.db"
    q = LocalQueue(path, "work", sessions=True, max_deliveries=3, lock_s=0.5)
    q.send([msg(1)])
    script = (
        "import os, sys\n"
        "from shared.bus.local import LocalQueue\n"
        f"q = LocalQueue({str(path)!r}, 'work', sessions=True, max_deliveries=3, lock_s=0.5)\n"
        "got = q.receive(wait_s=5)\n"
        "sys.stdout.write(got[0].message_id)\n"
        "sys.stdout.flush()\n"
        "os._exit(9)\n"  # dies holding the lock, settling nothing
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert (done.returncode, done.stdout) == (9, "m1"), done.stderr
    assert q.receive() == []  # still locked by the dead process...
    (d,) = q.receive(wait_s=5)  # ...until its lock runs out
    assert (d.message_id, d.delivery_count) == ("m1", 2)
    q.complete(d)
    q.close()


def test_an_abandoned_message_is_retried_at_once_and_dead_lettered_after_its_last_delivery(opened) -> None:
    q = opened(max_deliveries=3)
    q.send([msg(1), msg(2)])
    counts = []
    for _ in range(3):
        (d,) = q.receive()
        counts.append((d.message_id, d.delivery_count))
        q.abandon(d)
    assert counts == [("m1", 1), ("m1", 2), ("m1", 3)]
    (dead,) = q.dead_letters()
    assert (dead.message_id, dead.reason, dead.delivery_count) == ("m1", MAX_DELIVERIES_REASON, 3)
    assert "3 time(s)" in dead.description
    (nxt,) = q.receive()
    assert nxt.message_id == "m2"  # the session goes on


def test_a_lock_that_runs_out_on_the_last_delivery_dead_letters_the_message(opened, clock) -> None:
    q = opened(max_deliveries=2, lock_s=10)
    q.send([msg(1)])
    for _ in range(2):
        assert len(q.receive()) == 1
        clock.advance(11)
    assert q.receive() == []
    assert [(d.message_id, d.reason) for d in q.dead_letters()] == [("m1", MAX_DELIVERIES_REASON)]


def test_a_receiver_waiting_for_work_wakes_as_soon_as_it_is_sent(opened) -> None:
    q = opened()
    got: list[float] = []

    def wait() -> None:
        start = time.monotonic()
        q.receive(wait_s=20)
        got.append(time.monotonic() - start)

    t = threading.Thread(target=wait)
    t.start()
    time.sleep(0.3)
    opened().send([msg(1)])  # another instance, as the deciding thread has
    t.join(20)
    assert got and got[0] < 5


# --- scheduled delivery -------------------------------------------------------------------------


def test_a_scheduled_message_waits_until_its_time_and_does_not_hold_up_its_session(opened, clock) -> None:
    q = opened()
    q.send([msg(1, deliver_at=clock.at(60)), msg(2)])
    assert q.counts().scheduled == 1
    (d,) = q.receive(max_messages=5)
    assert d.message_id == "m2"
    q.complete(d)
    assert q.receive() == []
    clock.advance(61)
    (later,) = q.receive()
    assert later.message_id == "m1"


# --- dead letters: reasons, replay, purge -------------------------------------------------------


def test_a_dead_letter_keeps_its_reason_and_is_replayed_as_it_was(opened) -> None:
    q = opened()
    q.send([msg(1, "mailbox-1", properties={"kind": "work"})])
    (d,) = q.receive()
    q.dead_letter(d, "malformed", "the body is not JSON")
    (dead,) = q.dead_letters()
    assert (dead.reason, dead.description, dead.session, dead.queue) == (
        "malformed", "the body is not JSON", "mailbox-1", "work"
    )  # fmt: skip
    assert q.find(dead.id) == dead
    assert q.counts().dead == 1
    replayed = q.replay(dead.id)
    assert replayed.id == dead.id
    assert q.dead_letters() == [] and q.find(dead.id) is None
    (again,) = q.receive()
    assert (again.message_id, again.body, again.session, again.delivery_count) == ("m1", b"body 1", "mailbox-1", 1)
    assert dict(again.properties) == {"kind": "work"}
    with pytest.raises(NoSuchDeadLetter):
        q.replay(dead.id)


def test_of_two_operators_replaying_one_dead_letter_at_once_one_does_it(opened) -> None:
    q = opened(sessions=False)
    q.send([msg(1, None)])
    (d,) = q.receive()
    q.dead_letter(d, "r", "d")
    (dead,) = q.dead_letters()
    results: list[str] = []
    barrier = threading.Barrier(2)

    def replay() -> None:
        mine = opened(sessions=False)
        barrier.wait()
        try:
            mine.replay(dead.id)
            results.append("replayed")
        except NoSuchDeadLetter:
            results.append("gone")

    threads = [threading.Thread(target=replay) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(results) == ["gone", "replayed"]
    assert len(q.receive(max_messages=5)) == 1  # once, not twice


def test_a_purged_dead_letter_is_gone_for_good(opened) -> None:
    q = opened()
    q.send([msg(1)])
    (d,) = q.receive()
    q.dead_letter(d, "r", "d")
    (dead,) = q.dead_letters()
    assert q.purge(dead.id).message_id == "m1"
    assert q.dead_letters() == [] and q.receive() == []
    with pytest.raises(NoSuchDeadLetter):
        q.purge(dead.id)


def test_a_message_another_host_received_is_dead_lettered_at_once_with_its_reason(opened) -> None:
    q = opened("dataverse", sessions=False, max_deliveries=5)
    seen = Received(
        b"{not json", "sb-1", None, {"http://schemas.microsoft.com/xrm/2011/Claims/Organization": "x"}, delivery_count=2
    )
    q.reject(seen, "malformed", "the body is not a RemoteExecutionContext")
    (dead,) = q.dead_letters()
    assert (dead.message_id, dead.reason, dead.delivery_count, dead.body) == ("sb-1", "malformed", 2, b"{not json")
    q.replay(dead.id)
    (d,) = q.receive()
    assert d.body == b"{not json" and d.delivery_count == 1


@pytest.mark.parametrize("bad", ["", "work", "work-", "work-x", "dataverse-1", "work-1-2", " "])
def test_a_dead_letter_id_that_names_nothing_here_finds_nothing_and_changes_nothing(opened, bad) -> None:
    q = opened()
    q.send([msg(1)])
    (d,) = q.receive()
    q.dead_letter(d, "r", "d")
    assert q.find(bad) is None
    with pytest.raises(NoSuchDeadLetter):
        q.replay(bad)
    with pytest.raises(NoSuchDeadLetter):
        q.purge(bad)
    assert len(q.dead_letters()) == 1


def test_queues_in_one_file_keep_to_themselves(opened) -> None:
    work, inbound = opened("work"), opened("dataverse", sessions=False)
    work.send([msg(1)])
    inbound.send([msg(2, None)])
    assert [d.message_id for d in inbound.receive(max_messages=5)] == ["m2"]
    (d,) = work.receive(max_messages=5)
    work.dead_letter(d, "r", "d")
    assert inbound.dead_letters() == [] and inbound.find(work.dead_letters()[0].id) is None


def test_settling_a_delivery_from_another_queue_is_refused(opened) -> None:
    work, inbound = opened("work"), opened("dataverse", sessions=False)
    work.send([msg(1)])
    (d,) = work.receive()
    with pytest.raises(LockLost):
        inbound.complete(d)
    work.complete(d)


def test_counts_say_what_is_ready_scheduled_and_dead(opened, clock) -> None:
    q = opened()
    q.send([msg(1, "a"), msg(2, "b"), msg(3, "c", deliver_at=clock.at(timedelta(minutes=5).total_seconds()))])
    (d, _) = q.receive(max_messages=2)
    q.dead_letter(d, "r", "d")
    counts = q.counts()
    assert (counts.queue, counts.active, counts.scheduled, counts.dead) == ("work", 1, 1, 1)
