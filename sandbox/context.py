"""The `RemoteExecutionContext` JSON Dataverse posts to webhooks, built field for field.

Members come out in alphabetical order with forward slashes escaped, as Dataverse's
DataContractJsonSerializer writes them; values use the contract types
(`OptionSetValue`, `EntityReference`, `/Date(ms)/`).

Asynchronous contexts follow the example in powerapps-docs `developer/data-platform/use-webhooks.md`
("Request Body", a post-operation asynchronous Update step): `IsolationMode` 1; Target holding
`modifiedon`, `modifiedby` and `modifiedonbehalfby` besides the changed columns; a
`ParentContext` of the main operation (Stage 30, the request's own Target plus
`SuppressDuplicateDetection`, `SharedVariables.ChangedEntityTypes`); and an automatic post
image `AsynchronousStepPrimaryName` (primary name and key, no `__type`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sandbox.model import Kind, TableSpec, attribute_name, lookup_target
from sandbox.state import OrgState

CONTRACTS = "http://schemas.microsoft.com/xrm/2011/Contracts"
TRIMMED = ("InputParameters", "PreEntityImages", "PostEntityImages")
PRIMARY_NAME_IMAGE = "AsynchronousStepPrimaryName"
STRING_PAIR = "KeyValuePairOfstringstring:#System.Collections.Generic"
ISOLATION_NONE = 1  # what the documented asynchronous webhook context carries
ISOLATION_SANDBOX = 2


def date(value: str | datetime) -> str:
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return f"/Date({int(moment.timestamp() * 1000)})/"


def reference(logical_name: str, record_id: str, name: str | None = None) -> dict[str, Any]:
    return {
        "__type": f"EntityReference:{CONTRACTS}",
        "Id": record_id,
        "KeyAttributes": [],
        "LogicalName": logical_name,
        "Name": name,
        "RowVersion": None,
    }


def encode(
    org: OrgState, spec: TableSpec, column: str, value: object, row: Mapping[str, object] | None = None
) -> object:
    """A column's value as a context carries it; `row` tells a polymorphic lookup's target."""
    kind = spec.columns[column].kind
    if kind is Kind.CHOICE:
        return {"__type": f"OptionSetValue:{CONTRACTS}", "Value": value}
    if kind is Kind.LOOKUP:
        target = lookup_target(spec.columns[column], (row or {}).get)
        return reference(target, str(value), org.name_of(target, str(value)))
    if kind is Kind.DATETIME and isinstance(value, str):
        return date(value)
    return value


def entity(logical_name: str, record_id: str, attributes: list[tuple[str, object]]) -> dict[str, Any]:
    return {
        "__type": f"Entity:{CONTRACTS}",
        "Attributes": [{"key": key, "value": value} for key, value in attributes],
        "EntityState": None,
        "FormattedValues": [],
        "Id": record_id,
        "KeyAttributes": [],
        "LogicalName": logical_name,
        "RelatedEntities": [],
        "RowVersion": None,
    }


def primary_name_image(spec: TableSpec, values: dict[str, object]) -> dict[str, Any]:
    """The post image Dataverse adds to an asynchronous step by itself: primary name, then key; no `__type`."""
    name = spec.primary_name or spec.primary_key
    attributes = [{"key": column, "value": values.get(column)} for column in (name, spec.primary_key)]
    found = entity(spec.logical_name, str(values[spec.primary_key]), [])
    del found["__type"]
    found["Attributes"] = attributes
    return found


def image(org: OrgState, spec: TableSpec, values: dict[str, object], columns: list[str] | None) -> dict[str, Any]:
    """An entity image: the primary key first, then the step image's attributes (all when none); nulls left out."""
    wanted = columns or list(spec.columns)
    ordered = [spec.primary_key, *(column for column in wanted if column != spec.primary_key)]
    attributes = [
        (attribute_name(column), encode(org, spec, column, values[column], values))
        for column in ordered
        if column in values and values[column] is not None
    ]
    return entity(spec.logical_name, str(values[spec.primary_key]), attributes)


@dataclass(frozen=True)
class Operation:
    """What every context of one Update shares."""

    org: OrgState
    user_id: str
    correlation_id: str
    request_id: str
    created_on: datetime


def build(
    operation: Operation,
    *,
    step_id: str,
    step_name: str,
    stage: int,
    mode: int,
    operation_id: str,
    target: dict[str, Any],
    record_id: str,
    pre: list[tuple[str, dict[str, Any]]],
    post: list[tuple[str, dict[str, Any]]],
    entity_name: str = "mailbox",
    isolation: int = ISOLATION_SANDBOX,
    parent: dict[str, Any] | None = None,
) -> dict[str, Any]:
    org = operation.org
    return {
        "BusinessUnitId": org.business_unit_id,
        "CorrelationId": operation.correlation_id,
        "Depth": 1,
        "InitiatingUserId": operation.user_id,
        "InputParameters": [{"key": "Target", "value": target}],
        "IsExecutingOffline": False,
        "IsInTransaction": mode == 0,
        "IsOfflinePlayback": False,
        "IsolationMode": isolation,
        "MessageName": "Update",
        "Mode": mode,
        "OperationCreatedOn": date(operation.created_on),
        "OperationId": operation_id,
        "OrganizationId": org.id,
        "OrganizationName": org.name,
        "OutputParameters": [],
        "OwningExtension": {
            "Id": step_id,
            "KeyAttributes": [],
            "LogicalName": "sdkmessageprocessingstep",
            "Name": step_name,
            "RowVersion": None,
        },
        "ParentContext": parent,
        "PostEntityImages": [{"key": key, "value": value} for key, value in post],
        "PreEntityImages": [{"key": key, "value": value} for key, value in pre],
        "PrimaryEntityId": record_id,
        "PrimaryEntityName": entity_name,
        "RequestId": operation.request_id,
        "SecondaryEntityName": "none",
        "SharedVariables": [],
        "Stage": stage,
        "UserId": operation.user_id,
    }


def main_operation(
    operation: Operation, *, step_id: str, step_name: str, operation_id: str, target: dict[str, Any], record_id: str
) -> dict[str, Any]:
    """The `ParentContext` of an asynchronous step: the main operation (Stage 30) as the documented example has it."""
    context = build(
        operation,
        step_id=step_id,
        step_name=step_name,
        stage=30,
        mode=1,  # sic: the documented example's parent says Mode 1
        operation_id=operation_id,
        target=target,
        record_id=record_id,
        pre=[],
        post=[],
        isolation=ISOLATION_NONE,
    )
    context["RequestId"] = None  # as in the documented example
    context["InputParameters"].append({"key": "SuppressDuplicateDetection", "value": False})
    changed = [{"__type": STRING_PAIR, "key": target["LogicalName"], "value": "Update"}]
    context["SharedVariables"] = [{"key": "ChangedEntityTypes", "value": changed}]
    return context


def serialize(context: dict[str, Any], limit: int) -> tuple[bytes, bool]:
    """The body Dataverse would post, and whether it had to drop the big parts to stay under `limit`."""
    body = _dump(context)
    if len(body) <= limit:
        return body, False
    trimmed = dict(context, ParentContext=None, **{name: [] for name in TRIMMED})
    return _dump(trimmed), True


def _dump(context: dict[str, Any]) -> bytes:
    return json.dumps(context, ensure_ascii=False, separators=(",", ":")).replace("/", "\\/").encode()
