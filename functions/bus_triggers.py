"""Service Bus and Event Grid triggers: Dataverse's after-the-fact messages.

A bad message raises: the Service Bus trigger abandons it and, after
``maxDeliveryCount``, dead-letters it, where it stays visible. Nothing is
recorded for it.
"""

from __future__ import annotations

import json
import logging

import azure.functions as func

from shared import bootstrap
from shared.claims import SERVICEBUS_PROPERTY_PREFIX, unwrap_event
from shared.intake import check_size
from shared.model import InvalidPayload, Origin
from shared.service import Outcome

log = logging.getLogger("orgguard.bus")
bp = func.Blueprint()  # type: ignore[no-untyped-call]

QUEUE = "%ORGGUARD_QUEUE%"


def _json(body: bytes, what: str) -> object:
    check_size(body)
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidPayload(f"the {what} body is not JSON: {exc}", field="body") from None


def handle_servicebus(msg: func.ServiceBusMessage) -> Outcome:
    props = msg.application_properties or {}
    trimmed = (
        str(
            props.get("MessageMaxSizeExceeded", props.get(SERVICEBUS_PROPERTY_PREFIX + "MessageMaxSizeExceeded", ""))
        ).lower()
        == "true"
    )
    doc = _json(msg.get_body(), "Service Bus message")
    outcome = bootstrap.container().intake.receive_trusted(
        doc, origin=Origin.SERVICEBUS, message_id=msg.message_id, size_exceeded=trimmed
    )
    log.info("servicebus message %s: %s (duplicate=%s)", msg.message_id, outcome.effect.value, outcome.duplicate)
    return outcome


def handle_eventgrid(event: func.EventGridEvent | func.CloudEvent) -> Outcome:
    data, event_id = event.get_json(), event.id  # both schemas carry the context in data
    if isinstance(data, (bytes, str)):
        data = _json(data.encode() if isinstance(data, str) else data, "Event Grid data")
    context, inner_id = unwrap_event({"specversion": "1.0", "id": event_id, "data": data})
    outcome = bootstrap.container().intake.receive_trusted(
        context, origin=Origin.EVENTGRID, message_id=inner_id or event_id
    )
    log.info("event grid event %s: %s (duplicate=%s)", event_id, outcome.effect.value, outcome.duplicate)
    return outcome


@bp.function_name("servicebus_events")
@bp.service_bus_queue_trigger(arg_name="msg", queue_name=QUEUE, connection="ServiceBusConnection")
def servicebus_events(msg: func.ServiceBusMessage) -> None:
    handle_servicebus(msg)


@bp.function_name("eventgrid_events")
@bp.event_grid_trigger(arg_name="event")
def eventgrid_events(event: func.EventGridEvent) -> None:
    handle_eventgrid(event)
