"""The synchronous gate and the asynchronous events, against a real webhook receiver."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.sandbox.conftest import AIKO, AIKO_JP, JP_ID, KEY, Hook, api, exchange, mailbox, register

pytestmark = pytest.mark.sandbox
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
JP = api("contoso-jp")
TEST_ENABLE = {"testemailconfigurationscheduled": True}
STAMPS = {"modifiedon", "modifiedby", "modifiedonbehalfby"}  # in an asynchronous Target (use-webhooks.md)


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


def attributes(entity: dict[str, Any]) -> dict[str, Any]:
    return {pair["key"]: pair["value"] for pair in entity["Attributes"]}


def images(context: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {pair["key"]: attributes(pair["value"]) for pair in context[kind]}


def events(control: httpx.Client, **query: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = control.get("/_sandbox/events", params={"wait": 5, **query}).json()["events"]
    return found


def patch_aiko(admin: httpx.Client, body: dict[str, Any]) -> httpx.Response:
    return admin.patch(JP + f"mailboxes({AIKO_JP})", json=body, headers={"If-Match": "*"})


def test_a_refusing_gate_cancels_the_save_and_changes_nothing(
    admin: httpx.Client, control: httpx.Client, hook: Hook
) -> None:
    register(admin, "contoso-jp", hook.url)
    hook.sync = (409, '{"type": "about:blank", "title": "blocked", "case": "case-42"}')
    before = admin.get(JP + f"mailboxes({AIKO_JP})").json()
    answer = patch_aiko(admin, TEST_ENABLE)
    assert answer.status_code == 400
    message = answer.json()["error"]["message"]
    # use-webhooks.md: Dataverse reads only the status code; the user sees "Endpoint Unavailable", not our body
    assert "Endpoint unavailable" in message and "HTTP 409" in message
    assert "case-42" not in message and "blocked" not in message
    (logged,) = events(control, mode=0)
    assert logged["status"] == 409 and "case-42" in logged["response"]
    assert admin.get(JP + f"mailboxes({AIKO_JP})").json() == before
    assert exchange(control) == "contoso-na"
    assert len(hook.of_mode(0)) == 1
    assert hook.of_mode(1) == []


def test_the_gate_gets_the_context_and_headers_dataverse_sends(
    admin: httpx.Client, control: httpx.Client, hook: Hook
) -> None:
    ids = register(admin, "contoso-jp", hook.url)
    me = admin.get(JP + "WhoAmI").json()["UserId"]
    assert patch_aiko(admin, TEST_ENABLE).status_code == 204
    (call,) = hook.of_mode(0)
    assert call.path == "/api/dataverse/gate"
    assert call.headers["x-orgguard-key"] == KEY
    assert call.headers["x-ms-dynamics-entity-name"] == "mailbox"
    assert call.headers["x-ms-dynamics-request-name"] == "Update"
    assert call.headers["x-ms-dynamics-organization"]
    context = call.body
    expected = fixture("gate-test-enable.json")
    assert list(context) == list(expected)
    assert (context["Stage"], context["Mode"], context["MessageName"]) == (20, 0, "Update")
    assert context["OrganizationId"] == JP_ID and context["OrganizationName"] == "contoso-jp"
    assert context["UserId"] == context["InitiatingUserId"] == me
    assert context["PrimaryEntityId"] == AIKO_JP
    assert context["OwningExtension"]["Id"] == ids["gate"]
    assert call.headers["x-ms-correlation-request-id"] == context["CorrelationId"]
    target = context["InputParameters"][0]["value"]
    assert list(target) == list(expected["InputParameters"][0]["value"])
    assert attributes(target)["testemailconfigurationscheduled"] is True
    assert set(attributes(target)) == {"testemailconfigurationscheduled", "mailboxid", "modifiedon", "modifiedby"}
    pre = images(context, "PreEntityImages")["pre"]
    assert pre["emailaddress"] == AIKO
    assert pre["actdeliverymethod"] == {"__type": expected_option_type(), "Value": 1}
    assert pre["regardingobjectid"]["Name"] == "Aiko Tanaka"
    assert context["PostEntityImages"] == []


def expected_option_type() -> str:
    pre = fixture("gate-test-enable.json")["PreEntityImages"][0]["value"]
    option: str = attributes(pre)["actdeliverymethod"]["__type"]
    return option


def test_an_allowed_save_applies_and_posts_the_async_event_with_images(
    admin: httpx.Client, control: httpx.Client, hook: Hook
) -> None:
    register(admin, "contoso-jp", hook.url)
    operation = patch_aiko(admin, TEST_ENABLE)
    assert operation.status_code == 204
    assert exchange(control) == "contoso-jp"
    row = admin.get(JP + f"mailboxes({AIKO_JP})").json()
    assert row["testemailconfigurationscheduled"] is False
    assert row["actstatus"] == 1
    (logged,) = events(control, mode=1)
    assert logged["status"] == 202 and logged["attempt"] == 1
    (call,) = hook.of_mode(1)
    context = call.body
    expected = fixture("event-post-test-enable.json")
    assert list(context) == list(expected)
    assert (context["Stage"], context["Mode"], context["IsInTransaction"]) == (40, 1, False)
    assert context["CorrelationId"] == hook.of_mode(0)[0].body["CorrelationId"]
    target = attributes(context["InputParameters"][0]["value"])
    assert set(target) == {"testemailconfigurationscheduled", "mailboxid"} | STAMPS
    pre, post = images(context, "PreEntityImages")["pre"], images(context, "PostEntityImages")["post"]
    assert set(pre) == set(attributes(expected["PreEntityImages"][0]["value"])) | {"testemailconfigurationscheduled"}
    assert pre["testemailconfigurationscheduled"] is False
    assert post["testemailconfigurationscheduled"] is True
    assert post["emailaddress"] == AIKO


def test_the_gate_is_not_called_for_columns_it_does_not_filter(
    admin: httpx.Client, control: httpx.Client, hook: Hook
) -> None:
    register(admin, "contoso-jp", hook.url)
    hook.sync = (409, "no")
    assert patch_aiko(admin, {"name": "Aiko T."}).status_code == 204
    assert hook.calls == []


def test_gate_and_events_can_be_switched_off(admin: httpx.Client, control: httpx.Client, hook: Hook) -> None:
    register(admin, "contoso-jp", hook.url)
    hook.sync = (409, "no")
    control.put("/_sandbox/settings", json={"org": "contoso-jp", "gate": False, "events": False})
    assert patch_aiko(admin, TEST_ENABLE).status_code == 204
    events(control)
    assert hook.calls == []


def test_an_unreachable_gate_cancels_the_save(admin: httpx.Client, control: httpx.Client) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    register(admin, "contoso-jp", f"http://127.0.0.1:{port}")
    answer = patch_aiko(admin, TEST_ENABLE)
    assert answer.status_code == 400
    assert "Endpoint unavailable" in answer.json()["error"]["message"]
    assert exchange(control) == "contoso-na"


def test_a_gate_503_is_retried_once(admin: httpx.Client, control: httpx.Client, hook: Hook) -> None:
    register(admin, "contoso-jp", hook.url)
    hook.sync = (503, "busy")
    assert patch_aiko(admin, TEST_ENABLE).status_code == 400
    assert len(hook.of_mode(0)) == 2


def test_failed_async_events_are_retried_and_never_fail_the_save(
    admin: httpx.Client, control: httpx.Client, hook: Hook
) -> None:
    register(admin, "contoso-jp", hook.url)
    control.put("/_sandbox/settings", json={"event_retries": 2, "event_retry_delay_s": 0.01})
    hook.async_ = (500, "down")
    assert patch_aiko(admin, TEST_ENABLE).status_code == 204
    logged = events(control, mode=1)
    assert [event["attempt"] for event in logged] == [1, 2, 3]
    assert all(event["status"] == 500 for event in logged)
    assert exchange(control) == "contoso-jp"


def test_contexts_over_the_limit_are_sent_trimmed(admin: httpx.Client, control: httpx.Client, hook: Hook) -> None:
    register(admin, "contoso-jp", hook.url)
    control.put("/_sandbox/settings", json={"max_context_bytes": 1500})
    assert patch_aiko(admin, TEST_ENABLE).status_code == 204
    events(control)
    for call in hook.calls:
        assert call.headers["x-ms-dynamics-msg-size-exceeded"]
        assert call.body["InputParameters"] == [] == call.body["PreEntityImages"] == call.body["PostEntityImages"]
        assert call.body["ParentContext"] is None
        assert call.body["PrimaryEntityId"] == AIKO_JP
    assert list(hook.of_mode(1)[0].body) == list(fixture("event-size-exceeded.json"))
    assert all(event["size_exceeded"] for event in events(control))


def test_a_gate_refusal_inside_a_change_set_undoes_the_whole_set(
    admin: httpx.Client, control: httpx.Client, hook: Hook
) -> None:
    register(admin, "contoso-jp", hook.url)
    other = admin.get(JP + "mailboxes", params={"$filter": "actdeliverymethod eq 1 and statecode eq 0", "$top": "2"})
    other_row = next(row for row in other.json()["value"] if row["mailboxid"] != AIKO_JP)
    hook.sync = (409, "blocked by OrgGuard")
    body = (
        "--b\r\nContent-Type: multipart/mixed; boundary=cs\r\n\r\n"
        "--cs\r\nContent-Type: application/http\r\nContent-ID: 1\r\n\r\n"
        f"PATCH mailboxes({other_row['mailboxid']}) HTTP/1.1\r\nContent-Type: application/json\r\nIf-Match: *\r\n\r\n"
        '{"name": "renamed"}\r\n'
        "--cs\r\nContent-Type: application/http\r\nContent-ID: 2\r\n\r\n"
        f"PATCH mailboxes({AIKO_JP}) HTTP/1.1\r\nContent-Type: application/json\r\nIf-Match: *\r\n\r\n"
        '{"testemailconfigurationscheduled": true}\r\n'
        "--cs--\r\n--b--\r\n"
    )
    answer = admin.post(JP + "$batch", content=body.encode(), headers={"Content-Type": "multipart/mixed; boundary=b"})
    assert answer.status_code == 400  # no continue-on-error: the failing request's status
    assert "HTTP/1.1 400" in answer.text and "Endpoint unavailable" in answer.text
    assert "blocked by OrgGuard" not in answer.text
    assert admin.get(JP + f"mailboxes({other_row['mailboxid']})").json()["@odata.etag"] == other_row["@odata.etag"]
    assert mailbox(admin, "contoso-jp")["testemailconfigurationscheduled"] is False


def test_the_webhook_timeout_is_dataverses_60_seconds(control: httpx.Client) -> None:
    """use-webhooks.md: "The timeout is 60 seconds." Lower values only make tests quicker; higher ones are refused."""
    assert control.get("/_sandbox/settings").json()["global"]["webhook_timeout_s"] == 60
    assert control.put("/_sandbox/settings", json={"webhook_timeout_s": 61}).status_code == 422


def test_a_gate_that_answers_too_late_cancels_the_save_with_a_timeout(
    admin: httpx.Client, control: httpx.Client, hook: Hook
) -> None:
    register(admin, "contoso-jp", hook.url)
    control.put("/_sandbox/settings", json={"webhook_timeout_s": 0.3})
    hook.delay_s, hook.sync = 1.0, (200, '{"effect": "allow", "note": "too late"}')
    answer = patch_aiko(admin, TEST_ENABLE)
    assert answer.status_code == 400
    message = answer.json()["error"]["message"]
    assert "Endpoint unavailable" in message and "timed out after 0.3 s" in message and "too late" not in message
    assert exchange(control) == "contoso-na"
