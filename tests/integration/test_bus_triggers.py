"""The Service Bus triggers as the Functions host calls them, with OrgGuard's queues on the local queue.

Settlement by how the function ends: it returns (the host completes the message), it dead-letters
a copy with the reason through the queue port and returns, or it raises (the host abandons and
Service Bus delivers it again).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from azure.functions.servicebus import ServiceBusMessage

from shared import bootstrap
from shared.bus.port import session_of
from shared.domain.model import ActionStatus, CaseQuery, Effect
from shared.ledger.port import LedgerError
from tests.factories import AIKO, BLOCKING_POLICY, claim, container, fixture, ledger_snapshot, registry

NOBODY = "http://127.0.0.1:9"  # the orgs answer nothing here: every write is deferred


@pytest.fixture
def live(tmp_path: Path):
    c = container(tmp_path, BLOCKING_POLICY, orgs=registry(NOBODY), bus=f"sqlite:///{tmp_path / 'bus.db'}")
    c.service.handle_claim(claim("contoso-na", op="seed-owner"))
    bootstrap.install(c)
    yield c
    bootstrap.install(None)
    c.close()


def sb_message(body: object, *, message_id: str | None = None, delivery_count: int = 1) -> ServiceBusMessage:
    sb = fixture("servicebus-message.json")
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return ServiceBusMessage(
        body=raw,
        message_id=message_id or sb["message_id"],
        application_properties=sb["application_properties"],
        user_properties={},
        content_type="application/json",
        delivery_count=delivery_count,
    )


def work_message(body: bytes, *, session: str) -> ServiceBusMessage:
    return ServiceBusMessage(
        body=body, message_id="w-1", session_id=session, application_properties={}, user_properties={}
    )


def drain(c: bootstrap.Container) -> list:
    c.service.dispatch.flush(5)
    assert c.bus.work is not None
    got = c.bus.work.receive(max_messages=10)
    for d in got:
        c.bus.work.complete(d)
    return got


def test_a_decided_message_queues_its_work_on_the_mailboxs_session(live) -> None:
    from functions.bus_triggers import servicebus_events

    drain(live)  # the seed claim's
    servicebus_events(sb_message(fixture("servicebus-message.json")["body"]))
    (case,) = live.ledger.cases(CaseQuery(limit=5)).items
    assert case.decision.effect is Effect.BLOCK
    (work,) = drain(live)
    assert work.session == session_of(AIKO)
    assert json.loads(work.body)["case"] == case.id


@pytest.mark.parametrize(
    ("mangle", "reason", "words"),
    [
        (lambda body: b"{oops", "malformed", "not valid JSON"),
        (lambda body: {**body, "OrganizationId": "0b7d5c1e-0000-4000-8000-00000000abcd"}, "unknown-org", "registered"),
        (lambda body: {**body, "PrimaryEntityName": "account"}, "not-a-mailbox", "mailbox"),
        (lambda body: {**body, "MessageName": 7}, "malformed", "string"),
    ],
)
def test_a_message_that_can_never_be_decided_is_dead_lettered_at_once_with_its_reason(live, mangle, reason, words):
    from functions.bus_triggers import servicebus_events

    before = ledger_snapshot(live)
    servicebus_events(sb_message(mangle(fixture("servicebus-message.json")["body"]), message_id="poison-1"))
    assert ledger_snapshot(live) == before
    (dead,) = live.bus.inbound.dead_letters()
    assert (dead.message_id, dead.reason, dead.queue, dead.delivery_count) == ("poison-1", reason, "dataverse", 1)
    assert words in dead.description
    assert dict(dead.properties) == fixture("servicebus-message.json")["application_properties"]


def test_a_transient_failure_is_given_back_to_be_delivered_again_not_dead_lettered(live, monkeypatch) -> None:
    from functions.bus_triggers import Unsettled, servicebus_events

    def down(*args, **kwargs):
        raise LedgerError("the ledger is unavailable: disk I/O error")

    monkeypatch.setattr(live.ledger, "mailbox", down)
    with pytest.raises(Unsettled, match="disk I/O error"):
        servicebus_events(sb_message(fixture("servicebus-message.json")["body"]))
    assert live.bus.inbound.dead_letters() == []
    monkeypatch.undo()
    servicebus_events(sb_message(fixture("servicebus-message.json")["body"], delivery_count=2))  # delivered again
    assert len(live.ledger.cases(CaseQuery(limit=5)).items) == 1


def test_a_work_message_runs_the_outbox_and_schedules_the_next_try_on_its_session(live, monkeypatch) -> None:
    """The outbox runs at once; an action it had to defer (429, 5xx) gets its wake-up scheduled at its next try."""
    from functions.bus_triggers import handle_work, servicebus_events

    servicebus_events(sb_message(fixture("servicebus-message.json")["body"]))
    (work,) = [w for w in drain(live) if json.loads(w.body)["case"] != live_seed_case(live)]
    case_id = json.loads(work.body)["case"]
    retry_at = datetime.now(UTC) + timedelta(seconds=90)
    ran = []

    async def outbox_that_is_throttled() -> None:  # what the executor records for a 429 with Retry-After: 90
        ran.append(case_id)
        for a in live.service.case(case_id).actions:
            live.ledger.record_attempt(a.id, ActionStatus.PENDING, "429: throttled", retry_at=retry_at)

    monkeypatch.setattr(live, "run_actions", outbox_that_is_throttled)
    verdict = handle_work(work_message(work.body, session=work.session))
    assert verdict.settle == "complete" and ran == [case_id]
    counts = live.bus.work.counts()
    assert (counts.active, counts.scheduled) == (0, 1)


def live_seed_case(live) -> str | None:
    seeded = [c for c in live.ledger.cases(CaseQuery(limit=5)).items if c.claimant == "contoso-na"]
    return seeded[0].id if seeded else None


def test_a_work_message_that_names_no_case_is_dead_lettered_with_its_reason(live) -> None:
    from functions.bus_triggers import handle_work

    handle_work(work_message(b'{"case": "no-such-case"}', session="mbx-x"))
    handle_work(work_message(b"not json", session="mbx-y"))
    reasons = sorted((d.reason, d.session) for d in live.bus.work.dead_letters())
    assert reasons == [("malformed-work", "mbx-y"), ("unknown-case", "mbx-x")]
