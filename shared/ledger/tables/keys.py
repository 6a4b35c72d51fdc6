"""Keys: ``esc`` (``escape``), ``inv`` and the row and sort keys of every table (the package note has the layout)."""

from __future__ import annotations

import hashlib
import re
import string
from datetime import UTC, datetime, timedelta
from typing import Final

from shared.domain.model import Action, Case

ROOT: Final = "mailbox"
MARKERS: Final = "~journals"
POLICY_MARKER: Final = "~policy"
CHAIN: Final = "chain"
HEAD: Final = "head"
QUEUE: Final = "queue"
DUE_NOW: Final = "0"  # NextAt of an action due at once; sorts before every timestamp

MAX_KEY_BYTES: Final = 255
FORBIDDEN_KEY: Final = re.compile(r"[/\\#?\x00-\x1f\x7f-\x9f]")

_SAFE: Final = frozenset(string.ascii_letters + string.digits + "@._+=:-")
_INV: Final = 10**19 - 1
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def escape(value: str, limit: int = 120) -> str:
    """A key-safe, injective form of ``value`` (see the package docstring).

    ``limit`` keeps keys built from two escaped parts under 255 bytes; single-part keys allow 200.
    """
    out = "".join(ch if ch in _SAFE else "".join(f"!{b:02X}" for b in ch.encode("utf-8")) for ch in value)
    if not out or len(out) > limit:
        return "!!" + hashlib.sha256(value.encode("utf-8")).hexdigest()
    return out


def inv(n: int) -> str:
    """``10**19 - 1 - n``, zero-padded: larger numbers sort first."""
    return f"{_INV - n:019d}"


def micros(at: datetime) -> int:
    moment = at if at.tzinfo else at.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(microseconds=1)


def clock(at: datetime | None) -> str:
    """A fixed-width UTC time that compares correctly as a string."""
    if at is None:
        return DUE_NOW
    moment = at if at.tzinfo else at.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")


def literal(value: str) -> str:
    """An OData string literal."""
    return "'" + value.replace("'", "''") + "'"


def prefix_range(prefix: str) -> str:
    """``RowKey`` in [prefix, prefix-with-last-char-bumped): every key starting with ``prefix``."""
    upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    return f"(RowKey ge {literal(prefix)} and RowKey lt {literal(upper)})"


def case_rk(case_id: str) -> str:
    return f"case|{escape(case_id)}|"


def action_rk(case_id: str, action_id: str) -> str:
    return f"{case_rk(case_id)}action|{escape(action_id)}"


def event_rk(event_key: str) -> str:
    return f"event|{escape(event_key, 200)}"


def journal_rk(seq: int) -> str:
    return f"journal|{seq:019d}"


def case_sort(case: Case, version: int) -> str:
    """A case's RowKey in the listing partitions: newest first, then by the version that wrote it."""
    return f"{inv(micros(case.created_at))}|{inv(version)}|{escape(case.id)}"


def action_sort(action: Action, index: int) -> str:
    """An action's RowKey in the outbox queue: oldest first, in its case's order."""
    return f"{micros(action.created_at):019d}|{escape(action.case_id)}|{index:04d}"
