"""Table Storage's entity limits, checked before anything is sent; long texts split over properties and joined."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from azure.core import MatchConditions
from azure.data.tables import TableEntity

from shared.ledger.port import LedgerError
from shared.ledger.tables.keys import FORBIDDEN_KEY, MAX_KEY_BYTES

Entity = dict[str, Any]
Operation = tuple[str, Entity, dict[str, Any]]  # one operation of an entity-group transaction

MAX_ENTITY_BYTES: Final = 1024 * 1024
MAX_PROPERTY_BYTES: Final = 64 * 1024
MAX_PROPERTIES: Final = 252
CHUNK_UNITS: Final = 32_000  # UTF-16 code units per string property (64 KiB)


def _units(text: str) -> int:
    """UTF-16 code units: what Table Storage counts."""
    return len(text.encode("utf-16-le")) // 2


def _value_bytes(value: object) -> int:
    if isinstance(value, str):
        return 4 + 2 * _units(value)
    if isinstance(value, bool):
        return 1
    if isinstance(value, bytes):
        return 4 + len(value)
    return 8


def _check_key(what: str, key: object) -> None:
    if not isinstance(key, str):
        raise LedgerError(f"{what} must be a string")
    if FORBIDDEN_KEY.search(key):
        raise LedgerError(f"{what} {key[:80]!r} holds a character Table Storage refuses in keys (/ \\ # ? or control)")
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise LedgerError(f"{what} is longer than {MAX_KEY_BYTES} bytes")


def check_entity(entity: Mapping[str, Any]) -> int:
    """Validate ``entity`` against Table Storage's limits; return its size in bytes."""
    _check_key("PartitionKey", entity.get("PartitionKey"))
    _check_key("RowKey", entity.get("RowKey"))
    props = {k: v for k, v in entity.items() if k not in ("PartitionKey", "RowKey") and v is not None}
    where = f"{entity['PartitionKey'][:60]}/{entity['RowKey'][:60]}"
    if len(props) > MAX_PROPERTIES:
        raise LedgerError(f"entity {where} has {len(props)} properties; Table Storage allows {MAX_PROPERTIES}")
    size = 4 + 2 * (_units(entity["PartitionKey"]) + _units(entity["RowKey"]))
    for name, value in props.items():
        value_size = _value_bytes(value)
        if value_size > MAX_PROPERTY_BYTES:
            raise LedgerError(f"property {name} of {where} is {value_size} bytes; Table Storage allows 64 KiB")
        size += 8 + 2 * len(name) + value_size
    if size > MAX_ENTITY_BYTES:
        raise LedgerError(f"entity {where} is {size} bytes; Table Storage entities hold at most 1 MiB")
    return size


def put_text(entity: Entity, name: str, text: str) -> Entity:
    """Store ``text`` under ``name`` split into properties of at most 64 KiB each."""
    parts: list[str] = []
    start, units = 0, 0
    for i, ch in enumerate(text):
        width = 2 if ord(ch) > 0xFFFF else 1
        if units + width > CHUNK_UNITS:
            parts.append(text[start:i])
            start, units = i, 0
        units += width
    parts.append(text[start:])
    entity[name] = parts[0]
    for i, part in enumerate(parts[1:], 1):
        entity[f"{name}{i}"] = part
    if len(parts) > 1:
        entity[f"{name}Parts"] = len(parts)
    return entity


def get_text(entity: Mapping[str, Any], name: str) -> str:
    count = int(entity.get(f"{name}Parts") or 1)
    return "".join(str(entity.get(name if i == 0 else f"{name}{i}") or "") for i in range(count))


def get_doc(entity: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON document an entity keeps in ``Doc`` (cases, actions, jobs)."""
    doc: dict[str, Any] = json.loads(get_text(entity, "Doc"))
    return doc


def opt(value: object) -> str | None:
    """A stored string property, or None when it is absent or empty."""
    return value if isinstance(value, str) and value else None


def etag(entity: TableEntity) -> str:
    return str(entity.metadata["etag"])


def if_match(tag: str) -> dict[str, Any]:
    """The SDK's options for a write that must find the entity as it was read."""
    return {"etag": tag, "match_condition": MatchConditions.IfNotModified}
