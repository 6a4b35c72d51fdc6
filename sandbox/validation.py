"""Values a client writes, checked against their columns the way Dataverse checks them."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from sandbox.model import Column, Kind, TableSpec
from sandbox.odata import QUERY_ERROR, ODataError, no_property

GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def writable_values(spec: TableSpec, body: dict[str, Any]) -> dict[str, object]:
    """The columns a client may write, checked; unknown ones are a 400, read-only ones are ignored."""
    values: dict[str, object] = {}
    for name, value in body.items():
        if "@" in name:
            if name.endswith("@odata.bind"):
                raise ODataError(400, f"The sandbox does not bind '{name}' on {spec.logical_name}.", QUERY_ERROR)
            continue
        column = spec.columns.get(name)
        if column is None:
            raise no_property(spec, name)
        if column.writable:
            values[name] = check(spec, name, column, value)
    return values


def check(spec: TableSpec, name: str, column: Column, value: object) -> object:
    """One value against its column's type, as Dataverse validates it."""
    if value is None:
        return None
    kind = column.kind
    if kind in (Kind.CHOICE, Kind.INT):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ODataError(
                400, f"Cannot convert the literal '{value}' to the expected type 'Edm.Int32'.", QUERY_ERROR
            )
        if column.choices is not None and value not in column.choices:
            raise ODataError(
                400,
                f"A validation error occurred. The value {value} of '{name}' on record of type "
                f"'{spec.logical_name}' is outside the valid range.",
                "0x80044331",
            )
        return value
    if kind is Kind.BOOL:
        if not isinstance(value, bool):
            raise ODataError(
                400, f"Cannot convert the literal '{value}' to the expected type 'Edm.Boolean'.", QUERY_ERROR
            )
        return value
    if not isinstance(value, str):
        raise ODataError(400, f"Cannot convert the literal '{value}' to the expected type 'Edm.String'.", QUERY_ERROR)
    if kind is Kind.GUID and not GUID.match(value):
        raise ODataError(400, f"Cannot convert the literal '{value}' to the expected type 'Edm.Guid'.", QUERY_ERROR)
    if kind is Kind.DATETIME:
        try:
            datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ODataError(
                400, f"Cannot convert the literal '{value}' to the expected type 'Edm.DateTimeOffset'.", QUERY_ERROR
            ) from None
    if column.max_length is not None and len(value) > column.max_length:
        raise ODataError(
            400, f"The length of the '{name}' attribute exceeded the maximum allowed length.", "0x80044331"
        )
    return value.lower() if kind is Kind.GUID else value
