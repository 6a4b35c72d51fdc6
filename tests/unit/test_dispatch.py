"""After each commit: its work on the mailbox's session, its decisions as CloudEvents; a failure costs neither the
decision nor the work (the outbox keeps it, the minute timer carries it out). The service on the in-memory
ledger; the queue is the local one and the events go to a file, both for real."""

from __future__ import annotations

import json
import queue
import threading
from pathlib import Path

import pytest

from shared.bus.decisions_file import DecisionFile
from shared.bus.local import LocalQueue
from shared.bus.port import QueueError, session_of
from shared.domain.model import ActionStatus, CaseState, MailboxKey
from shared.service.dispatch import Dispatch
from tests.factories import AIKO, BLOCKING_POLICY, HOLDING_POLICY, claim, container


class Broken:
    """A queue or topic that is down (every send refused), counting the tries."""

    name = "work"
    sessions = True
    max_deliveries = 3

    def __init__(self, fail_times: int = 10**9) -> None:
        self.tries = 0
        self.fail_times = fail_times
        self.published: list = []

    def send(self, messages) -> None:
        self.tries += 1
        raise QueueError("Service Bus did not answer within 30 s")

    def publish(self, events) -> None:
        self.tries += 1
        if self.tries <= self.fail_times:
            raise QueueError("the topic is unavailable")
        self.published.extend(events)

    def close(self) -> None:
        pass


@pytest.fixture
def wired(tmp_path: Path):
    c = container(tmp_path, BLOCKING_POLICY, in_memory=True)
    queue = LocalQueue(tmp_path / "bus.db", "work", sessions=True, max_deliveries=3)
    events = DecisionFile(tmp_path / "events.jsonl")
    c.service.dispatch = Dispatch(queue, events, pause=lambda s: None)
    yield c, queue, tmp_path / "events.jsonl"
    queue.close()
    c.close()


def events_in(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []


def test_a_blocked_claim_queues_its_work_on_the_mailboxs_session_and_tells_other_systems(wired) -> None:
    c, queue, events = wired
    c.service.handle_claim(claim("contoso-na", op="1"))
    outcome = c.service.handle_claim(claim("contoso-jp", op="2"))
    assert c.service.dispatch.flush(5)
    (work,) = queue.receive(max_messages=5)
    assert work.session == session_of(AIKO) and json.loads(work.body)["case"] == outcome.case_id
    first, second = events_in(events)
    assert (first["data"]["decision"], first["data"]["effect"], first["data"]["case"]) == ("claim", "allow", None)
    assert second["subject"] == f"cases/{outcome.case_id}"
    data = second["data"]
    assert (data["effect"], data["claimant"], data["owner"], data["state"], data["mailbox"]) == (
        "block", "contoso-jp", "contoso-na", "decided", AIKO.address
    )  # fmt: skip
    assert sorted(a["kind"] for a in data["actions"]) == ["demote"]
    assert first["id"] != second["id"]


def test_the_same_decision_gets_the_same_event_id_so_a_consumer_can_drop_a_repeat(wired) -> None:
    c, _, events = wired
    c.service.handle_claim(claim("contoso-na", op="1"))
    c.service.handle_claim(claim("contoso-na", op="1"))  # redelivered: nothing new is committed, nothing published
    c.service.dispatch.flush(5)
    assert len(events_in(events)) == 1


def test_an_approval_is_a_decision_and_leaves_work(tmp_path: Path) -> None:
    c = container(tmp_path, HOLDING_POLICY, in_memory=True)
    queue = LocalQueue(tmp_path / "bus.db", "work", sessions=True, max_deliveries=3)
    c.service.dispatch = Dispatch(queue, DecisionFile(tmp_path / "e.jsonl"))
    c.service.handle_claim(claim("contoso-na", op="1"))
    held = c.service.handle_claim(claim("contoso-jp", op="2")).case_id
    assert held is not None
    c.service.dispatch.flush(5)
    assert queue.receive(max_messages=5) == []  # held: nothing to carry out yet
    c.service.approve(held, actor="approver", reason="moved to Tokyo")
    c.service.dispatch.flush(5)
    (work,) = queue.receive(max_messages=5)
    assert json.loads(work.body)["case"] == held
    resolution = events_in(tmp_path / "e.jsonl")[-1]["data"]
    assert (resolution["decision"], resolution["effect"], resolution["state"]) == ("resolution", "override", "decided")
    queue.close()
    c.close()


def test_a_retried_action_is_carried_out_now(wired) -> None:
    c, queue, _ = wired
    c.service.handle_claim(claim("contoso-na", op="1"))
    case_id = c.service.handle_claim(claim("contoso-jp", op="2")).case_id
    c.service.dispatch.flush(5)
    for d in queue.receive(max_messages=5):
        queue.complete(d)
    (action,) = c.service.case(case_id).actions
    c.ledger.record_attempt(action.id, ActionStatus.FAILED, "403: refused")
    c.service.retry_action(action.id, actor="operator")
    c.service.dispatch.flush(5)
    (work,) = queue.receive(max_messages=5)
    assert json.loads(work.body) == {"case": case_id, "why": "retried"}


def test_a_bus_that_is_down_costs_neither_the_decision_nor_its_work(tmp_path: Path) -> None:
    c = container(tmp_path, BLOCKING_POLICY, in_memory=True)
    broken = Broken()
    c.service.dispatch = Dispatch(broken, broken, pause=lambda s: None)
    c.service.handle_claim(claim("contoso-na", op="1"))
    outcome = c.service.handle_claim(claim("contoso-jp", op="2"))  # returns as ever
    assert c.service.dispatch.flush(5)
    assert broken.tries >= 2  # it was tried
    case = c.service.case(outcome.case_id)
    assert case.state is CaseState.DECIDED and all(a.status is ActionStatus.PENDING for a in case.actions)
    assert c.ledger.pending_actions(10)  # the outbox still holds the work: the minute timer carries it out
    c.close()


def test_decision_events_are_tried_three_times_then_dropped_with_an_error(tmp_path: Path, caplog) -> None:
    c = container(tmp_path, BLOCKING_POLICY, in_memory=True)
    flaky, down = Broken(fail_times=2), Broken()
    c.service.dispatch = Dispatch(None, flaky, pause=lambda s: None)
    c.service.handle_claim(claim("contoso-na", op="1"))
    c.service.dispatch.flush(5)
    assert (flaky.tries, len(flaky.published)) == (3, 1)
    c.service.dispatch = Dispatch(None, down, pause=lambda s: None)
    c.service.handle_claim(claim("contoso-na", key=MailboxKey("kenji.sato@contoso.com"), op="2"))
    c.service.dispatch.flush(5)
    assert down.tries == 3
    assert any("dropped after 3 tries" in r.getMessage() for r in caplog.records)
    c.close()


def test_a_full_backlog_drops_the_hand_over_and_never_blocks_a_decision(tmp_path: Path) -> None:
    c = container(tmp_path, BLOCKING_POLICY, in_memory=True)
    gate = threading.Event()

    class Stuck(Broken):
        def send(self, messages) -> None:
            self.tries += 1
            gate.wait(10)

    stuck = Stuck()
    c.service.dispatch = Dispatch(stuck, None, _backlog=queue.Queue(1))
    for n in range(4):
        key = MailboxKey(f"user{n}@contoso.com")
        c.service.handle_claim(claim("contoso-na", key=key, op=f"a{n}"))
        c.service.handle_claim(claim("contoso-jp", key=key, op=f"b{n}"))  # each returns at once
    gate.set()
    assert c.service.dispatch.flush(10)
    assert stuck.tries == 2  # one being sent, one waiting: the other two were dropped, not waited for
    assert len(c.ledger.pending_actions(100)) == 4  # every decision's work is in the outbox for the timer
    c.close()
