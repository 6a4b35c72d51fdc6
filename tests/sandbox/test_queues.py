"""Queue mailboxes: `regardingobjectid` targets queue or systemuser (mailbox table reference), seeded in every org."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.sandbox.conftest import Hook, api, exchange, register

pytestmark = pytest.mark.sandbox
SUPPORT = "support@contoso.com"
ANNOTATED = {"Prefer": 'odata.include-annotations="*"'}
LOOKUP = "_regardingobjectid_value@Microsoft.Dynamics.CRM.lookuplogicalname"
NAME = "_regardingobjectid_value@OData.Community.Display.V1.FormattedValue"


def queue_mailboxes(client: httpx.Client, org: str, headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    answer = client.get(
        api(org) + "mailboxes", params={"$filter": "regardingobjecttypecode eq 'queue'"}, headers=headers or {}
    )
    assert answer.status_code == 200, answer.text
    rows: list[dict[str, Any]] = answer.json()["value"]
    return rows


def test_every_org_has_a_few_queue_mailboxes_pointing_at_their_queues(admin: httpx.Client) -> None:
    for org in ("contoso-na", "contoso-jp", "contoso-eu"):
        rows = queue_mailboxes(admin, org)
        queues = {q["queueid"]: q for q in admin.get(api(org) + "queues").json()["value"]}
        assert len(rows) == len(queues) >= 2
        for row in rows:
            queue = queues[row["_regardingobjectid_value"]]
            assert queue["_defaultmailbox_value"] == row["mailboxid"]
            assert queue["emailaddress"].casefold() == row["emailaddress"].casefold()


def test_the_lookup_annotation_names_the_queue_or_the_user(admin: httpx.Client) -> None:
    """select-columns.md, "Lookup property data": lookuplogicalname tells which table a polymorphic lookup points at."""
    (queue_row,) = [row for row in queue_mailboxes(admin, "contoso-na", ANNOTATED) if row["emailaddress"] == SUPPORT]
    assert (queue_row[LOOKUP], queue_row[NAME]) == ("queue", "Customer Support")
    answer = admin.get(
        api("contoso-jp") + "mailboxes",
        params={"$select": "_regardingobjectid_value", "$filter": "contains(emailaddress,'aiko.tanaka')"},
        headers=ANNOTATED,
    )
    (user_row,) = answer.json()["value"]
    assert (user_row[LOOKUP], user_row[NAME]) == ("systemuser", "Aiko Tanaka")
    assert answer.headers["Preference-Applied"] == 'odata.include-annotations="*"'
    plain = admin.get(api("contoso-jp") + "mailboxes", params={"$filter": "contains(emailaddress,'aiko.tanaka')"})
    assert LOOKUP not in plain.json()["value"][0]


def test_a_shared_queue_mailbox_is_contested_like_a_persons(admin: httpx.Client, control: httpx.Client) -> None:
    (na,) = [row for row in queue_mailboxes(admin, "contoso-na") if row["emailaddress"] == SUPPORT]
    (eu,) = [row for row in queue_mailboxes(admin, "contoso-eu") if row["emailaddress"].casefold() == SUPPORT]
    assert exchange(control, SUPPORT) == "contoso-na"
    assert (na["actstatus"], eu["actstatus"]) == (1, 2)
    alerts = admin.get(
        api("contoso-eu") + "tracelogs", params={"$filter": f"_regardingobjectid_value eq {eu['mailboxid']}"}
    )
    assert "configured with another organization" in alerts.json()["value"][0]["text"]
    answer = admin.patch(
        api("contoso-eu") + f"mailboxes({eu['mailboxid']})",
        json={"testemailconfigurationscheduled": True},
        headers={"If-Match": "*"},
    )
    assert answer.status_code == 204
    assert exchange(control, SUPPORT) == "contoso-eu"


def test_contexts_carry_the_queue_as_the_regarding_object(admin: httpx.Client, hook: Hook) -> None:
    register(admin, "contoso-eu", hook.url)
    (eu,) = [row for row in queue_mailboxes(admin, "contoso-eu") if row["emailaddress"].casefold() == SUPPORT]
    admin.patch(
        api("contoso-eu") + f"mailboxes({eu['mailboxid']})",
        json={"testemailconfigurationscheduled": True},
        headers={"If-Match": "*"},
    )
    (gate,) = hook.of_mode(0)
    pre = {pair["key"]: pair["value"] for pair in gate.body["PreEntityImages"][0]["value"]["Attributes"]}
    regarding = pre["regardingobjectid"]
    assert (regarding["LogicalName"], regarding["Id"], regarding["Name"]) == (
        "queue",
        eu["_regardingobjectid_value"],
        "Customer Support",
    )
