"""Service Bus and Event Grid triggers: Dataverse's after-the-fact messages, and OrgGuard's own work.

Settlement. The Functions host settles a message by how the function ends: returning completes
it, raising abandons it (and after ``maxDeliveryCount`` deliveries Service Bus dead-letters it).
The plain binding cannot dead-letter with a reason, and the SDK-type binding that can
(``azurefunctions-extensions-bindings-servicebus``) does not fit here (README, "Design
decisions"), so a message that can never be decided is dead-lettered through the queue port:
``WorkQueue.reject`` puts a copy in the dead letters with its reason and description, and the
function returns, so the host completes the original. A transient failure raises: abandoned,
delivered again.

Dataverse sets no SessionId, so its queue (``%ORGGUARD_QUEUE%``) has no sessions; OrgGuard's
work queue (``%ORGGUARD_WORK_QUEUE%``) has one session per mailbox.
"""

from __future__ import annotations

import asyncio
import logging

import azure.functions as func

from shared import bootstrap
from shared.bus.port import Received, Verdict, WorkQueue
from shared.dataverse.payloads import unwrap_event
from shared.domain.model import Origin
from shared.service.orgguard import Outcome

log = logging.getLogger("orgguard.bus")
bp = func.Blueprint()  # type: ignore[no-untyped-call]

QUEUE = "%ORGGUARD_QUEUE%"
WORK_QUEUE = "%ORGGUARD_WORK_QUEUE%"
FLUSH_S = 10.0


class Unsettled(Exception):
    """Raised so the Functions host gives the message back (abandon): Service Bus delivers it again."""


def received_of(msg: func.ServiceBusMessage) -> Received:
    return Received(
        message_id=msg.message_id or "",
        body=msg.get_body(),
        session=msg.session_id,
        properties=msg.application_properties or {},
        delivery_count=msg.delivery_count or 1,
        enqueued_at=msg.enqueued_time_utc,
    )


def settle_here(queue: WorkQueue | None, received: Received, verdict: Verdict) -> None:
    """Carry ``verdict`` out the only ways a plain-binding function can: return, reject through the port, or raise."""
    if verdict.settle == "complete":
        return
    if verdict.settle == "dead-letter" and queue is not None:
        queue.reject(received, verdict.reason, verdict.description)  # a QueueError raises: abandoned, tried again
        log.warning("message %s dead-lettered: %s", received.message_id, verdict.reason)
        return
    raise Unsettled(f"{verdict.reason}: {verdict.description}")


def handle_servicebus(msg: func.ServiceBusMessage) -> Outcome | None:
    """One Dataverse message: decided (its outcome), dead-lettered with its reason (None), or raised (abandoned)."""
    c = bootstrap.container()
    received = received_of(msg)
    verdict, outcome = c.dataverse_messages().decide(received)
    settle_here(c.bus.inbound, received, verdict)
    if outcome is not None:
        log.info("servicebus message %s: %s (duplicate=%s)", msg.message_id, outcome.effect.value, outcome.duplicate)
    return outcome


def handle_work(msg: func.ServiceBusMessage) -> Verdict:
    """One work message: the outbox carried out now."""
    c = bootstrap.container()
    received = received_of(msg)
    verdict = asyncio.run(c.work_handler().handle(received))
    settle_here(c.work, received, verdict)
    return verdict


def handle_eventgrid(event: func.EventGridEvent | func.CloudEvent) -> Outcome:
    # Both schemas carry the context in ``data``; the event type string is not relied on.
    context, inner_id = unwrap_event({"specversion": "1.0", "id": event.id, "data": event.get_json()})
    outcome = bootstrap.container().intake.receive_trusted(
        context, origin=Origin.EVENTGRID, message_id=inner_id or event.id
    )
    log.info("event grid event %s: %s (duplicate=%s)", event.id, outcome.effect.value, outcome.duplicate)
    return outcome


def act_on(outcome: Outcome | None) -> None:
    """After the fact, repair at once rather than wait for the next timer (the work queue does, when there is one)."""
    c = bootstrap.container()
    if outcome and outcome.case_id and outcome.decision.acts and not outcome.duplicate and c.work is None:
        asyncio.run(c.run_actions())
    c.service.dispatch.flush(FLUSH_S)  # the work and events this message left are on their way before it completes


@bp.function_name("servicebus_events")
@bp.service_bus_queue_trigger(arg_name="msg", queue_name=QUEUE, connection="ServiceBusConnection")
def servicebus_events(msg: func.ServiceBusMessage) -> None:
    act_on(handle_servicebus(msg))


@bp.function_name("work")
@bp.service_bus_queue_trigger(arg_name="msg", queue_name=WORK_QUEUE, connection="OrgGuardBus", is_sessions_enabled=True)
def work(msg: func.ServiceBusMessage) -> None:
    handle_work(msg)


@bp.function_name("eventgrid_events")
@bp.event_grid_trigger(arg_name="event")
def eventgrid_events(event: func.EventGridEvent) -> None:
    act_on(handle_eventgrid(event))
