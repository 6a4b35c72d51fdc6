"""The user behind a mailbox: the directory port a decision asks, and where a policy reads the user."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from shared.domain.model import MailboxKey
from shared.domain.policy.schema import Policy


class UserUnknown(Exception):
    """The directory cannot say who is behind a mailbox; ``reason`` is a sentence for the explanation.

    ``outage`` is true when the directory itself failed (timeout, 5xx, 429, a bad
    answer): the same question may get an answer later.
    """

    def __init__(self, reason: str, *, outage: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.outage = outage


class UserDirectory(Protocol):
    """The Graph attributes of the user behind a mailbox (usageLocation, country, department, memberOf, ...).

    ``attributes`` answers from a cache or asks the directory within a strict time
    limit; it raises ``UserUnknown`` rather than wait: a decision never blocks on it.
    ``prefetch`` resolves many mailboxes at once (a sweep), so that ``attributes``
    answers them from the cache.
    """

    @property
    def configured(self) -> bool: ...

    def attributes(self, key: MailboxKey, *, groups: bool = True) -> Mapping[str, object]: ...

    def prefetch(self, keys: Sequence[MailboxKey], *, groups: bool = True) -> None: ...


class NoUserDirectory:
    """No directory configured: user conditions never match (policy validation warns about it)."""

    configured = False

    def attributes(self, key: MailboxKey, *, groups: bool = True) -> Mapping[str, object]:
        return {}

    def prefetch(self, keys: Sequence[MailboxKey], *, groups: bool = True) -> None:
        return None


USER_PREFIX = "user."


def user_conditions(policy: Policy) -> list[str]:
    """Where ``policy`` reads the user behind a mailbox, as paths (``primary[1].when.user.usageLocation``)."""
    found: list[str] = []
    whens = [(f"primary[{i}]", d.when) for i, d in enumerate(policy.primary)]
    whens += [(f"rules[{i}]", r.when) for i, r in enumerate(policy.rules)]
    for path, when in whens:
        found += [f"{path}.when.{name}" for name in when.model_dump() if name.startswith(USER_PREFIX)]
    return found


def reads_groups(policy: Policy) -> bool:
    """Whether a decision needs the user's groups (one more Graph request per user)."""
    return any(path.endswith(".user.memberOf") for path in user_conditions(policy))
