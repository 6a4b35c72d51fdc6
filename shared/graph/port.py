"""What the service layer may ask of Microsoft Graph (the msgraph-sdk adapter in ``client.py`` answers it).

The notify path names these, never the SDK, so it is tested with the sandbox's Graph
over real HTTP and the import contracts can tell the service layer from the adapter.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from shared.domain.model import DomainError, MailboxKey


class GraphError(Exception):
    """Graph did not do what was asked; ``status`` is None when no answer came at all."""

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None, lost: bool = False
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.lost = lost

    @property
    def transient(self) -> bool:
        """Whether the same request may succeed later (no answer, throttled, a server fault, a garbled answer)."""
        return self.status is None or self.status in (408, 429) or self.status >= 500 or self.status == 200

    def __str__(self) -> str:
        head = f"{self.status}" if self.status is not None else "no answer"
        return f"{head}: {super().__str__()}"


class MailGraph(Protocol):
    """Graph as the notify path uses it: approver groups and their members, and sendMail."""

    async def groups_named(self, name: str) -> list[str]: ...

    async def member_addresses(self, group_id: str) -> list[str]: ...

    async def send_mime(self, sender: str, mime: bytes) -> None: ...

    async def aclose(self) -> None: ...


def unique(addresses: Iterable[str]) -> list[str]:
    """Addresses once each, in the order first seen, compared as mailbox keys."""
    seen: dict[str, str] = {}
    for address in addresses:
        try:
            key = MailboxKey.parse(address).address
        except DomainError:
            continue
        seen.setdefault(key, address)
    return list(seen)
