"""The work queue port: what OrgGuard asks of a message queue, whichever one it is.

Two implementations pass one contract suite (``tests/contract/test_work_queue.py``):
``shared.bus.local`` (SQLite, for ``orgguard serve`` and the tests) and
``shared.bus.servicebus`` (Azure Service Bus). The semantics are Service Bus' own,
so what the tests prove on the local queue is what the cloud queue does:

* **sessions**: on a session queue every message names a session (OrgGuard's work: one
  per mailbox, ``session_of``); a session's messages are delivered one at a time, in the
  order they were sent, and never to two consumers at once;
* **lock**: a delivered message is invisible to every other consumer until it is settled
  or its lock runs out (the visibility timeout); a consumer that crashed loses it then,
  and it comes back with a delivery count one higher;
* **settlement**: complete (done), abandon (try again now), dead-letter (never again, with
  a reason and a description); settling after the lock ran out raises ``LockLost``;
* **dead-lettering after N deliveries**: a message delivered ``max_deliveries`` times
  without being completed is dead-lettered with the reason ``MaxDeliveryCountExceeded``;
* **scheduled delivery**: a message with ``deliver_at`` is invisible until then (backoff);
* **dead letters**: listed oldest first, each with an id; replayed (sent back to its queue
  as it was, its delivery count started again) or purged, one at a time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from shared.domain.model import MailboxKey, NotFound

PropertyValue = str | int | float | bool
Properties = Mapping[str, PropertyValue]

MAX_DELIVERIES_REASON = "MaxDeliveryCountExceeded"  # the reason Service Bus itself records


class QueueError(Exception):
    """The queue could not be reached or did not answer in time; try again later."""


class LockLost(QueueError):
    """The delivery's lock ran out (another consumer may have the message now); it was not settled."""


class NoSuchDeadLetter(NotFound, title="No such dead letter"):
    """A dead letter id that names no dead letter (now)."""


def session_of(key: MailboxKey) -> str:
    """The session of a mailbox's work: a digest of its address.

    Service Bus limits a SessionId to 128 characters (an address may have 254), and the
    broker's metadata is not where a full address belongs; one mailbox, one session.
    """
    return "mbx-" + hashlib.sha256(key.address.encode("utf-8")).hexdigest()[:40]


@dataclass(frozen=True)
class Envelope:
    """What a message carries from sender to consumer: its body, id, session (on a session queue) and properties."""

    body: bytes
    message_id: str
    session: str | None = None
    properties: Properties = field(default_factory=dict)


@dataclass(frozen=True)
class Message(Envelope):
    """A message to send, and when to deliver it."""

    deliver_at: datetime | None = None  # scheduled: invisible until then


@dataclass(frozen=True)
class Received(Envelope):
    """A message as a consumer sees it, from the port or from a host that received it (the Functions trigger)."""

    delivery_count: int = 1  # 1 on the first delivery
    enqueued_at: datetime | None = None


@dataclass(frozen=True)
class Delivery(Received):
    """A received message under this consumer's lock, until ``locked_until``; settle it through the port."""

    locked_until: datetime | None = None
    handle: object = field(default=None, compare=False, repr=False)  # the adapter's own (a lock token, a message)


@dataclass(frozen=True)
class DeadLetter:
    """A message that will not be delivered again unless an operator replays it."""

    id: str  # "<queue>-<n>": what list, show, replay and purge name it by
    queue: str  # the queue it belongs to (and is replayed to)
    message_id: str
    session: str | None
    reason: str
    description: str
    delivery_count: int
    enqueued_at: datetime | None
    dead_lettered_at: datetime | None
    body: bytes
    properties: Properties = field(default_factory=dict)


@dataclass(frozen=True)
class QueueCounts:
    """How many messages a queue holds: ready or locked, scheduled for later, dead-lettered."""

    queue: str
    active: int | None
    scheduled: int | None
    dead: int
    at_least: bool = False  # ``dead`` was counted up to a bound and there are more


class WorkQueue(Protocol):
    """One queue. ``name`` is what OrgGuard calls it ("work", "dataverse"), whatever it is called where it lives."""

    name: str
    sessions: bool
    max_deliveries: int

    def send(self, messages: Sequence[Message]) -> None:
        """Send every message (one transaction where the queue has them); ``QueueError`` when it could not."""
        ...

    def receive(self, *, max_messages: int = 1, wait_s: float = 0.0) -> list[Delivery]:
        """Up to ``max_messages`` deliveries, waiting up to ``wait_s`` for the first; on a session queue, at most
        one per session (the session's next message in order)."""
        ...

    def complete(self, delivery: Delivery) -> None: ...

    def abandon(self, delivery: Delivery) -> None:
        """Give the message back now (dead-lettered instead when it has had ``max_deliveries`` deliveries)."""
        ...

    def dead_letter(self, delivery: Delivery, reason: str, description: str) -> None: ...

    def reject(self, received: Received, reason: str, description: str) -> None:
        """Dead-letter a message of this queue that another host received and will complete (the Functions
        trigger, which cannot dead-letter by itself): a copy lands in the dead letters with the reason."""
        ...

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The oldest ``limit`` dead letters."""
        ...

    def find(self, dead_letter_id: str) -> DeadLetter | None: ...

    def replay(self, dead_letter_id: str) -> DeadLetter:
        """Send the dead letter back to its queue as it was (its session and properties; counted afresh) and remove
        it from the dead letters; ``NoSuchDeadLetter`` when it is not (or no longer) there."""
        ...

    def purge(self, dead_letter_id: str) -> DeadLetter:
        """Remove one dead letter for good; ``NoSuchDeadLetter`` when it is not (or no longer) there."""
        ...

    def counts(self) -> QueueCounts: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Verdict:
    """How a handled message is to be settled; the host that received it carries this out (its own way)."""

    settle: str  # "complete", "abandon" (try again) or "dead-letter" (never again)
    reason: str = ""
    description: str = ""

    @classmethod
    def complete(cls) -> Verdict:
        return cls("complete")

    @classmethod
    def abandon(cls, why: str) -> Verdict:
        return cls("abandon", "transient", why)

    @classmethod
    def dead_letter(cls, reason: str, description: str) -> Verdict:
        return cls("dead-letter", reason, description)


def settle(queue: WorkQueue, delivery: Delivery, verdict: Verdict) -> None:
    """Carry ``verdict`` out on a delivery this consumer holds (``LockLost`` when its lock ran out)."""
    if verdict.settle == "complete":
        queue.complete(delivery)
    elif verdict.settle == "dead-letter":
        queue.dead_letter(delivery, verdict.reason, verdict.description)
    else:
        queue.abandon(delivery)
