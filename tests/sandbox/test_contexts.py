"""Asynchronous contexts in the shape of the documented example (use-webhooks.md, "Request Body"), and
OrgGuard's parser reading what the sandbox posts."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from shared.dataverse.payloads import parse_context
from shared.domain.model import ClaimKind
from tests.sandbox.conftest import AIKO, AIKO_JP, JP_ID, Hook, api, register

pytestmark = pytest.mark.sandbox
JP = api("contoso-jp")


def pairs(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {pair["key"]: pair["value"] for pair in items}


def enable_aiko(admin: httpx.Client, control: httpx.Client) -> None:
    answer = admin.patch(
        JP + f"mailboxes({AIKO_JP})", json={"testemailconfigurationscheduled": True}, headers={"If-Match": "*"}
    )
    assert answer.status_code == 204, answer.text
    control.get("/_sandbox/events", params={"wait": 5})


def test_the_async_context_looks_like_the_documented_one(
    admin: httpx.Client, control: httpx.Client, hook: Hook
) -> None:
    ids = register(admin, "contoso-jp", hook.url)
    me = admin.get(JP + "WhoAmI").json()["UserId"]
    enable_aiko(admin, control)
    (call,) = hook.of_mode(1)
    context = call.body
    assert context["IsolationMode"] == 1
    target = pairs(context["InputParameters"][0]["value"]["Attributes"])
    assert target["modifiedby"]["Id"] == me and target["modifiedby"]["LogicalName"] == "systemuser"
    assert target["modifiedon"].startswith("/Date(") and target["modifiedonbehalfby"] is None
    automatic = pairs(context["PostEntityImages"])["AsynchronousStepPrimaryName"]
    assert "__type" not in automatic
    assert (automatic["LogicalName"], automatic["Id"]) == ("mailbox", AIKO_JP)
    assert pairs(automatic["Attributes"]) == {"name": "Aiko Tanaka", "mailboxid": AIKO_JP}
    parent = context["ParentContext"]
    assert (parent["Stage"], parent["Mode"], parent["IsolationMode"], parent["ParentContext"]) == (30, 1, 1, None)
    assert (parent["CorrelationId"], parent["OperationId"]) == (context["CorrelationId"], context["OperationId"])
    assert parent["OwningExtension"]["Id"] == ids["events"]
    inputs = pairs(parent["InputParameters"])
    assert set(pairs(inputs["Target"]["Attributes"])) == {"testemailconfigurationscheduled", "mailboxid"}
    assert inputs["SuppressDuplicateDetection"] is False
    (changed,) = pairs(parent["SharedVariables"])["ChangedEntityTypes"]
    assert (changed["key"], changed["value"]) == ("mailbox", "Update")
    assert parent["PreEntityImages"] == parent["PostEntityImages"] == []


def test_the_gate_context_stays_synchronous(admin: httpx.Client, control: httpx.Client, hook: Hook) -> None:
    register(admin, "contoso-jp", hook.url)
    enable_aiko(admin, control)
    (gate,) = hook.of_mode(0)
    assert (gate.body["IsolationMode"], gate.body["ParentContext"]) == (2, None)
    assert "AsynchronousStepPrimaryName" not in pairs(gate.body["PostEntityImages"])


def test_orgguards_parser_reads_the_async_context_the_sandbox_posts(
    admin: httpx.Client, control: httpx.Client, hook: Hook
) -> None:
    register(admin, "contoso-jp", hook.url)
    enable_aiko(admin, control)
    (call,) = hook.of_mode(1)
    parsed = parse_context(call.body)
    assert (parsed.org_id, parsed.mailbox_id, parsed.stage, parsed.mode) == (JP_ID, AIKO_JP, 40, 1)
    assert not parsed.trimmed and not parsed.needs_readback()
    row = parsed.row()
    assert (row.address, row.act_method, row.test_enable) == (AIKO, 1, True)  # the registered "post" image wins
    assert parsed.claim_kind() is ClaimKind.TEST_ENABLE
    alone = dict(call.body, PostEntityImages=[p for p in call.body["PostEntityImages"] if p["key"] != "post"])
    only_automatic = parse_context(alone)  # a step registered without a post image gets only the automatic one
    assert only_automatic.post is not None and only_automatic.row().address == AIKO


def test_a_trimmed_async_context_drops_the_parent_too(admin: httpx.Client, control: httpx.Client, hook: Hook) -> None:
    register(admin, "contoso-jp", hook.url)
    control.put("/_sandbox/settings", json={"max_context_bytes": 2000})
    enable_aiko(admin, control)
    (call,) = hook.of_mode(1)
    assert call.body["ParentContext"] is None and call.body["PostEntityImages"] == []
    assert parse_context(call.body, size_exceeded=True).needs_readback()
