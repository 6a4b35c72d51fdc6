"""Parsing Dataverse contexts into claims: the fixtures, real-traffic variations, bad input."""

from __future__ import annotations

import contextlib
import copy
import json
import random
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.dataverse.payloads import (
    MAX_BODY,
    MAX_PARENT_DEPTH,
    SERVICEBUS_PROPERTY_PREFIX,
    Context,
    EntityRef,
    MailboxRow,
    PayloadTooLarge,
    decode_value,
    loads_context,
    org_address,
    parse_context,
    parse_dotnet_date,
    servicebus_org,
    servicebus_properties,
    servicebus_size_exceeded,
    to_claim,
    unwrap_event,
)
from shared.dataverse.payloads import rows as rows_module
from shared.domain.model import ClaimKind, InvalidAddress, InvalidPayload, Org, Origin

# Copies of the example Dataverse payloads the specs ship (tests/fixtures/).
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

JP_ID = "8a2d4f60-1c3b-4f7e-b5a9-7d0c9e2f6a12"
NA_ID = "3f0e6c1a-5b7d-4e2a-9c11-2a6f0b8d4e01"
MAILBOX_ID = "f1e2d3c4-b5a6-4978-8a9b-0c1d2e3f4a5b"
USER_ID = "5e0c2b7a-9d41-4a6e-8f3b-1c2d3e4f5a60"
REGARDING_ID = "9a8b7c6d-5e4f-4a3b-2c1d-0e9f8a7b6c5d"
CORRELATION_ID = "e91a7c3d-2b4f-4d6e-9a1c-8f7e6d5c4b3a"
REQUEST_ID = "a7b6c5d4-e3f2-4a1b-8c9d-0e1f2a3b4c5d"
OPERATION_ID = "0b3f6d2e-7a91-4c5d-a8e2-6f4b1d9c3e70"
CREATED_ON = datetime(2025, 11, 23, 13, 20, tzinfo=UTC)  # /Date(1763904000000)/
KEY = "aiko.tanaka@contoso.com"

JP = Org(id=JP_ID, name="contoso-jp", url="https://contoso-jp.crm7.dynamics.com")
NA = Org(id=NA_ID, name="contoso-na", url="https://contoso-na.crm.dynamics.com")

OPTION = "OptionSetValue:http://schemas.microsoft.com/xrm/2011/Contracts"
REFERENCE = "EntityReference:http://schemas.microsoft.com/xrm/2011/Contracts"
ENTITY = "Entity:http://schemas.microsoft.com/xrm/2011/Contracts"

Doc = dict[str, Any]


def raw(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def load(name: str) -> Doc:
    """A fixture's context document (unwrapped from its envelope where it has one)."""
    doc: Doc = json.loads(raw(name))
    if "specversion" in doc:
        data, _ = unwrap_event(doc)
        assert isinstance(data, dict)
        return data
    if "application_properties" in doc:
        body: Doc = doc["body"]
        return body
    return doc


def gate(name: str = "gate-test-enable.json") -> Doc:
    return load(name)


def target(doc: Doc) -> Doc:
    value: Doc = doc["InputParameters"][0]["value"]
    return value


def attributes(entity: Doc) -> list[Doc]:
    pairs: list[Doc] = entity["Attributes"]
    return pairs


def set_attribute(entity: Doc, key: str, value: object) -> None:
    pairs = [pair for pair in attributes(entity) if pair["key"] != key]
    entity["Attributes"] = [*pairs, {"key": key, "value": value}]


def drop_attribute(entity: Doc, key: str) -> None:
    entity["Attributes"] = [pair for pair in attributes(entity) if pair["key"] != key]


def pre_image(doc: Doc) -> Doc:
    value: Doc = doc["PreEntityImages"][0]["value"]
    return value


def option(value: int) -> Doc:
    return {"__type": OPTION, "Value": value}


def entity_with(attrs: dict[str, object]) -> Doc:
    return {
        "__type": ENTITY,
        "Attributes": [{"key": k, "value": v} for k, v in attrs.items()],
        "Id": MAILBOX_ID,
        "LogicalName": "mailbox",
    }


def server_side_row(**changes: object) -> MailboxRow:
    row = MailboxRow(mailbox_id=MAILBOX_ID, address="Aiko.Tanaka@Contoso.com", act_method=1, active=True)
    return replace(row, **changes)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------
# The fixtures, as a user of OrgGuard would see them


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("gate-test-enable.json", ClaimKind.TEST_ENABLE),
        ("gate-test-enable-with-checkbox.json", ClaimKind.PRIMARY_FLAG),
        ("gate-act-none.json", None),
        ("event-post-test-enable.json", ClaimKind.TEST_ENABLE),
        ("eventgrid-cloudevent.json", ClaimKind.TEST_ENABLE),
        ("servicebus-message.json", ClaimKind.TEST_ENABLE),
    ],
)
def test_each_fixture_reads_as_the_claim_it_is(name: str, kind: ClaimKind | None) -> None:
    ctx = parse_context(load(name))
    assert ctx.claim_kind() == kind
    assert not ctx.trimmed
    assert not ctx.needs_readback()
    claim = to_claim(ctx, JP, Origin.WEBHOOK)
    if kind is None:
        assert claim is None
    else:
        assert claim is not None
        assert claim.kind == kind
        assert claim.key.address == KEY
        assert claim.org == "contoso-jp"
        assert claim.mailbox_id == MAILBOX_ID


def test_gate_context_carries_every_field_the_gate_uses() -> None:
    ctx = parse_context(gate())
    assert (ctx.org_id, ctx.org_name) == (JP_ID, "contoso-jp")
    assert (ctx.message, ctx.entity, ctx.mailbox_id) == ("Update", "mailbox", MAILBOX_ID)
    assert (ctx.stage, ctx.mode, ctx.depth) == (20, 0, 1)
    assert ctx.user_id == ctx.initiating_user_id == USER_ID
    assert (ctx.correlation_id, ctx.operation_id, ctx.request_id) == (CORRELATION_ID, OPERATION_ID, REQUEST_ID)
    assert ctx.created_on == CREATED_ON
    assert ctx.target["testemailconfigurationscheduled"] is True
    assert ctx.target["modifiedon"] == CREATED_ON
    assert ctx.target["modifiedby"] == EntityRef(USER_ID, "systemuser", None)
    assert ctx.pre is not None and ctx.pre["actdeliverymethod"] == 1
    assert ctx.post is None
    assert ctx.row() == MailboxRow(
        mailbox_id=MAILBOX_ID,
        address="Aiko.Tanaka@Contoso.com",
        act_method=1,
        primary_flag=False,
        test_enable=True,
        active=True,
        regarding_id=REGARDING_ID,
    )


def test_claim_from_the_gate_names_who_and_which_event() -> None:
    claim = to_claim(parse_context(gate()), JP, Origin.GATE, message_id="  msg-1 ")
    assert claim is not None
    assert claim.origin is Origin.GATE
    assert claim.user_id == USER_ID
    assert claim.observed_at == CREATED_ON
    assert claim.source_ids == {
        "org": JP_ID,
        "operation": OPERATION_ID,
        "request": REQUEST_ID,
        "correlation": CORRELATION_ID,
        "message": "msg-1",
    }
    assert claim.event_key == f"{JP_ID}:{OPERATION_ID}:{MAILBOX_ID}"


def test_observed_at_given_by_the_caller_wins() -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    claim = to_claim(parse_context(gate()), JP, Origin.GATE, observed_at=when)
    assert claim is not None and claim.observed_at == when


def test_post_operation_event_merges_pre_target_and_post() -> None:
    ctx = parse_context(load("event-post-test-enable.json"))
    assert (ctx.stage, ctx.mode) == (40, 1)
    assert ctx.post is not None and ctx.post["testemailconfigurationscheduled"] is True
    assert ctx.row().test_enable is True


def test_fixture_bodies_parse_from_bytes_with_escaped_slashes() -> None:
    body = raw("gate-test-enable.json")
    assert b"\\/Date(" in body and b"http:\\/\\/" in body
    assert loads_context(body) == parse_context(json.loads(body))
    assert loads_context(body.decode()) == parse_context(gate())


def test_the_same_event_reads_the_same_on_every_channel() -> None:
    webhook = parse_context(load("event-post-test-enable.json"))
    assert parse_context(load("eventgrid-cloudevent.json")) == webhook
    assert parse_context(load("servicebus-message.json")) == webhook


# ---------------------------------------------------------------------------
# The trimmed (size-exceeded) form


def test_size_exceeded_context_asks_for_a_read_back() -> None:
    ctx = parse_context(load("event-size-exceeded.json"), size_exceeded=True)
    assert ctx.trimmed
    assert ctx.needs_readback()
    assert ctx.target == {} and ctx.pre is None and ctx.post is None
    assert ctx.mailbox_id == MAILBOX_ID
    assert ctx.claim_kind() is None
    with pytest.raises(InvalidPayload) as caught:
        to_claim(ctx, JP, Origin.SERVICEBUS)
    assert caught.value.field == "InputParameters"


def test_size_exceeded_context_is_a_claim_once_read_back() -> None:
    ctx = parse_context(load("event-size-exceeded.json"))
    assert ctx.trimmed  # empty InputParameters and images say so without the flag
    row = server_side_row()
    assert ctx.claim_kind(row) == ClaimKind.TEST_ENABLE
    claim = to_claim(ctx, JP, Origin.SERVICEBUS, row=row, message_id="sb-1")
    assert claim is not None
    assert (claim.kind, claim.key.address) == (ClaimKind.TEST_ENABLE, KEY)
    assert claim.source_ids["message"] == "sb-1"


@pytest.mark.parametrize(
    "row",
    [server_side_row(act_method=2), server_side_row(act_method=0), server_side_row(active=False)],
    ids=["act-none", "act-outlook", "inactive"],
)
def test_size_exceeded_context_read_back_without_server_side_sync_is_no_claim(row: MailboxRow) -> None:
    ctx = parse_context(load("event-size-exceeded.json"))
    assert ctx.claim_kind(row) is None
    assert to_claim(ctx, JP, Origin.SERVICEBUS, row=row) is None


def test_size_exceeded_without_any_images_or_parameters_keys() -> None:
    doc = load("event-size-exceeded.json")
    for key in ("InputParameters", "PreEntityImages", "PostEntityImages", "ParentContext"):
        del doc[key]
    ctx = parse_context(doc)
    assert ctx.trimmed and ctx.needs_readback()


def test_size_exceeded_flag_marks_even_a_full_context_trimmed() -> None:
    ctx = parse_context(gate(), size_exceeded=True)
    assert ctx.trimmed and ctx.needs_readback()
    assert ctx.claim_kind() == ClaimKind.TEST_ENABLE  # what it does carry still counts
    assert loads_context(raw("gate-test-enable.json"), size_exceeded=True).trimmed


def test_read_back_row_of_another_mailbox_is_refused() -> None:
    ctx = parse_context(load("event-size-exceeded.json"))
    other = server_side_row(mailbox_id="0f0e0d0c-0b0a-4909-8807-060504030201")
    with pytest.raises(InvalidPayload) as caught:
        to_claim(ctx, JP, Origin.SERVICEBUS, row=other)
    assert caught.value.field == "mailboxid"


# ---------------------------------------------------------------------------
# What is and is not a claim


def test_act_method_set_to_server_side_sync_is_a_claim() -> None:
    doc = gate("gate-act-none.json")
    set_attribute(target(doc), "actdeliverymethod", option(1))
    set_attribute(pre_image(doc), "actdeliverymethod", option(2))
    assert parse_context(doc).claim_kind() == ClaimKind.ACT_METHOD


def test_act_method_as_plain_integer_counts_too() -> None:
    doc = gate("gate-act-none.json")
    set_attribute(target(doc), "actdeliverymethod", 1)
    assert parse_context(doc).claim_kind() == ClaimKind.ACT_METHOD


@pytest.mark.parametrize("method", [0, 2], ids=["outlook", "none"])
def test_test_enable_while_act_is_not_server_side_sync_is_no_claim(method: int) -> None:
    doc = gate()
    set_attribute(pre_image(doc), "actdeliverymethod", option(method))
    ctx = parse_context(doc)
    assert ctx.claim_kind() is None
    assert to_claim(ctx, JP, Origin.GATE) is None


def test_test_enable_on_an_inactive_mailbox_is_no_claim() -> None:
    doc = gate()
    set_attribute(pre_image(doc), "statecode", option(1))
    assert parse_context(doc).claim_kind() is None


def test_unrelated_change_is_no_claim_and_needs_no_read_back() -> None:
    doc = gate()
    target(doc)["Attributes"] = [{"key": "description", "value": "note"}]
    doc["PreEntityImages"] = []
    ctx = parse_context(doc)
    assert not ctx.needs_readback()
    assert ctx.claim_kind() is None
    assert to_claim(ctx, JP, Origin.GATE) is None


def test_check_box_turned_off_is_no_claim() -> None:
    doc = gate("gate-test-enable-with-checkbox.json")
    target(doc)["Attributes"] = [{"key": "orgmarkedasprimaryforexchangesync", "value": False}]
    assert parse_context(doc).claim_kind() is None


def test_messages_other_than_update_or_create_are_no_claims() -> None:
    doc = gate()
    doc["MessageName"] = "Delete"
    doc["InputParameters"] = [
        {"key": "Target", "value": {"__type": REFERENCE, "Id": MAILBOX_ID, "LogicalName": "mailbox", "Name": None}}
    ]
    ctx = parse_context(doc)
    assert ctx.target == {}
    assert ctx.claim_kind() is None
    assert to_claim(ctx, JP, Origin.WEBHOOK) is None


def test_gate_read_back_row_is_overlaid_with_the_change() -> None:
    # A pre-operation read-back does not hold the change yet: the target wins.
    doc = gate("gate-act-none.json")
    set_attribute(target(doc), "actdeliverymethod", option(1))
    doc["PreEntityImages"] = []
    ctx = parse_context(doc)
    assert ctx.needs_readback()
    row = server_side_row(act_method=2)
    assert ctx.claim_kind(row) == ClaimKind.ACT_METHOD
    claim = to_claim(ctx, JP, Origin.GATE, row=row)
    assert claim is not None and claim.key.address == KEY


def test_missing_images_ask_for_a_read_back() -> None:
    doc = gate()
    del doc["PreEntityImages"]
    del doc["PostEntityImages"]
    ctx = parse_context(doc)
    assert not ctx.trimmed
    assert ctx.pre is None and ctx.post is None
    assert ctx.needs_readback()
    with pytest.raises(InvalidPayload) as caught:
        to_claim(ctx, JP, Origin.GATE)
    assert caught.value.field == "emailaddress"
    claim = to_claim(ctx, JP, Origin.GATE, row=server_side_row())
    assert claim is not None and claim.kind == ClaimKind.TEST_ENABLE


def test_image_without_act_method_asks_for_a_read_back() -> None:
    doc = gate()
    drop_attribute(pre_image(doc), "actdeliverymethod")
    ctx = parse_context(doc)
    assert ctx.needs_readback()
    with pytest.raises(InvalidPayload) as caught:
        to_claim(ctx, JP, Origin.GATE)
    assert caught.value.field == "actdeliverymethod"


def test_claim_for_another_org_than_the_callers_key_is_refused() -> None:
    with pytest.raises(InvalidPayload) as caught:
        to_claim(parse_context(gate()), NA, Origin.GATE)
    assert caught.value.field == "OrganizationId"


def test_org_id_of_the_caller_may_be_written_in_any_case() -> None:
    org = replace(JP, id="{" + JP_ID.upper() + "}")
    assert to_claim(parse_context(gate()), org, Origin.GATE) is not None


def test_to_claim_refuses_a_context_about_another_table() -> None:
    ctx = replace(parse_context(gate()), entity="account")
    with pytest.raises(InvalidPayload) as caught:
        to_claim(ctx, JP, Origin.GATE)
    assert caught.value.field == "PrimaryEntityName"


@pytest.mark.parametrize("address", ["not-an-address", "a@b@contoso.com", "aiko@localhost", ""])
def test_bad_address_raises_invalid_address(address: str) -> None:
    doc = gate()
    set_attribute(pre_image(doc), "emailaddress", address)
    with pytest.raises(InvalidAddress) as caught:
        to_claim(parse_context(doc), JP, Origin.GATE)
    assert caught.value.field == "emailaddress"


def test_address_is_normalized_into_the_key() -> None:
    doc = gate()
    set_attribute(pre_image(doc), "emailaddress", "  AIKO.Tanaka@CONTOSO.COM ")
    claim = to_claim(parse_context(doc), JP, Origin.GATE)
    assert claim is not None and claim.key.address == KEY


def test_user_id_falls_back_to_the_user_when_no_initiating_user() -> None:
    doc = gate()
    del doc["InitiatingUserId"]
    claim = to_claim(parse_context(doc), JP, Origin.GATE)
    assert claim is not None and claim.user_id == USER_ID


def test_nil_operation_id_does_not_merge_events() -> None:
    doc = gate()
    doc["OperationId"] = "00000000-0000-0000-0000-000000000000"
    ctx = parse_context(doc)
    assert ctx.operation_id is None
    assert "operation" not in ctx.source_ids()
    assert ctx.source_ids()["request"] == REQUEST_ID


def test_source_ids_leave_out_what_is_absent() -> None:
    doc = gate()
    for key in ("OperationId", "RequestId", "CorrelationId"):
        doc[key] = None
    assert parse_context(doc).source_ids() == {"org": JP_ID}
    assert parse_context(doc).source_ids(message_id="m") == {"org": JP_ID, "message": "m"}


# ---------------------------------------------------------------------------
# Real-traffic variations


def as_plain_dicts(doc: Doc) -> Doc:
    """The same context with every pair array written as a plain object."""
    doc = copy.deepcopy(doc)
    for name in ("InputParameters", "PreEntityImages", "PostEntityImages"):
        doc[name] = {pair["key"]: pair["value"] for pair in doc.get(name) or []}
    for entity in [*doc["InputParameters"].values(), *doc["PreEntityImages"].values()]:
        entity["Attributes"] = {pair["key"]: pair["value"] for pair in entity["Attributes"]}
    return doc


def test_plain_objects_read_like_pair_arrays() -> None:
    doc = gate()
    assert parse_context(as_plain_dicts(doc)) == parse_context(doc)


def test_capitalized_pair_keys_are_accepted() -> None:
    doc = gate()
    doc["InputParameters"] = [{"Key": p["key"], "Value": p["value"]} for p in doc["InputParameters"]]
    assert parse_context(doc) == parse_context(gate())


def test_type_annotations_of_other_serializers_are_understood() -> None:
    doc = gate()
    set_attribute(pre_image(doc), "actdeliverymethod", {"__type": "OptionSetValue:#Microsoft.Xrm.Sdk", "Value": 1})
    target(doc)["__type"] = "Entity:#Microsoft.Xrm.Sdk"
    assert parse_context(doc) == parse_context(gate())


def test_values_without_type_annotations_are_recognized_by_shape() -> None:
    doc = gate()
    set_attribute(pre_image(doc), "actdeliverymethod", {"Value": 1})
    set_attribute(pre_image(doc), "regardingobjectid", {"Id": REGARDING_ID, "LogicalName": "systemuser"})
    del target(doc)["__type"]
    ctx = parse_context(doc)
    assert ctx.row().act_method == 1
    assert ctx.row().regarding_id == REGARDING_ID
    assert ctx.claim_kind() == ClaimKind.TEST_ENABLE


def test_upper_case_and_braced_guids_are_normalized() -> None:
    doc = gate()
    doc["OrganizationId"] = JP_ID.upper()
    doc["PrimaryEntityId"] = "{" + MAILBOX_ID.upper() + "}"
    target(doc)["Id"] = MAILBOX_ID.upper()
    doc["UserId"] = "{" + USER_ID + "}"
    doc["OperationId"] = OPERATION_ID.upper()
    set_attribute(target(doc), "mailboxid", "{" + MAILBOX_ID.upper() + "}")
    assert parse_context(doc) == parse_context(gate())


def test_upper_case_attribute_names_read_as_logical_names() -> None:
    doc = gate()
    for pair in attributes(pre_image(doc)):
        pair["key"] = pair["key"].upper()
    assert parse_context(doc).row() == parse_context(gate()).row()


@pytest.mark.parametrize("name", ["pre", "PreImage", "preimage", "Image", "mailbox-before"])
def test_pre_image_under_any_name(name: str) -> None:
    doc = gate()
    doc["PreEntityImages"][0]["key"] = name
    ctx = parse_context(doc)
    assert ctx.pre is not None and ctx.pre["emailaddress"] == "Aiko.Tanaka@Contoso.com"
    assert ctx.claim_kind() == ClaimKind.TEST_ENABLE


def test_preferred_image_name_wins_over_the_first() -> None:
    doc = gate()
    other = entity_with({"emailaddress": "someone.else@contoso.com", "actdeliverymethod": option(2)})
    doc["PreEntityImages"].insert(0, {"key": "Image", "value": other})
    ctx = parse_context(doc)
    assert ctx.pre is not None and ctx.pre["emailaddress"] == "Aiko.Tanaka@Contoso.com"


def test_without_a_preferred_name_the_first_image_counts() -> None:
    doc = gate()
    first = entity_with({"emailaddress": "first@contoso.com", "actdeliverymethod": option(1)})
    doc["PreEntityImages"][0]["key"] = "Image2"
    doc["PreEntityImages"].insert(0, {"key": "Image1", "value": first})
    ctx = parse_context(doc)
    assert ctx.pre is not None and ctx.pre["emailaddress"] == "first@contoso.com"


def test_a_bad_image_is_refused_wherever_it_stands() -> None:
    for position in (0, 1):
        doc = gate()
        doc["PreEntityImages"].insert(position, {"key": "Image", "value": {"__type": ENTITY, "Attributes": 5}})
        with pytest.raises(InvalidPayload) as caught:
            parse_context(doc)
        assert caught.value.field == "PreEntityImages[Image].Attributes"


def test_null_image_counts_as_missing() -> None:
    doc = gate()
    doc["PreEntityImages"] = [{"key": "pre", "value": None}]
    assert parse_context(doc).pre is None


def test_post_image_overrides_pre_image() -> None:
    doc = load("event-post-test-enable.json")
    set_attribute(doc["PostEntityImages"][0]["value"], "emailaddress", "new.name@contoso.com")
    claim = to_claim(parse_context(doc), JP, Origin.WEBHOOK)
    assert claim is not None and claim.key.address == "new.name@contoso.com"


def test_post_image_named_postimage_is_preferred() -> None:
    doc = load("event-post-test-enable.json")
    doc["PostEntityImages"][0]["key"] = "PostImage"
    assert parse_context(doc).post is not None


def test_primary_entity_id_may_come_from_target_alone() -> None:
    doc = gate()
    del doc["PrimaryEntityId"]
    assert parse_context(doc).mailbox_id == MAILBOX_ID


def test_parent_context_is_accepted_and_ignored() -> None:
    doc = gate()
    parent = copy.deepcopy(gate())
    parent["ParentContext"] = {"MessageName": "Update", "ParentContext": {"Anything": [1, {"x": None}]}}
    doc["ParentContext"] = parent
    assert parse_context(doc) == parse_context(gate())


def nest_parents(doc: Doc, levels: int) -> Doc:
    parent: Doc | None = None
    for _ in range(levels):
        parent = {"MessageName": "Update", "ParentContext": parent}
    doc["ParentContext"] = parent
    return doc


def test_parent_context_nested_to_the_limit_is_accepted() -> None:
    assert parse_context(nest_parents(gate(), MAX_PARENT_DEPTH)).claim_kind() == ClaimKind.TEST_ENABLE


def test_parent_context_nested_deeper_is_refused() -> None:
    with pytest.raises(InvalidPayload) as caught:
        parse_context(nest_parents(gate(), MAX_PARENT_DEPTH + 1))
    assert caught.value.field == "ParentContext"
    assert "nested" in caught.value.detail


def test_operation_created_on_in_iso_form() -> None:
    doc = gate()
    doc["OperationCreatedOn"] = "2025-11-23T13:20:00Z"
    assert parse_context(doc).created_on == CREATED_ON
    doc["OperationCreatedOn"] = "2025-11-23T13:20:00"
    assert parse_context(doc).created_on == CREATED_ON


def test_missing_stage_mode_and_depth_get_defaults() -> None:
    doc = gate()
    for key in ("Stage", "Mode", "Depth"):
        del doc[key]
    ctx = parse_context(doc)
    assert (ctx.stage, ctx.mode, ctx.depth) == (0, 0, 1)


# ---------------------------------------------------------------------------
# Values and dates


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/Date(1506384247000)/", datetime(2017, 9, 26, 0, 4, 7, tzinfo=UTC)),
        ("/Date(1506409448000-0700)/", datetime(2017, 9, 26, 7, 4, 8, tzinfo=UTC)),
        ("/Date(1506409448000+0900)/", datetime(2017, 9, 26, 7, 4, 8, tzinfo=UTC)),
        ("\\/Date(1506384247000)\\/", datetime(2017, 9, 26, 0, 4, 7, tzinfo=UTC)),
        ("/Date(-1000)/", datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC)),
        ("/Date(0)/", datetime(1970, 1, 1, tzinfo=UTC)),
    ],
)
def test_dotnet_dates(text: str, expected: datetime) -> None:
    when = parse_dotnet_date(text)
    assert when == expected
    assert when.utcoffset() is not None and when.utcoffset() == expected.utcoffset()


@pytest.mark.parametrize("text", ["/Date()/", "/Date(abc)/", "2017-09-26", "/Date(99999999999999999)/", ""])
def test_bad_dotnet_dates_are_refused(text: str) -> None:
    with pytest.raises(InvalidPayload):
        parse_dotnet_date(text)


def test_json_dates_with_escaped_slashes_decode() -> None:
    value = json.loads('"\\/Date(1506409448000-0700)\\/"')
    assert decode_value(value) == datetime(2017, 9, 26, 7, 4, 8, tzinfo=UTC)


UNKNOWN_TYPE = {"__type": "BooleanManagedProperty:#x", "Value": True}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"__type": OPTION, "Value": 2}, 2),
        (
            {"__type": REFERENCE, "Id": REGARDING_ID.upper(), "LogicalName": "systemuser", "Name": "Aiko"},
            EntityRef(REGARDING_ID, "systemuser", "Aiko"),
        ),
        ({"__type": "Money:http://schemas.microsoft.com/xrm/2011/Contracts", "Value": 12.5}, Decimal("12.5")),
        ({"__type": "Money:#Microsoft.Xrm.Sdk", "Value": "100.10"}, Decimal("100.10")),
        ({"__type": ENTITY, "Attributes": [{"key": "name", "value": "x"}]}, {"name": "x"}),
        ([{"__type": OPTION, "Value": 1}, {"__type": OPTION, "Value": 3}], [1, 3]),
        (True, True),
        (None, None),
        ("plain text", "plain text"),
        (UNKNOWN_TYPE, UNKNOWN_TYPE),
    ],
    ids=["option", "reference", "money", "money-text", "entity", "list", "bool", "null", "text", "unknown"],
)
def test_decode_value(value: object, expected: object) -> None:
    assert decode_value(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        {"__type": OPTION, "Value": "2"},
        {"__type": OPTION, "Value": True},
        {"__type": REFERENCE, "Id": "not-a-guid"},
        {"__type": REFERENCE},
        {"__type": "Money:x", "Value": "lots"},
        {"__type": 7},
        {"__type": ENTITY, "Attributes": 3},
    ],
    ids=["option-text", "option-bool", "reference-id", "reference-no-id", "money-text", "type-number", "entity-attrs"],
)
def test_decode_value_refuses_malformed_typed_values(value: object) -> None:
    with pytest.raises(InvalidPayload):
        decode_value(value)


def test_decode_value_refuses_runaway_nesting() -> None:
    value: object = "leaf"
    for _ in range(40):
        value = [value]
    with pytest.raises(InvalidPayload):
        decode_value(value)


# ---------------------------------------------------------------------------
# Envelopes and Service Bus properties


def test_cloudevent_is_unwrapped_with_its_id() -> None:
    envelope = json.loads(raw("eventgrid-cloudevent.json"))
    data, event_id = unwrap_event(envelope)
    assert event_id == "7f8e9d0c-1b2a-4394-8576-a5b4c3d2e1f0"
    assert parse_context(data).claim_kind() == ClaimKind.TEST_ENABLE


def test_cloudevent_type_string_does_not_matter() -> None:
    envelope = json.loads(raw("eventgrid-cloudevent.json"))
    envelope["type"] = "Something.Else.Entirely"
    data, _ = unwrap_event(envelope)
    assert parse_context(data) == parse_context(load("eventgrid-cloudevent.json"))


def test_event_grid_schema_alone_and_as_a_one_element_array() -> None:
    context = load("event-post-test-enable.json")
    event = {"id": "eg-1", "eventType": "any", "subject": "s", "dataVersion": "1", "data": context}
    assert unwrap_event(event) == (context, "eg-1")
    assert unwrap_event([event]) == (context, "eg-1")


def test_event_data_given_as_json_text() -> None:
    context = load("event-post-test-enable.json")
    data, _ = unwrap_event({"specversion": "1.0", "id": "x", "data": json.dumps(context)})
    assert parse_context(data) == parse_context(context)


@pytest.mark.parametrize(
    ("envelope", "field"),
    [
        ([], "body"),
        ([{"eventType": "a", "data": {}}, {"eventType": "b", "data": {}}], "body"),
        ("text", "body"),
        (42, "body"),
        ({"MessageName": "Update"}, "body"),
        ({"specversion": "0.3", "data": {}}, "specversion"),
        ({"specversion": "1.0", "id": "x"}, "data"),
        ({"specversion": "1.0", "id": "x", "data": [1, 2]}, "data"),
        ({"specversion": "1.0", "id": "x", "data": "{not json"}, "data"),
        ({"eventType": "x", "id": 5, "data": {}}, "id"),
    ],
    ids=[
        "empty-list",
        "two-events",
        "text",
        "number",
        "bare-context",
        "old-spec",
        "no-data",
        "data-list",
        "data-bad-json",
        "id-number",
    ],
)
def test_bad_envelopes_are_refused(envelope: object, field: str) -> None:
    with pytest.raises(InvalidPayload) as caught:
        unwrap_event(envelope)
    assert caught.value.field == field


def test_servicebus_properties_strip_the_prefix() -> None:
    message = json.loads(raw("servicebus-message.json"))
    props = servicebus_properties(message["application_properties"])
    assert props == {
        "Organization": "contoso-jp.crm7.dynamics.com",
        "User": USER_ID,
        "InitiatingUser": USER_ID,
        "EntityLogicalName": "mailbox",
        "RequestName": "Update",
    }
    assert not servicebus_size_exceeded(message["application_properties"])


def test_servicebus_properties_as_the_sdk_may_give_them() -> None:
    props: dict[Any, object] = {
        (SERVICEBUS_PROPERTY_PREFIX + "Organization").encode(): b"contoso-jp.crm7.dynamics.com",
        "unrelated": "x",
        SERVICEBUS_PROPERTY_PREFIX + "User": USER_ID,
        "MessageMaxSizeExceeded": True,
    }
    assert servicebus_properties(props) == {"Organization": "contoso-jp.crm7.dynamics.com", "User": USER_ID}
    assert servicebus_size_exceeded(props)
    as_bytes: dict[Any, object] = {b"MessageMaxSizeExceeded": b"true"}
    assert servicebus_size_exceeded(as_bytes)
    assert not servicebus_size_exceeded({"MessageMaxSizeExceeded": "false"})


def test_servicebus_property_names_match_whatever_their_case() -> None:
    props: dict[Any, object] = {
        SERVICEBUS_PROPERTY_PREFIX.upper() + "ORGANIZATION": "contoso-jp.crm7.dynamics.com",
        SERVICEBUS_PROPERTY_PREFIX + "initiatinguser": USER_ID,
        (SERVICEBUS_PROPERTY_PREFIX + "messagemaxsizeexceeded").encode(): "True",
    }
    assert servicebus_properties(props) == {
        "Organization": "contoso-jp.crm7.dynamics.com",
        "InitiatingUser": USER_ID,
        "MessageMaxSizeExceeded": "True",
    }
    assert servicebus_size_exceeded(props)
    assert servicebus_size_exceeded({"messagemaxsizeexceeded": "1"})


def test_a_property_given_twice_with_different_values_is_refused() -> None:
    props = {
        SERVICEBUS_PROPERTY_PREFIX + "Organization": "contoso-jp.crm7.dynamics.com",
        SERVICEBUS_PROPERTY_PREFIX + "organization": "contoso-na.crm.dynamics.com",
    }
    with pytest.raises(InvalidPayload) as caught:
        servicebus_properties(props)
    assert caught.value.field == "Organization"
    same = {**props, SERVICEBUS_PROPERTY_PREFIX + "organization": "contoso-jp.crm7.dynamics.com"}
    assert servicebus_properties(same) == {"Organization": "contoso-jp.crm7.dynamics.com"}


REGISTERED = [
    Org(JP_ID, "contoso-jp", "https://contoso-jp.crm7.dynamics.com"),
    Org(NA_ID, "contoso-na", "https://contoso-na.crm.dynamics.com/"),
    Org("c47b9e23-6d5a-4b18-8e3f-5f1a2c7d9b34", "contoso-eu", "http://127.0.0.1:8072/orgs/contoso-eu"),
]


@pytest.mark.parametrize(
    ("uri", "org"),
    [
        ("contoso-jp.crm7.dynamics.com", "contoso-jp"),  # the host, as the fixture carries it
        ("https://contoso-jp.crm7.dynamics.com/", "contoso-jp"),
        ("HTTPS://Contoso-JP.crm7.dynamics.com:443", "contoso-jp"),
        ("  contoso-na.crm.dynamics.com  ", "contoso-na"),
        ("http://127.0.0.1:8072/orgs/contoso-eu/", "contoso-eu"),  # the sandbox's URL form
        ("127.0.0.1:8072/orgs/contoso-eu", "contoso-eu"),
        ("contoso-xx.crm.dynamics.com", None),
        ("127.0.0.1:7073/orgs/contoso-eu", None),  # another port is another server
        ("contoso-jp.crm7.dynamics.com/other", None),
        (JP_ID, None),  # the id is not what Dataverse puts there: no org is named by it
    ],
)
def test_the_organization_property_names_the_org_by_its_uri(uri: str, org: str | None) -> None:
    props = {SERVICEBUS_PROPERTY_PREFIX + "Organization": uri}
    found = servicebus_org(props, REGISTERED)
    assert (found.name if found else None) == org


def test_without_an_organization_property_no_org_is_named() -> None:
    assert servicebus_org({SERVICEBUS_PROPERTY_PREFIX + "User": USER_ID}, REGISTERED) is None


@pytest.mark.parametrize("uri", ["https://", "contoso.crm.dynamics.com:99999", "://", "   "])
def test_an_organization_property_that_is_no_uri_is_refused(uri: str) -> None:
    with pytest.raises(InvalidPayload) as caught:
        servicebus_org({SERVICEBUS_PROPERTY_PREFIX + "Organization": uri}, REGISTERED)
    assert caught.value.field == "Organization"


@given(st.sampled_from(REGISTERED), st.booleans(), st.booleans(), st.booleans())
def test_any_spelling_of_a_registered_url_finds_its_org(org: Org, upper: bool, slash: bool, bare: bool) -> None:
    uri = org.url.rstrip("/") + ("/" if slash else "")
    if bare:
        uri = uri.split("://", 1)[1]
    uri = uri.upper() if upper else uri
    assert servicebus_org({SERVICEBUS_PROPERTY_PREFIX + "Organization": uri}, REGISTERED) == org
    assert org_address(uri) == org_address(org.url)


# ---------------------------------------------------------------------------
# Bad input names the field


def mutate(change: Callable[[Doc], None]) -> Doc:
    doc = gate()
    change(doc)
    return doc


def set_key(key: str, value: object) -> Callable[[Doc], None]:
    def change(doc: Doc) -> None:
        doc[key] = value

    return change


def drop_key(*keys: str) -> Callable[[Doc], None]:
    def change(doc: Doc) -> None:
        for key in keys:
            doc.pop(key, None)

    return change


def in_target(change: Callable[[Doc], None]) -> Callable[[Doc], None]:
    return lambda doc: change(target(doc))


def in_pre(change: Callable[[Doc], None]) -> Callable[[Doc], None]:
    return lambda doc: change(pre_image(doc))


def no_mailbox_id_anywhere(doc: Doc) -> None:
    for key in ("PrimaryEntityId", "InputParameters", "PreEntityImages", "PostEntityImages"):
        doc.pop(key, None)


BAD_DOCUMENTS = [
    ("stage-text", set_key("Stage", "20"), "Stage"),
    ("mode-bool", set_key("Mode", True), "Mode"),
    ("depth-float", set_key("Depth", 1.0), "Depth"),
    ("org-not-guid", set_key("OrganizationId", "contoso-jp"), "OrganizationId"),
    ("org-number", set_key("OrganizationId", 42), "OrganizationId"),
    ("org-nil", set_key("OrganizationId", "00000000-0000-0000-0000-000000000000"), "OrganizationId"),
    ("org-missing", drop_key("OrganizationId"), "OrganizationId"),
    ("message-missing", drop_key("MessageName"), "MessageName"),
    ("message-empty", set_key("MessageName", " "), "MessageName"),
    ("entity-missing", drop_key("PrimaryEntityName"), "PrimaryEntityName"),
    ("entity-account", set_key("PrimaryEntityName", "account"), "PrimaryEntityName"),
    ("mailbox-id-missing", no_mailbox_id_anywhere, "PrimaryEntityId"),
    ("mailbox-id-not-guid", set_key("PrimaryEntityId", "mailbox-1"), "PrimaryEntityId"),
    ("user-not-guid", set_key("UserId", "someone"), "UserId"),
    ("org-name-number", set_key("OrganizationName", 5), "OrganizationName"),
    ("created-on-number", set_key("OperationCreatedOn", 1763904000000), "OperationCreatedOn"),
    ("created-on-text", set_key("OperationCreatedOn", "yesterday"), "OperationCreatedOn"),
    ("parameters-text", set_key("InputParameters", "Target"), "InputParameters"),
    ("parameters-pair-text", set_key("InputParameters", ["Target"]), "InputParameters[0]"),
    ("parameters-pair-no-key", set_key("InputParameters", [{"value": {}}]), "InputParameters[0]"),
    ("parameters-duplicate", lambda d: d["InputParameters"].append(d["InputParameters"][0]), "InputParameters[Target]"),
    ("target-text", set_key("InputParameters", [{"key": "Target", "value": "mailbox"}]), "InputParameters[Target]"),
    (
        "target-optionset",
        set_key("InputParameters", [{"key": "Target", "value": option(1)}]),
        "InputParameters[Target]",
    ),
    ("target-attributes-number", in_target(set_key("Attributes", 5)), "InputParameters[Target].Attributes"),
    ("target-attributes-text", in_target(set_key("Attributes", "x")), "InputParameters[Target].Attributes"),
    ("target-other-table", in_target(set_key("LogicalName", "account")), "InputParameters[Target].LogicalName"),
    ("target-other-id", in_target(set_key("Id", REGARDING_ID)), "InputParameters[Target].Id"),
    (
        "target-bool-as-text",
        in_target(lambda t: set_attribute(t, "testemailconfigurationscheduled", "true")),
        "InputParameters[Target].Attributes[testemailconfigurationscheduled]",
    ),
    (
        "target-duplicate-attribute",
        in_target(lambda t: t["Attributes"].append({"key": "testemailconfigurationscheduled", "value": False})),
        "InputParameters[Target].Attributes[testemailconfigurationscheduled]",
    ),
    (
        "pre-act-as-text",
        in_pre(lambda p: set_attribute(p, "actdeliverymethod", "1")),
        "PreEntityImages[pre].Attributes[actdeliverymethod]",
    ),
    (
        "pre-option-value-text",
        in_pre(lambda p: set_attribute(p, "statecode", option("0"))),  # type: ignore[arg-type]
        "PreEntityImages[pre].Attributes[statecode].Value",
    ),
    (
        "pre-address-number",
        in_pre(lambda p: set_attribute(p, "emailaddress", 7)),
        "PreEntityImages[pre].Attributes[emailaddress]",
    ),
    (
        "pre-regarding-bad",
        in_pre(lambda p: set_attribute(p, "regardingobjectid", {"__type": REFERENCE, "Id": "x"})),
        "PreEntityImages[pre].Attributes[regardingobjectid].Id",
    ),
    ("images-number", set_key("PreEntityImages", 3), "PreEntityImages"),
    ("image-text", set_key("PreEntityImages", [{"key": "pre", "value": "x"}]), "PreEntityImages[pre]"),
    ("image-other-mailbox", in_pre(set_key("Id", REGARDING_ID)), "PreEntityImages[pre].Id"),
    ("parent-text", set_key("ParentContext", "parent"), "ParentContext"),
]


@pytest.mark.parametrize(
    ("change", "field"), [(c, f) for _, c, f in BAD_DOCUMENTS], ids=[i for i, _, _ in BAD_DOCUMENTS]
)
def test_bad_documents_name_the_field(change: Callable[[Doc], None], field: str) -> None:
    with pytest.raises(InvalidPayload) as caught:
        parse_context(mutate(change))
    assert caught.value.field == field
    assert caught.value.detail


@pytest.mark.parametrize(
    "doc", [[], [gate()], 5, "context", None, True], ids=["list", "array", "number", "text", "null", "bool"]
)
def test_body_that_is_not_an_object_is_refused(doc: object) -> None:
    with pytest.raises(InvalidPayload) as caught:
        parse_context(doc)
    assert caught.value.field == "body"


@pytest.mark.parametrize(
    "body",
    [
        b"[1, 2]",
        b"5",
        b'"text"',
        b"{",
        b"",
        b"\xff\xfe{}",
        b'{"Stage": NaN}',
        b"[" * 100_000,
    ],
    ids=["array", "number", "string", "truncated", "empty", "not-utf8", "nan", "deep"],
)
def test_bad_bodies_are_refused(body: bytes) -> None:
    with pytest.raises(InvalidPayload):
        loads_context(body)


def test_body_naming_a_key_twice_is_refused() -> None:
    # Readers that keep the first value and readers that keep the last must not disagree on the org.
    body = raw("gate-test-enable.json").replace(
        b'"OrganizationId"', f'"OrganizationId": "{NA_ID}", "OrganizationId"'.encode(), 1
    )
    with pytest.raises(InvalidPayload) as caught:
        loads_context(body)
    assert caught.value.field == "OrganizationId"


def test_body_with_a_byte_order_mark_is_read() -> None:
    assert loads_context(b"\xef\xbb\xbf" + raw("gate-test-enable.json")) == parse_context(gate())


def test_body_over_the_limit_is_refused_as_too_large() -> None:
    body = b" " * (MAX_BODY + 1)
    with pytest.raises(PayloadTooLarge) as caught:
        loads_context(body)
    assert caught.value.status == 413
    with pytest.raises(PayloadTooLarge):
        loads_context(body.decode())


# ---------------------------------------------------------------------------
# Properties


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
context_keys = st.sampled_from(sorted(gate()))
MINIMAL = {
    "OrganizationId": JP_ID,
    "MessageName": "Update",
    "PrimaryEntityName": "mailbox",
    "PrimaryEntityId": MAILBOX_ID,
}
# Kept small so the unit suite stays fast; a run with thousands of examples found nothing more.
FAST = settings(max_examples=75, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def paths(value: object, prefix: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    found: list[tuple[object, ...]] = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += paths(child, (*prefix, index))
    return found


GATE_PATHS = [p for p in paths(gate()) if p]
EVENT_PATHS = [p for p in paths(load("event-post-test-enable.json")) if p]


def replace_at(doc: Any, path: tuple[object, ...], value: object) -> None:
    for step in path[:-1]:
        doc = doc[step]
    doc[path[-1]] = value


def exercise(doc: object, row: MailboxRow | None = None) -> None:
    """Everything a caller does with a payload; only domain errors may come out."""
    try:
        ctx = parse_context(doc)
        ctx.row()
        ctx.needs_readback()
        ctx.claim_kind(row)
        ctx.source_ids(message_id="m")
        to_claim(ctx, JP, Origin.WEBHOOK, row=row)
    except (InvalidPayload, InvalidAddress):
        pass


@FAST
@given(json_values)
def test_arbitrary_json_only_ever_raises_domain_errors(value: object) -> None:
    exercise(value)
    with contextlib.suppress(InvalidPayload):
        unwrap_event(value)


@FUZZ
@given(st.dictionaries(context_keys, json_values, max_size=4))
def test_arbitrary_context_shaped_objects_only_ever_raise_domain_errors(fields: dict[str, object]) -> None:
    exercise({**MINIMAL, **fields})


@FUZZ
@given(st.data(), st.sampled_from(["gate-test-enable.json", "event-post-test-enable.json"]))
def test_fixtures_with_any_part_replaced_only_ever_raise_domain_errors(data: st.DataObject, name: str) -> None:
    doc = load(name)
    for path in data.draw(
        st.lists(st.sampled_from(GATE_PATHS if name.startswith("gate") else EVENT_PATHS), min_size=1, max_size=3)
    ):
        with contextlib.suppress(KeyError, IndexError, TypeError):  # an earlier replacement removed this path
            replace_at(doc, path, data.draw(json_values))
    row = data.draw(
        st.none()
        | st.builds(
            MailboxRow,
            mailbox_id=st.sampled_from([MAILBOX_ID, REGARDING_ID]),
            address=st.none() | st.text(max_size=20) | st.just(KEY),
            act_method=st.none() | st.integers(0, 2),
            active=st.none() | st.booleans(),
        )
    )
    exercise(doc, row)


@FAST
@given(st.binary(max_size=200) | st.text(max_size=200))
def test_arbitrary_bodies_only_ever_raise_invalid_payload(body: bytes | str) -> None:
    with contextlib.suppress(InvalidPayload):
        loads_context(body)


def shuffled(doc: Doc, rnd: random.Random, plain: bool) -> Doc:
    """The same context with every pair array shuffled (and maybe written as objects)."""
    doc = copy.deepcopy(doc)
    for name in ("InputParameters", "PreEntityImages", "PostEntityImages"):
        rnd.shuffle(doc[name])
        for pair in doc[name]:
            if isinstance(pair["value"], dict) and "Attributes" in pair["value"]:
                rnd.shuffle(pair["value"]["Attributes"])
    keys = list(doc)
    rnd.shuffle(keys)
    doc = {key: doc[key] for key in keys}
    return as_plain_dicts(doc) if plain else doc


@settings(max_examples=40, deadline=None)
@given(
    st.sampled_from(
        [
            "gate-test-enable.json",
            "gate-test-enable-with-checkbox.json",
            "gate-act-none.json",
            "event-post-test-enable.json",
        ]
    ),
    st.randoms(use_true_random=False),
    st.booleans(),
)
def test_attribute_order_never_changes_the_result(name: str, rnd: random.Random, plain: bool) -> None:
    original = load(name)
    doc = shuffled(original, rnd, plain)
    ctx = parse_context(doc)
    assert ctx == parse_context(original)
    assert ctx.row() == parse_context(original).row()
    assert to_claim(ctx, JP, Origin.WEBHOOK) == to_claim(parse_context(original), JP, Origin.WEBHOOK)


def test_context_is_immutable() -> None:
    ctx: Context = parse_context(gate())
    with pytest.raises(TypeError):
        ctx.target["testemailconfigurationscheduled"] = False  # type: ignore[index]


# The payload reader takes plain values of columns outside rows.CHECKED_COLUMNS as they are (the gate's fast
# path); that is only right while check_column holds those columns, and only those, to a type.
_PLAIN = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20))


@given(name=st.text(min_size=1, max_size=30).filter(lambda n: n not in rows_module.CHECKED_COLUMNS), value=_PLAIN)
def test_columns_outside_the_checked_set_pass_as_they_are(name: str, value: object) -> None:
    assert rows_module.check_column(name, value, "Target.Attributes[x]") is value


@pytest.mark.parametrize("name", sorted(rows_module.CHECKED_COLUMNS))
def test_every_checked_column_refuses_a_value_of_the_wrong_type(name: str) -> None:
    with pytest.raises(InvalidPayload) as refused:
        rows_module.check_column(name, ["not", "a", "column", "value"], f"Target.Attributes[{name}]")
    assert refused.value.field == f"Target.Attributes[{name}]"


@pytest.mark.parametrize("column", sorted(rows_module.CHECKED_COLUMNS))
def test_a_payload_with_a_checked_column_of_the_wrong_type_is_refused_naming_it(column: str) -> None:
    doc = gate()
    attributes = doc["InputParameters"][0]["value"]["Attributes"]
    attributes[:] = [pair for pair in attributes if pair["key"] != column]
    attributes.append({"key": column, "value": ["not", "a", "column", "value"]})
    with pytest.raises(InvalidPayload) as refused:
        parse_context(doc)
    assert column in (refused.value.field or "")
