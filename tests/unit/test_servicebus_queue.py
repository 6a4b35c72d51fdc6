"""The Service Bus adapter, against autospec'd SDK clients and the SDK's real message types.

No Service Bus broker can run on these machines (the official emulator is a Docker image, and
there is no Docker engine here). So these tests pin what the adapter sends to Service Bus and
how it settles: the session ids, the scheduled enqueue times, the dead-letter reasons and
descriptions, the settlement calls, the dead-letter sub-queue and ``try_timeout``. The clients
are ``create_autospec`` of the SDK's aio classes (a wrong argument fails as the SDK would) and
every message the adapter sends is the SDK's own ``ServiceBusMessage``, every message it
receives a ``ServiceBusReceivedMessage`` built from a real AMQP message.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest.mock import create_autospec

import pytest
from azure.servicebus import NEXT_AVAILABLE_SESSION, ServiceBusMessage, ServiceBusReceivedMessage, ServiceBusSubQueue
from azure.servicebus._pyamqp.message import Header, Properties
from azure.servicebus._pyamqp.message import Message as AmqpMessage
from azure.servicebus.aio import ServiceBusClient, ServiceBusReceiver, ServiceBusSender
from azure.servicebus.exceptions import MessageLockLostError, OperationTimeoutError, ServiceBusConnectionError

from shared.bus.decisions import CloudEvent
from shared.bus.port import Delivery, LockLost, Message, NoSuchDeadLetter, QueueError, Received
from shared.bus.servicebus import ServiceBus, connector

MAIN = "sb-main.servicebus.windows.net"
INBOUND = "sb-dataverse.servicebus.windows.net"
T0 = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


def received(
    body: bytes,
    *,
    receiver: Any,
    message_id: str = "m1",
    session: str | None = None,
    seq: int = 1,
    deliveries: int = 0,
    app: dict[str, Any] | None = None,
) -> ServiceBusReceivedMessage:
    """What the SDK hands a receiver: a real ServiceBusReceivedMessage over a real AMQP message."""
    millis = int(T0.timestamp() * 1000)
    amqp = AmqpMessage(
        header=Header(delivery_count=deliveries),
        properties=Properties(message_id=message_id, group_id=session),
        message_annotations={
            b"x-opt-sequence-number": seq,
            b"x-opt-enqueued-time": millis,
            b"x-opt-locked-until": millis + 60_000,
        },
        application_properties={k.encode(): v.encode() if isinstance(v, str) else v for k, v in (app or {}).items()},
        data=[body],
    )
    return ServiceBusReceivedMessage(amqp, receiver=receiver)


class Broker:
    """Autospec'd clients for two namespaces; each receiver the adapter asks for is recorded with its arguments."""

    def __init__(self) -> None:
        self.clients = {ns: create_autospec(ServiceBusClient, instance=True) for ns in (MAIN, INBOUND)}
        self.senders: dict[tuple[str, str], Any] = {}
        self.receivers: list[tuple[str, str, dict[str, Any], Any]] = []
        self.next_batches: dict[tuple[str, str, object], list[list[ServiceBusReceivedMessage]]] = {}
        self.peeks: dict[tuple[str, object], list[ServiceBusReceivedMessage]] = {}
        for ns, client in self.clients.items():
            client.get_queue_sender.side_effect = lambda q, _ns=ns, **kw: self._sender(_ns, q)
            client.get_topic_sender.side_effect = lambda t, _ns=ns, **kw: self._sender(_ns, t)
            client.get_queue_receiver.side_effect = lambda q, _ns=ns, **kw: self._receiver(_ns, q, kw)

    def _sender(self, ns: str, entity: str) -> Any:
        return self.senders.setdefault((ns, entity), create_autospec(ServiceBusSender, instance=True))

    def _receiver(self, ns: str, queue: str, kwargs: dict[str, Any]) -> Any:
        receiver = create_autospec(ServiceBusReceiver, instance=True)
        sub = kwargs.get("sub_queue")
        batches = self.next_batches.get((ns, queue, sub), [])
        receiver.receive_messages.side_effect = lambda **kw: batches.pop(0) if batches else []
        peeked = self.peeks.get((queue, sub), [])
        receiver.peek_messages.side_effect = lambda max_message_count, sequence_number=0, **kw: [
            m for m in peeked if m.sequence_number >= sequence_number
        ][:max_message_count]
        self.receivers.append((ns, queue, kwargs, receiver))
        return receiver

    def sent(self, ns: str, entity: str) -> list[ServiceBusMessage]:
        sender = self.senders[(ns, entity)]
        out: list[ServiceBusMessage] = []
        for call in sender.send_messages.await_args_list:
            out.extend(call.args[0])
        return out


@pytest.fixture
def broker() -> Broker:
    return Broker()


@pytest.fixture
def bus(broker: Broker):
    b = ServiceBus(lambda ns: broker.clients[ns], budget_s=5)
    yield b
    b.close()


@pytest.fixture
def work(bus):
    return bus.queue("work", MAIN, "orgguard-work", sessions=True, max_deliveries=3)


@pytest.fixture
def inbound(bus):
    return bus.queue(
        "dataverse", INBOUND, "orgguard-events", sessions=False, max_deliveries=5, rejects=(MAIN, "orgguard-rejected")
    )


# --- what goes out -------------------------------------------------------------------------------


def test_work_goes_out_on_its_mailboxs_session_with_its_id_and_properties(work, broker) -> None:
    work.send([Message(b'{"case": "c1"}', "w1", "mbx-1", {"kind": "work", "attempt": 2})])
    (sent,) = broker.sent(MAIN, "orgguard-work")
    assert isinstance(sent, ServiceBusMessage)
    assert (sent.session_id, sent.message_id, sent.content_type) == ("mbx-1", "w1", "application/json")
    assert sent.application_properties == {"kind": "work", "attempt": 2}
    assert b"".join(sent.body) == b'{"case": "c1"}'


def test_backoff_is_a_scheduled_message_at_its_time(work, broker) -> None:
    later = T0 + timedelta(seconds=42)
    work.send([Message(b"{}", "w2", "mbx-1", deliver_at=later), Message(b"{}", "w3", "mbx-2")])
    sender = broker.senders[(MAIN, "orgguard-work")]
    ((scheduled, at), _) = sender.schedule_messages.await_args
    assert at == later
    assert [(m.message_id, m.session_id) for m in scheduled] == [("w2", "mbx-1")]
    assert [m.message_id for m in broker.sent(MAIN, "orgguard-work")] == ["w3"]


def test_a_session_queue_sends_nothing_for_a_message_without_a_session(work, broker) -> None:
    with pytest.raises(QueueError, match="sessions"):
        work.send([Message(b"{}", "w1", None)])
    assert (MAIN, "orgguard-work") not in broker.senders


def test_the_dataverse_queue_sets_no_session(inbound, broker) -> None:
    inbound.send([Message(b"{}", "d1", "ignored")])
    (sent,) = broker.sent(INBOUND, "orgguard-events")
    assert sent.session_id is None


def test_a_send_that_fails_is_a_queue_error_and_its_link_is_made_again(work, broker) -> None:
    work.send([Message(b"{}", "w1", "s")])
    first = broker.senders[(MAIN, "orgguard-work")]
    first.send_messages.side_effect = ServiceBusConnectionError(message="connection reset")
    with pytest.raises(QueueError, match="ServiceBusConnectionError"):
        work.send([Message(b"{}", "w2", "s")])
    first.close.assert_awaited()
    del broker.senders[(MAIN, "orgguard-work")]
    work.send([Message(b"{}", "w3", "s")])
    assert broker.senders[(MAIN, "orgguard-work")] is not first


def test_each_attempt_is_bounded_by_try_timeout(monkeypatch) -> None:
    async def build() -> ServiceBusClient:
        return connector(None, try_timeout=7.5)(MAIN)

    client = asyncio.run(build())
    assert client.fully_qualified_namespace == MAIN
    assert client._config.try_timeout == 7.5  # the SDK's own configuration, as it will use it
    assert client._config.retry_total == 2


def test_the_managed_identity_named_by_its_client_id_is_used(monkeypatch) -> None:
    from azure.identity.aio import ManagedIdentityCredential

    async def build() -> ServiceBusClient:
        return connector("11111111-2222-3333-4444-555555555555")(MAIN)

    client = asyncio.run(build())
    assert isinstance(client._credential, ManagedIdentityCredential)


def test_a_broker_that_does_not_answer_costs_a_queue_error_within_the_budget(broker) -> None:
    bus = ServiceBus(lambda ns: broker.clients[ns], budget_s=0.3)
    try:
        q = bus.queue("work", MAIN, "orgguard-work", sessions=True, max_deliveries=3)
        q.send([Message(b"{}", "w0", "s")])
        sender = broker.senders[(MAIN, "orgguard-work")]

        async def hang(*a: Any, **kw: Any) -> None:
            await asyncio.sleep(30)

        sender.send_messages.side_effect = hang
        start = time.monotonic()
        with pytest.raises(QueueError, match="did not answer"):
            q.send([Message(b"{}", "w1", "s")])
        assert time.monotonic() - start < 2
    finally:
        bus.close()


# --- receiving and settling ------------------------------------------------------------------------


def test_a_session_receiver_takes_the_next_available_session_one_message_at_a_time(work, broker) -> None:
    broker.next_batches[(MAIN, "orgguard-work", None)] = [
        [received(b'{"case": "c1"}', receiver=None, message_id="w1", session="mbx-1", deliveries=1)]
    ]
    (d,) = work.receive(max_messages=5, wait_s=2)
    (ns, queue, kwargs, _) = broker.receivers[-1]
    assert (ns, queue, kwargs["session_id"]) == (MAIN, "orgguard-work", NEXT_AVAILABLE_SESSION)
    receiver = broker.receivers[-1][3]
    receiver.receive_messages.assert_awaited_once_with(max_message_count=1, max_wait_time=2)
    assert (d.message_id, d.session, d.delivery_count, d.body) == ("w1", "mbx-1", 2, b'{"case": "c1"}')
    work.complete(d)
    sdk_message = d.handle[1]
    receiver.complete_message.assert_awaited_once_with(sdk_message)
    receiver.close.assert_awaited()  # the session is free for the next consumer


def test_no_session_within_the_wait_is_no_delivery(work, broker) -> None:
    def no_session(**kw: Any) -> None:
        raise OperationTimeoutError(message="no session available")

    broker.next_batches[(MAIN, "orgguard-work", None)] = []
    broker.clients[MAIN].get_queue_receiver.side_effect = None
    receiver = create_autospec(ServiceBusReceiver, instance=True)
    receiver.receive_messages.side_effect = no_session
    broker.clients[MAIN].get_queue_receiver.return_value = receiver
    assert work.receive(wait_s=1) == []
    receiver.close.assert_awaited()


def test_dead_lettering_names_the_reason_and_the_description(inbound, broker) -> None:
    broker.next_batches[(INBOUND, "orgguard-events", None)] = [[received(b"{", receiver=None, message_id="d1")]]
    (d,) = inbound.receive()
    inbound.dead_letter(d, "malformed", "the body is not JSON")
    receiver = broker.receivers[-1][3]
    receiver.dead_letter_message.assert_awaited_once_with(
        d.handle[1], reason="malformed", error_description="the body is not JSON"
    )


def test_abandoning_gives_the_message_back_for_another_delivery(inbound, broker) -> None:
    broker.next_batches[(INBOUND, "orgguard-events", None)] = [[received(b"{}", receiver=None, deliveries=2)]]
    (d,) = inbound.receive()
    assert d.delivery_count == 3
    inbound.abandon(d)
    broker.receivers[-1][3].abandon_message.assert_awaited_once_with(d.handle[1])


def test_a_lost_lock_is_lock_lost_not_a_success(inbound, broker) -> None:
    broker.next_batches[(INBOUND, "orgguard-events", None)] = [[received(b"{}", receiver=None)]]
    (d,) = inbound.receive()
    broker.receivers[-1][3].complete_message.side_effect = MessageLockLostError(message="lock expired")
    with pytest.raises(LockLost):
        inbound.complete(d)


def test_settling_something_this_queue_did_not_deliver_is_refused(inbound) -> None:
    with pytest.raises(LockLost):
        inbound.complete(Delivery("x", b"{}", handle=("local", 1)))


# --- dead letters ----------------------------------------------------------------------------------


def test_a_rejected_message_is_sent_to_the_rejections_queue_and_dead_lettered_from_there(inbound, broker) -> None:
    seen = Received(
        b"{bad", "sb-7", None, {"http://schemas.microsoft.com/xrm/2011/Claims/Organization": "u"}, delivery_count=2
    )
    copy_in_queue = received(
        b"{bad",
        receiver=None,
        message_id="sb-7",
        seq=9,
        app={"orgguard-origin": "dataverse", "orgguard-reason": "malformed", "orgguard-description": "not JSON"},
    )
    broker.next_batches[(MAIN, "orgguard-rejected", None)] = [[copy_in_queue]]
    inbound.reject(seen, "malformed", "not JSON")
    (copy,) = broker.sent(MAIN, "orgguard-rejected")
    assert copy.message_id == "sb-7" and copy.session_id is None
    assert copy.application_properties == {
        "http://schemas.microsoft.com/xrm/2011/Claims/Organization": "u",
        "orgguard-origin": "dataverse",
        "orgguard-session": "",
        "orgguard-reason": "malformed",
        "orgguard-description": "not JSON",
        "orgguard-delivery-count": 2,
    }
    drain = next(r for ns, q, kw, r in broker.receivers if q == "orgguard-rejected" and "sub_queue" not in kw)
    drain.dead_letter_message.assert_awaited_once_with(copy_in_queue, reason="malformed", error_description="not JSON")
    assert (INBOUND, "orgguard-events") not in broker.senders  # nothing went back to Dataverse's queue


def dead(seq: int, *, session: str | None = None, app: dict[str, Any] | None = None, body: bytes = b"{}"):
    props = {
        "DeadLetterReason": "MaxDeliveryCountExceeded",
        "DeadLetterErrorDescription": "5 deliveries",
        **(app or {}),
    }
    return received(body, receiver=None, message_id=f"m{seq}", session=session, seq=seq, deliveries=5, app=props)


def test_dead_letters_are_peeked_from_the_dead_letter_sub_queue_with_their_reasons(work, inbound, broker) -> None:
    broker.peeks[("orgguard-work", ServiceBusSubQueue.DEAD_LETTER)] = [dead(4, session="mbx-1"), dead(6)]
    items = work.dead_letters()
    assert [(d.id, d.session, d.reason, d.description, d.delivery_count) for d in items] == [
        ("work-4", "mbx-1", "MaxDeliveryCountExceeded", "5 deliveries", 5),
        ("work-6", None, "MaxDeliveryCountExceeded", "5 deliveries", 5),
    ]
    assert all(kw.get("sub_queue") is ServiceBusSubQueue.DEAD_LETTER for _, q, kw, _ in broker.receivers)


def test_rejected_messages_list_under_the_queue_they_came_from(inbound, broker) -> None:
    mine = {"orgguard-origin": "dataverse", "orgguard-delivery-count": 1, "DeadLetterReason": "malformed"}
    broker.peeks[("orgguard-rejected", ServiceBusSubQueue.DEAD_LETTER)] = [
        received(b"{", receiver=None, message_id="d1", seq=3, app=mine),
        received(b"{", receiver=None, message_id="w1", seq=4, app={**mine, "orgguard-origin": "work"}),
    ]
    items = inbound.dead_letters()
    assert [(d.id, d.message_id, d.reason, d.queue) for d in items] == [
        ("dataverse-r3", "d1", "malformed", "dataverse")
    ]
    assert items[0].properties == {}  # what OrgGuard and the broker added is not shown as the message's own


def test_a_replay_sends_the_copy_on_its_session_then_completes_the_dead_letter(work, broker) -> None:
    other, target = dead(5, session="mbx-9"), dead(7, session="mbx-1", app={"kind": "work"}, body=b'{"case": "c7"}')
    broker.next_batches[(MAIN, "orgguard-work", ServiceBusSubQueue.DEAD_LETTER)] = [[other, target]]
    replayed = work.replay("work-7")
    assert replayed.message_id == "m7"
    (copy,) = broker.sent(MAIN, "orgguard-work")
    assert (copy.message_id, copy.session_id, b"".join(copy.body)) == ("m7", "mbx-1", b'{"case": "c7"}')
    assert copy.application_properties == {"kind": "work"}  # not the reason: a replay is the message as it was
    receiver = broker.receivers[-1][3]
    receiver.complete_message.assert_awaited_once_with(target)
    receiver.abandon_message.assert_awaited_once_with(other)  # looked through and given back


def test_replaying_what_is_not_there_sends_nothing_and_gives_everything_back(work, broker) -> None:
    other = dead(5)
    broker.next_batches[(MAIN, "orgguard-work", ServiceBusSubQueue.DEAD_LETTER)] = [[other]]
    with pytest.raises(NoSuchDeadLetter):
        work.replay("work-99")
    assert (MAIN, "orgguard-work") not in broker.senders
    receiver = broker.receivers[-1][3]
    receiver.complete_message.assert_not_awaited()
    receiver.abandon_message.assert_awaited_once_with(other)


def test_a_replayed_rejection_goes_back_to_dataverses_queue(inbound, broker) -> None:
    app = {"orgguard-origin": "dataverse", "orgguard-session": "", "orgguard-reason": "x", "source": "dv"}
    target = received(b"{}", receiver=None, message_id="d1", seq=3, app=app)
    broker.next_batches[(MAIN, "orgguard-rejected", ServiceBusSubQueue.DEAD_LETTER)] = [[target]]
    inbound.replay("dataverse-r3")
    (copy,) = broker.sent(INBOUND, "orgguard-events")
    assert (copy.message_id, copy.session_id, copy.application_properties) == ("d1", None, {"source": "dv"})


def test_a_purge_completes_the_dead_letter_and_sends_nothing(work, broker) -> None:
    target = dead(7)
    broker.next_batches[(MAIN, "orgguard-work", ServiceBusSubQueue.DEAD_LETTER)] = [[target]]
    assert work.purge("work-7").message_id == "m7"
    assert (MAIN, "orgguard-work") not in broker.senders
    broker.receivers[-1][3].complete_message.assert_awaited_once_with(target)


@pytest.mark.parametrize("bad", ["", "work", "work-", "work-x", "dataverse-1", "work-r1", "work--1"])
def test_an_id_that_names_nothing_here_reaches_no_receiver(work, broker, bad) -> None:
    assert work.find(bad) is None
    with pytest.raises(NoSuchDeadLetter):
        work.replay(bad)
    assert broker.receivers == []


def test_counts_peek_the_dead_letters_up_to_a_bound(inbound, broker) -> None:
    broker.peeks[("orgguard-events", ServiceBusSubQueue.DEAD_LETTER)] = [dead(1), dead(2)]
    broker.peeks[("orgguard-rejected", ServiceBusSubQueue.DEAD_LETTER)] = [
        received(b"{", receiver=None, seq=3, app={"orgguard-origin": "dataverse"}),
        received(b"{", receiver=None, seq=4, app={"orgguard-origin": "work"}),
    ]
    counts = inbound.counts()
    assert (counts.dead, counts.at_least, counts.active) == (3, False, None)


# --- decision events -------------------------------------------------------------------------------


def test_a_decision_event_is_a_structured_cloudevent_on_the_topic(bus, broker) -> None:
    topic = bus.topic(MAIN, "orgguard-decisions")
    event = CloudEvent("e1", "com.orgguard.decision.v1", "cases/c1", T0, {"effect": "block"})
    topic.publish([event])
    (sent,) = broker.sent(MAIN, "orgguard-decisions")
    assert (sent.message_id, sent.subject) == ("e1", "com.orgguard.decision.v1")
    assert sent.content_type.startswith("application/cloudevents+json")
    doc = json.loads(b"".join(sent.body))
    assert doc == {
        "specversion": "1.0",
        "id": "e1",
        "source": "/orgguard",
        "type": "com.orgguard.decision.v1",
        "subject": "cases/c1",
        "time": "2026-12-02T09:00:00Z",
        "datacontenttype": "application/json",
        "data": {"effect": "block"},
    }
    broker.clients[MAIN].get_topic_sender.assert_called_once_with("orgguard-decisions")
