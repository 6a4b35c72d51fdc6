"""The `RemoteExecutionContext` JSON Dataverse posts to webhooks, built field for field.

Members come out in alphabetical order with forward slashes escaped, as Dataverse's
DataContractJsonSerializer writes them; values use the contract types
(`OptionSetValue`, `EntityReference`, `/Date(ms)/`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sandbox.model import Kind, TableSpec, attribute_name
from sandbox.state import OrgState

CONTRACTS = "http://schemas.microsoft.com/xrm/2011/Contracts"
TRIMMED = ("InputParameters", "PreEntityImages", "PostEntityImages")


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


def encode(org: OrgState, spec: TableSpec, column: str, value: object) -> object:
    kind = spec.columns[column].kind
    if kind is Kind.CHOICE:
        return {"__type": f"OptionSetValue:{CONTRACTS}", "Value": value}
    if kind is Kind.LOOKUP:
        target = spec.columns[column].target or ""
        name = org.user_name(str(value)) if target == "systemuser" else None
        return reference(target, str(value), name)
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


def image(org: OrgState, spec: TableSpec, values: dict[str, object], columns: list[str] | None) -> dict[str, Any]:
    """An entity image: the primary key first, then the step image's attributes (all when none); nulls left out."""
    wanted = columns or list(spec.columns)
    ordered = [spec.primary_key, *(column for column in wanted if column != spec.primary_key)]
    attributes = [
        (attribute_name(column), encode(org, spec, column, values[column]))
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
        "IsolationMode": 2,
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
        "ParentContext": None,
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


def serialize(context: dict[str, Any], limit: int) -> tuple[bytes, bool]:
    """The body Dataverse would post, and whether it had to drop the big parts to stay under `limit`."""
    body = _dump(context)
    if len(body) <= limit:
        return body, False
    trimmed = dict(context, ParentContext=None, **{name: [] for name in TRIMMED})
    return _dump(trimmed), True


def _dump(context: dict[str, Any]) -> bytes:
    return json.dumps(context, ensure_ascii=False, separators=(",", ":")).replace("/", "\\/").encode()
