"""How the CLI shows values: timestamps in local time, ids cut to 8 characters and found again, tables that wrap."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from rich.table import Column, Table

from shared.domain.model import DomainError, NotFound


def when(value: Any) -> str:
    """An API timestamp in local time with its zone, as an operator reads it."""
    if not value:
        return "-"
    return datetime.fromisoformat(str(value)).astimezone().strftime("%Y-%m-%d %H:%M %Z")


def short(an_id: Any) -> str:
    return str(an_id)[:8]


def unique(given: str, ids: Iterable[str], what: str) -> str:
    """The one id starting with ``given`` (lists show 8 characters), as for cases so for migrations."""
    prefix = given.strip().lower()
    if not prefix:
        raise DomainError(f"give a {what} id", field="id")
    matches: set[str] = set()
    for an_id in ids:
        if an_id.lower().startswith(prefix):
            matches.add(an_id)
            if len(matches) > 1:
                raise DomainError(f"{given!r} names several {what}s; give more of the id", field="id")
    if not matches:
        raise NotFound(f"no {what} starts with {given!r}", field="id")
    return matches.pop()


def table(*headers: str, title: str | None = None) -> Table:
    """A table whose cells wrap instead of being cut short; the first column (an id, a name) never wraps."""
    first, *rest = headers
    columns = [Column(first, no_wrap=True, min_width=8), *(Column(h, overflow="fold") for h in rest)]
    return Table(*columns, title=title)
