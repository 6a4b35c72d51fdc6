"""The gate decides on the event loop when the ledger is free, and on its threads whenever it would wait.

A decision tried on the loop must never wait there (a held lock would stall every
request the server has) and must never be recorded twice or half: when it meets a
wait it records nothing and the same work runs on the webhook threads, with what is
left of the same deadline. Each case below is one way a decision can meet a wait.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time

import pytest

from functions.deadlines import decide_by, decides_at_once
from shared.domain.model import Effect
from shared.ledger.deadline import Deadline, DeadlineExceeded, WouldWait, may_wait, without_waiting
from tests.factories import claim, container


def _decide(c, op: str, *, seconds: float = 5.0):  # type: ignore[no-untyped-def]
    """Decide JP's claim through ``decide_by`` as the gate does; the outcome and the thread that decided it."""
    where: list[str] = []

    def work():  # type: ignore[no-untyped-def]
        where.append(threading.current_thread().name)
        return c.service.handle_claim(claim("contoso-jp", op=op))

    outcome = asyncio.run(decide_by(Deadline(seconds), work, at_once=decides_at_once(c.ledger)))
    return outcome, where


def test_a_free_sqlite_ledger_decides_on_the_event_loop(tmp_path):
    c = container(tmp_path)
    try:
        outcome, where = _decide(c, "op-free")
        assert outcome.effect is Effect.ALLOW and outcome.recorded
        assert where == [threading.current_thread().name]  # asyncio.run's loop runs on this thread
        assert [r.org for r in c.ledger.claims(claim("contoso-jp").key)] == ["contoso-jp"]
    finally:
        c.close()


def test_a_writer_of_this_process_holding_the_ledger_sends_the_decision_to_the_threads(tmp_path):
    c = container(tmp_path)
    try:
        c.ledger._writer.acquire()  # another request's commit is under way
        threading.Timer(0.3, c.ledger._writer.release).start()
        started = time.monotonic()
        outcome, where = _decide(c, "op-busy")
        assert time.monotonic() - started >= 0.25  # it waited for the writer, on a thread
        assert where[-1].startswith("orgguard-webhook")
        assert outcome.effect is Effect.ALLOW
        assert len(c.ledger.claims(claim("contoso-jp").key)) == 1  # the try on the loop recorded nothing
        assert c.ledger.verify_audit().ok
    finally:
        c.close()


def test_another_process_holding_the_write_lock_is_waited_for_on_a_thread_within_the_deadline(tmp_path):
    c = container(tmp_path)  # the holder is a connection of its own: SQLite's file lock, as another process holds it
    holder = sqlite3.connect(tmp_path / "ledger.db", isolation_level=None, check_same_thread=False)
    try:
        holder.execute("BEGIN IMMEDIATE")
        threading.Timer(0.3, lambda: holder.execute("ROLLBACK")).start()
        outcome, where = _decide(c, "op-locked")
        assert where[-1].startswith("orgguard-webhook") and outcome.effect is Effect.ALLOW

        holder.execute("BEGIN IMMEDIATE")  # and held past the deadline: no answer but "could not decide"
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded):
            _decide(c, "op-stuck", seconds=0.5)
        assert time.monotonic() - started < 1.5
        holder.execute("ROLLBACK")
        time.sleep(0.6)
        assert len(c.ledger.claims(claim("contoso-jp").key)) == 1  # op-locked's; nothing of op-stuck, ever
    finally:
        holder.close()
        c.close()


def test_a_competing_claim_that_must_back_off_goes_to_the_threads_and_is_decided_once(tmp_path):
    c = container(tmp_path)
    try:
        c.service.handle_claim(claim("contoso-na", op="seed"))
        real = c.ledger.commit
        raced: list[bool] = []

        def commit_after_a_rival(change):  # type: ignore[no-untyped-def]
            if not raced:  # a rival writer moves the mailbox between this decision's read and its commit
                raced.append(True)
                c.service.handle_claim(claim("contoso-jp", op="rival"))
            return real(change)

        c.ledger.commit = commit_after_a_rival  # type: ignore[method-assign]
        outcome, where = _decide(c, "op-raced")
        assert where[0] == threading.current_thread().name and where[-1].startswith("orgguard-webhook")
        assert outcome.effect is Effect.BLOCK  # NA owns it (the blocking policy); JP's rival claim was blocked too
        assert len([r for r in c.ledger.claims(claim("contoso-jp").key) if r.org == "contoso-jp"]) == 2  # each once
        assert c.ledger.verify_audit().ok
    finally:
        c.close()


def test_may_wait_only_refuses_inside_without_waiting():
    may_wait("anything")  # outside: waiting is allowed
    with without_waiting(), pytest.raises(WouldWait):
        may_wait("ask the user directory")
    may_wait("anything")  # and allowed again after
