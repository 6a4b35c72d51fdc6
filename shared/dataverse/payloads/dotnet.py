""".NET values as ``DataContractJsonSerializer`` writes them, decoded into plain Python.

Collections come as ``{"key", "value"}`` pair arrays (or plain objects, from other
producers), typed values with ``__type`` annotations (``OptionSetValue``,
``EntityReference``, ``Money``, ``Entity``), dates as ``/Date(ms)/`` and ids as GUIDs
(the nil GUID meaning none). Anything of the wrong shape is refused with
:class:`~shared.domain.model.InvalidPayload` naming the field. Which columns an entity
may hold, and of what type, is the caller's ``check`` (``rows.check_column``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation

from shared.domain.model import InvalidPayload, normalize_guid

MAX_VALUE_DEPTH = 16  # nesting inside one attribute value (entities in entities ...)
NIL_GUID = "00000000-0000-0000-0000-000000000000"
OBJECT = (dict, Mapping)  # a JSON object: dict is checked first, in C; Mapping (an ABC) is a slow check
_DATE = re.compile(r"^\\?/Date\((-?\d{1,19})([+-]\d{4})?\)\\?/$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

ColumnCheck = Callable[[str, object, str], object]
"""``check(name, value, field)``: the decoded value of column ``name``, checked (or refused)."""


@dataclass(frozen=True)
class EntityRef:
    """A decoded ``EntityReference`` (a lookup column's value)."""

    id: str
    logical_name: str | None = None
    name: str | None = None


def is_dotnet_date(text: str) -> bool:
    """Whether ``text`` is a ``/Date(ms)/`` value (escaped slashes allowed)."""
    return _DATE.match(text) is not None


def guid(value: object, field: str, *, required: bool = False) -> str | None:
    """A normalized GUID; the nil GUID counts as absent (it would merge events)."""
    if value is None:
        if required:
            raise InvalidPayload(f"{field} is missing", field=field)
        return None
    normalized = normalize_guid(value, field=field)
    if normalized == NIL_GUID:
        if required:
            raise InvalidPayload(f"{field} is the nil GUID", field=field)
        return None
    return normalized


def pairs(raw: object, field: str) -> dict[str, object]:
    """A ``{"key", "value"}`` pair array or a plain object, as a dict.

    A key given twice is refused: otherwise the order of the pairs would decide
    which value counts.
    """
    if raw is None:
        return {}
    if isinstance(raw, list):  # Dataverse's own form first: it is the one the gate sees
        items = [_pair(element, f"{field}[{index}]") for index, element in enumerate(raw)]
    elif isinstance(raw, OBJECT):
        items = [(key, value, f"{field}[{key}]") for key, value in raw.items()]
    else:
        raise InvalidPayload(f"{field} must be a list of key/value pairs or an object", field=field)
    found: dict[str, object] = {}
    for key, value, path in items:
        if not isinstance(key, str) or not key:
            raise InvalidPayload(f"{path} has no key", field=path)
        if key in found:
            raise InvalidPayload(f"{field} names {key[:64]!r} twice", field=f"{field}[{key[:64]}]")
        found[key] = value
    return found


def _pair(element: object, path: str) -> tuple[object, object, str]:
    if not isinstance(element, OBJECT):
        raise InvalidPayload(f"{path} must be a key/value pair", field=path)
    key = element.get("key", element.get("Key"))
    value = element.get("value", element.get("Value"))
    return key, value, path


def attributes(entity: Mapping[str, object], field: str, depth: int, check: ColumnCheck) -> dict[str, object]:
    """An ``Entity``'s attributes by logical name, each decoded and then checked by ``check``."""
    path = f"{field}.Attributes"
    given = pairs(entity.get("Attributes"), path)
    decoded: dict[str, object] = {}
    for key, value in given.items():
        name = key.lower()  # logical names are lower case; be lenient on the wire
        column = f"{path}[{key[:64]}]"
        if name in decoded:
            raise InvalidPayload(f"{path} names {key[:64]!r} twice", field=column)
        decoded[name] = check(name, decode(value, column, depth + 1, check), column)
    return decoded


def decode(value: object, field: str, depth: int, check: ColumnCheck) -> object:
    """Plain Python for a typed value ``depth`` levels down (entities inside are checked by ``check``)."""
    if depth > MAX_VALUE_DEPTH:
        raise InvalidPayload(f"{field} is nested too deeply", field=field)
    if isinstance(value, str):  # the pattern only where a date can begin ("/Date(" or "\\/Date(")
        return parse_dotnet_date(value, field=field) if "Date(" in value[:8] and _DATE.match(value) else value
    if isinstance(value, list):
        return [decode(item, f"{field}[{index}]", depth + 1, check) for index, item in enumerate(value)]
    if not isinstance(value, OBJECT):
        return value
    contract = kind(value, field)
    if contract == "OptionSetValue":
        return _option(value, field)
    if contract == "EntityReference":
        return reference(value, field)
    if contract == "Money":
        return _money(value, field)
    if contract == "Entity":
        return attributes(value, field, depth, check)
    return value


def kind(value: Mapping[str, object], field: str) -> str | None:
    """The contract name in ``__type`` ("OptionSetValue:http://..."), or a guess from the shape."""
    annotation = value.get("__type")
    if annotation is not None:
        if not isinstance(annotation, str):
            raise InvalidPayload(f"{field}.__type must be a string", field=f"{field}.__type")
        return annotation.split(":", 1)[0].strip()
    if "Attributes" in value:
        return "Entity"
    if "LogicalName" in value and "Id" in value:
        return "EntityReference"
    if set(value) <= {"Value", "ExtensionData"} and is_int(value.get("Value")):
        return "OptionSetValue"
    return None


def _option(value: Mapping[str, object], field: str) -> int:
    number = as_int(value.get("Value"))
    if number is None:
        raise InvalidPayload(f"{field} must hold an integer Value", field=f"{field}.Value")
    return number


def reference(value: Mapping[str, object], field: str) -> EntityRef:
    ref_id = guid(value.get("Id"), f"{field}.Id", required=True)
    logical_name = value.get("LogicalName")
    name = value.get("Name")
    if logical_name is not None and not isinstance(logical_name, str):
        raise InvalidPayload(f"{field}.LogicalName must be a string", field=f"{field}.LogicalName")
    if name is not None and not isinstance(name, str):
        raise InvalidPayload(f"{field}.Name must be a string", field=f"{field}.Name")
    return EntityRef(id=ref_id or "", logical_name=logical_name, name=name)


def _money(value: Mapping[str, object], field: str) -> Decimal:
    amount = value.get("Value")
    if isinstance(amount, bool) or not isinstance(amount, int | float | str):
        raise InvalidPayload(f"{field} must hold a numeric Value", field=f"{field}.Value")
    try:
        return Decimal(str(amount))
    except InvalidOperation:
        raise InvalidPayload(f"{field} must hold a numeric Value", field=f"{field}.Value") from None


def as_int(value: object) -> int | None:
    """An integer that is not a bool (JSON true must not read as option 1)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def is_int(value: object, expected: int | None = None) -> bool:
    number = as_int(value)
    return number is not None and (expected is None or number == expected)


def parse_dotnet_date(text: str, *, field: str = "date") -> datetime:
    """An aware UTC datetime for ``/Date(ms)/`` or ``/Date(ms+hhmm)/``.

    The milliseconds count from the Unix epoch in UTC in both forms; the offset
    only records the sender's time zone, so it does not move the instant.
    """
    match = _DATE.match(text) if isinstance(text, str) else None
    if match is None:
        raise InvalidPayload(f"{field} is not a /Date(ms)/ value", field=field)
    try:
        return _EPOCH + timedelta(milliseconds=int(match.group(1)))
    except OverflowError:
        raise InvalidPayload(f"{field} is out of range", field=field) from None
