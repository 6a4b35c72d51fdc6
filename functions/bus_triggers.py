"""Service Bus and Event Grid triggers: Dataverse's after-the-fact messages.

A bad message raises: the Service Bus trigger abandons it and, after
``maxDeliveryCount``, dead-letters it, where it stays visible. Nothing is
recorded for it.
"""

from __future__ import annotations

import asyncio
import logging

import azure.functions as func

from shared import bootstrap
from shared.dataverse.payloads import servicebus_size_exceeded, unwrap_event
from shared.domain.model import Origin
from shared.service.orgguard import Outcome

log = logging.getLogger("orgguard.bus")
bp = func.Blueprint()  # type: ignore[no-untyped-call]

QUEUE = "%ORGGUARD_QUEUE%"


def handle_servicebus(msg: func.ServiceBusMessage) -> Outcome:
    trimmed = servicebus_size_exceeded(msg.application_properties or {})
    outcome = bootstrap.container().intake.receive_trusted(
        msg.get_body(), origin=Origin.SERVICEBUS, message_id=msg.message_id, size_exceeded=trimmed
    )
    log.info("servicebus message %s: %s (duplicate=%s)", msg.message_id, outcome.effect.value, outcome.duplicate)
    return outcome


def handle_eventgrid(event: func.EventGridEvent | func.CloudEvent) -> Outcome:
    # Both schemas carry the context in ``data``; the event type string is not relied on.
    context, inner_id = unwrap_event({"specversion": "1.0", "id": event.id, "data": event.get_json()})
    outcome = bootstrap.container().intake.receive_trusted(
        context, origin=Origin.EVENTGRID, message_id=inner_id or event.id
    )
    log.info("event grid event %s: %s (duplicate=%s)", event.id, outcome.effect.value, outcome.duplicate)
    return outcome


def act_on(outcome: Outcome) -> None:
    """After the fact, repair at once rather than wait for the next timer."""
    if outcome.case_id and outcome.decision.acts and not outcome.duplicate:
        asyncio.run(bootstrap.container().run_actions())


@bp.function_name("servicebus_events")
@bp.service_bus_queue_trigger(arg_name="msg", queue_name=QUEUE, connection="ServiceBusConnection")
def servicebus_events(msg: func.ServiceBusMessage) -> None:
    act_on(handle_servicebus(msg))


@bp.function_name("eventgrid_events")
@bp.event_grid_trigger(arg_name="event")
def eventgrid_events(event: func.EventGridEvent) -> None:
    act_on(handle_eventgrid(event))
