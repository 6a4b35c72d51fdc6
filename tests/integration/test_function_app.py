"""function_app.py as the Functions host would see it: indexing, and each function called with real inputs."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import azure.functions as func
import pytest
from azure.functions.servicebus import ServiceBusMessage

from shared import bootstrap
from shared.domain.model import CaseQuery, Effect
from tests.factories import KEYS, claim, container, fixture, fixture_bytes, ledger_snapshot


@pytest.fixture
def app_module():
    import function_app

    return function_app


@pytest.fixture
def live(tmp_path):
    c = container(tmp_path)
    c.service.handle_claim(claim("contoso-na", op="seed-owner"))
    bootstrap.install(c)
    yield c
    bootstrap.install(None)
    c.close()


def functions_by_name(app):
    app.functions_bindings = None  # get_functions() is not idempotent
    return {f.get_function_name(): f for f in app.get_functions()}


def test_the_host_indexes_every_trigger(app_module):
    functions = functions_by_name(app_module.app)
    assert set(functions) == {"http_app_func", "servicebus_events", "work", "eventgrid_events", "housekeeping", "sweep"}
    bindings = {name: json.loads(f.get_function_json())["bindings"] for name, f in functions.items()}
    http = bindings["http_app_func"][0]
    assert http["type"] == "httpTrigger" and http["route"] == "/{*route}" and http["authLevel"] == "ANONYMOUS"
    sb = bindings["servicebus_events"][0]
    assert sb["type"] == "serviceBusTrigger" and sb["connection"] == "ServiceBusConnection"
    assert sb["queueName"] == "%ORGGUARD_QUEUE%" and not sb.get("isSessionsEnabled")  # Dataverse sets no SessionId
    work = bindings["work"][0]
    assert (work["type"], work["connection"], work["queueName"]) == (
        "serviceBusTrigger", "OrgGuardBus", "%ORGGUARD_WORK_QUEUE%"
    )  # fmt: skip
    assert work["isSessionsEnabled"] is True  # one session per mailbox
    assert bindings["eventgrid_events"][0]["type"] == "eventGridTrigger"
    assert bindings["housekeeping"][0]["type"] == "timerTrigger"
    assert bindings["sweep"][0]["type"] == "timerTrigger"


def call_http(app, req: func.HttpRequest) -> func.HttpResponse:
    fn = functions_by_name(app)["http_app_func"].get_user_function()
    return asyncio.run(fn(req, _Context()))


class _Context:
    invocation_id = "test-invocation"
    function_name = "http_app_func"
    function_directory = "."
    trace_context = None
    retry_context = None
    thread_local_storage = None


def test_gate_through_the_asgi_function(app_module, live):
    req = func.HttpRequest(
        "POST",
        "http://localhost/api/dataverse/gate",
        headers={"x-orgguard-key": KEYS["contoso-jp"], "content-type": "application/json"},
        body=fixture_bytes("gate-test-enable.json"),
    )
    resp = call_http(app_module.app, req)
    assert resp.status_code == 409
    assert json.loads(resp.get_body())["effect"] == "block"


def test_health_through_the_asgi_function(app_module, live):
    resp = call_http(app_module.app, func.HttpRequest("GET", "http://localhost/api/health", body=b""))
    assert resp.status_code == 200 and json.loads(resp.get_body())["ok"] is True


def sb_message(doc, **props):
    sb = fixture("servicebus-message.json")
    return ServiceBusMessage(
        body=json.dumps(doc).encode(),
        message_id=sb["message_id"],
        application_properties={**sb["application_properties"], **props},
        user_properties={},
        content_type="application/json",
        delivery_count=1,
    )


def test_servicebus_trigger_decides_and_dedupes(live):
    from functions.bus_triggers import handle_servicebus, servicebus_events

    body = fixture("servicebus-message.json")["body"]
    first = handle_servicebus(sb_message(body))
    assert first.effect is Effect.BLOCK and not first.duplicate
    servicebus_events(sb_message(body))  # redelivered: answered from the ledger, nothing to act on
    cases = live.ledger.cases(CaseQuery()).items
    assert len(cases) == 1 and cases[0].claimant == "contoso-jp"


def test_servicebus_bad_message_without_a_queue_raises_and_records_nothing(live):
    """Without ORGGUARD_BUS there is no way to dead-letter it with its reason: it is given back (the host abandons)."""
    from functions.bus_triggers import Unsettled, servicebus_events

    before = ledger_snapshot(live)
    bad = ServiceBusMessage(body=b"{oops", message_id="m-1", application_properties={}, user_properties={})
    with pytest.raises(Unsettled, match="malformed"):
        servicebus_events(bad)
    assert ledger_snapshot(live) == before


def test_eventgrid_trigger_with_cloudevent_and_eventgrid_schema(live):
    from functions.bus_triggers import handle_eventgrid

    ce = fixture("eventgrid-cloudevent.json")
    cloud = func.CloudEvent(
        id=ce["id"], source=ce["source"], type=ce["type"], specversion="1.0", data=ce["data"], subject=ce["subject"]
    )
    first = handle_eventgrid(cloud)
    assert first.effect is Effect.BLOCK and not first.duplicate
    egs = func.EventGridEvent(
        id=ce["id"],
        data=ce["data"],
        topic="/orgs/contoso-jp",
        subject=ce["subject"],
        event_type="Microsoft.Dataverse.mailbox.Update",
        event_time=datetime.now(UTC),
        data_version="1.0",
    )
    assert handle_eventgrid(egs).duplicate


def test_host_json_settles_by_return_and_takes_sessions_one_mailbox_at_a_time():
    """The triggers settle by how they end (autoComplete), and the work trigger's sessions are released when idle
    so another mailbox's work gets the worker."""
    from tests.factories import REPO

    bus = json.loads((REPO / "host.json").read_text())["extensions"]["serviceBus"]
    assert bus["autoCompleteMessages"] is True
    assert bus["maxConcurrentSessions"] >= 1
    assert bus["sessionIdleTimeout"] == "00:00:05"
