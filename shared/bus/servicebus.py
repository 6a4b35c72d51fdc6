"""Azure Service Bus behind the work queue port and the decision events port (``azure-servicebus``, aio).

One ``ServiceBus`` per process: its own event loop on a thread of its own, where the aio
clients (one per namespace, identity-based) and their links live. The port is synchronous,
like the ledger's; every call is handed to that loop and waited for within a budget, so a
caller in any thread (a webhook's, the CLI's, the Functions worker's) shares one AMQP
connection, and a broker that does not answer costs a ``QueueError``, never a hung thread.
``try_timeout`` bounds each attempt of each operation inside the SDK, and the retries stop
within the budget.

What Service Bus cannot do that the port asks, and how it is done here:

* ``reject`` (dead-letter a message the Functions host received: its plain binding cannot
  dead-letter): a copy goes to the rejections queue, carrying the reason, and is at once
  received from there and dead-lettered with that reason and description; its dead letter
  lists under the queue the message came from (``orgguard-origin``).
* replay and purge of one dead letter: the dead-letter queue is received (peek-lock) until
  that sequence number turns up; the others are given back. A replay sends the copy before
  it completes the dead letter: a failure in between leaves a duplicate, never a loss.
* counts: the dead letters are counted by peeking, up to ``COUNT_BOUND`` (the runtime counts
  need the Manage right, which OrgGuard's identity does not have); active and scheduled are
  not known here.

``azure.servicebus`` is imported only when a ``ServiceBus`` is built: never on the gate's path.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar, cast

from shared.bus.decisions import CloudEvent
from shared.bus.port import (
    DeadLetter,
    Delivery,
    LockLost,
    Message,
    NoSuchDeadLetter,
    Properties,
    QueueCounts,
    QueueError,
    Received,
)

if TYPE_CHECKING:
    from azure.servicebus import ServiceBusReceivedMessage
    from azure.servicebus.aio import ServiceBusClient, ServiceBusReceiver, ServiceBusSender

log = logging.getLogger("orgguard.bus")
T = TypeVar("T")

TRY_TIMEOUT_S = 10.0  # one attempt of one operation (the SDK's try_timeout)
BUDGET_S = 30.0  # one port call, retries included
SCAN_BOUND = 5000  # dead letters looked through for one replay or purge
COUNT_BOUND = 250  # dead letters counted by peeking
PAGE = 100

ORIGIN = "orgguard-origin"
SESSION = "orgguard-session"
REASON = "orgguard-reason"
DESCRIPTION = "orgguard-description"
DELIVERIES = "orgguard-delivery-count"
CARRIED = (ORIGIN, SESSION, REASON, DESCRIPTION, DELIVERIES)
BROKER_SET = ("DeadLetterReason", "DeadLetterErrorDescription")  # what Service Bus adds when it dead-letters

Connect = Callable[[str], "ServiceBusClient"]


def connector(client_id: str | None, *, try_timeout: float = TRY_TIMEOUT_S) -> Connect:
    """Clients on OrgGuard's identity: the user-assigned managed identity (``AZURE_CLIENT_ID``), else the default
    chain (``az login``); each attempt bounded by ``try_timeout``. Called on the bus loop, once per namespace."""
    state: dict[str, Any] = {}

    def connect(namespace: str) -> ServiceBusClient:
        from azure.identity.aio import DefaultAzureCredential, ManagedIdentityCredential
        from azure.servicebus.aio import ServiceBusClient

        if "credential" not in state:
            identity = ManagedIdentityCredential(client_id=client_id) if client_id else DefaultAzureCredential()
            state["credential"] = identity
        return ServiceBusClient(
            namespace, state["credential"], retry_total=2, retry_backoff_max=5, try_timeout=try_timeout
        )

    return connect


class ServiceBus:
    """The process's way to Service Bus: a loop thread, a client per namespace, and the links they opened."""

    def __init__(self, connect: Connect, *, budget_s: float = BUDGET_S) -> None:
        self._connect = connect
        self.budget_s = budget_s
        self._clients: dict[str, ServiceBusClient] = {}
        self._senders: dict[tuple[str, str], ServiceBusSender] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="orgguard-servicebus", daemon=True)
        self._thread.start()

    def queue(
        self,
        name: str,
        namespace: str,
        queue: str,
        *,
        sessions: bool,
        max_deliveries: int,
        rejects: tuple[str, str] | None = None,
    ) -> ServiceBusQueue:
        return ServiceBusQueue(self, name, namespace, queue, sessions, max_deliveries, rejects)

    def topic(self, namespace: str, topic: str) -> ServiceBusTopic:
        return ServiceBusTopic(self, namespace, topic)

    # --- the loop ---------------------------------------------------------------------------

    def run(self, work: Callable[[], Awaitable[T]], *, budget: float | None = None) -> T:
        """Run ``work`` on the bus loop and wait for it within the budget; Service Bus errors as ``QueueError``."""
        seconds = self.budget_s if budget is None else budget

        async def guarded() -> T:
            return await asyncio.wait_for(work(), seconds)

        future: Future[T] = asyncio.run_coroutine_threadsafe(guarded(), self._loop)
        try:
            return future.result(seconds + 1.0)
        except (TimeoutError, FutureTimeout):
            future.cancel()
            raise QueueError(f"Service Bus did not answer within {seconds:g} s") from None
        except (LockLost, QueueError, NoSuchDeadLetter):
            raise
        except Exception as exc:
            raise translate(exc) from exc

    def client(self, namespace: str) -> ServiceBusClient:
        """The namespace's client (only ever called on the bus loop)."""
        if namespace not in self._clients:
            self._clients[namespace] = self._connect(namespace)
        return self._clients[namespace]

    async def sender(self, namespace: str, entity: str, *, topic: bool = False) -> ServiceBusSender:
        key = (namespace, entity)
        if key not in self._senders:
            client = self.client(namespace)
            self._senders[key] = client.get_topic_sender(entity) if topic else client.get_queue_sender(entity)
        return self._senders[key]

    async def drop_sender(self, namespace: str, entity: str) -> None:
        """A sender that failed is closed and made again next time (its link may be broken)."""
        sender = self._senders.pop((namespace, entity), None)
        if sender is not None:
            await _quietly(sender.close())

    def close(self) -> None:
        async def shut() -> None:
            for sender in list(self._senders.values()):
                await _quietly(sender.close())
            for client in list(self._clients.values()):
                await _quietly(client.close())
            self._senders.clear()
            self._clients.clear()

        if self._loop.is_running():
            try:
                asyncio.run_coroutine_threadsafe(shut(), self._loop).result(10)
            except Exception as exc:  # closing is best effort: the process is going away
                log.warning("closing Service Bus: %s", type(exc).__name__)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)


def translate(exc: BaseException) -> QueueError:
    """An SDK error as the port's: a lost lock (message, session, already settled) or the queue being unavailable."""
    from azure.servicebus.exceptions import MessageAlreadySettled, MessageLockLostError, SessionLockLostError

    if isinstance(exc, (MessageLockLostError, SessionLockLostError, MessageAlreadySettled)):
        return LockLost(f"the lock was lost ({type(exc).__name__}); the message was not settled here")
    return QueueError(f"Service Bus: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip())


async def _quietly(work: Awaitable[Any]) -> None:
    try:
        await work
    except Exception as exc:
        log.debug("ignored while tidying up: %s", exc)


def outgoing(m: Message, *, session: bool) -> Any:
    """The SDK's message for ``m``: its id, its session (on a session queue), its properties."""
    from azure.servicebus import ServiceBusMessage

    return ServiceBusMessage(
        m.body,
        message_id=m.message_id,
        session_id=m.session if session else None,
        application_properties=cast("dict[str | bytes, Any]", dict(m.properties)) or None,
        content_type="application/json",
    )


def _properties(msg: ServiceBusReceivedMessage) -> dict[str, Any]:
    """Application properties as str keys and plain values (the SDK hands AMQP strings over as bytes)."""
    out: dict[str, Any] = {}
    for key, value in (msg.application_properties or {}).items():
        name = key.decode("utf-8") if isinstance(key, bytes) else str(key)
        out[name] = value.decode("utf-8") if isinstance(value, bytes) else value
    return out


def _body(msg: ServiceBusReceivedMessage) -> bytes:
    body = msg.body
    if isinstance(body, bytes | bytearray):
        return bytes(body)
    return b"".join(bytes(part) for part in body)


@dataclass
class _Held:
    """A session receiver and how many of its deliveries are still unsettled: closed (the session freed) at 0."""

    receiver: ServiceBusReceiver
    open: int


@dataclass
class ServiceBusQueue:
    """One queue of a namespace. ``rejects``: (namespace, queue) of the rejections queue, for ``reject``."""

    bus: ServiceBus
    name: str
    namespace: str
    queue: str
    sessions: bool
    max_deliveries: int
    rejects: tuple[str, str] | None = None
    _receiver: ServiceBusReceiver | None = field(default=None, repr=False)

    # --- sending ----------------------------------------------------------------------------

    def send(self, messages: Sequence[Message]) -> None:
        for m in messages:
            if self.sessions and not m.session:
                raise QueueError(f"the {self.name} queue takes sessions: message {m.message_id} names none")
        self.bus.run(lambda: self._send(self.namespace, self.queue, messages, session=self.sessions))

    async def _send(self, namespace: str, queue: str, messages: Sequence[Message], *, session: bool) -> None:
        sender = await self.bus.sender(namespace, queue)
        now = [outgoing(m, session=session) for m in messages if m.deliver_at is None]
        later: dict[datetime, list[Any]] = {}
        for m in messages:
            if m.deliver_at is not None:
                later.setdefault(m.deliver_at, []).append(outgoing(m, session=session))
        try:
            if now:
                await sender.send_messages(now)
            for at, group in later.items():
                await sender.schedule_messages(group, at)
        except Exception:
            await self.bus.drop_sender(namespace, queue)
            raise

    # --- receiving and settling ----------------------------------------------------------------

    def receive(self, *, max_messages: int = 1, wait_s: float = 0.0) -> list[Delivery]:
        wait = max(wait_s, 1.0)  # the SDK's smallest useful wait; a session is looked for within it
        return self.bus.run(lambda: self._receive(max_messages, wait), budget=self.bus.budget_s + wait)

    async def _receive(self, max_messages: int, wait: float) -> list[Delivery]:
        from azure.servicebus import NEXT_AVAILABLE_SESSION
        from azure.servicebus.exceptions import OperationTimeoutError, SessionCannotBeLockedError

        client = self.bus.client(self.namespace)
        if not self.sessions:
            if self._receiver is None:
                self._receiver = client.get_queue_receiver(self.queue, max_wait_time=wait)
            got = await self._receiver.receive_messages(max_message_count=max_messages, max_wait_time=wait)
            return [self._delivery(m, self._receiver) for m in got]
        receiver = client.get_queue_receiver(self.queue, session_id=NEXT_AVAILABLE_SESSION, max_wait_time=wait)
        try:
            got = await receiver.receive_messages(max_message_count=1, max_wait_time=wait)  # one per session
        except (OperationTimeoutError, SessionCannotBeLockedError):
            got = []  # no session had anything for us within the wait
        if not got:
            await _quietly(receiver.close())
            return []
        held = _Held(receiver, len(got))
        return [self._delivery(m, held) for m in got]

    def _delivery(self, m: ServiceBusReceivedMessage, holder: object) -> Delivery:
        return Delivery(
            message_id=str(m.message_id),
            body=_body(m),
            session=m.session_id,
            properties=_properties(m),
            delivery_count=int(m.delivery_count or 0) + 1,  # the AMQP header counts the deliveries before this one
            enqueued_at=m.enqueued_time_utc,
            locked_until=m.locked_until_utc,
            handle=(holder, m),
        )

    def complete(self, delivery: Delivery) -> None:
        self._settle(delivery, lambda r, m: r.complete_message(m))

    def abandon(self, delivery: Delivery) -> None:
        self._settle(delivery, lambda r, m: r.abandon_message(m))

    def dead_letter(self, delivery: Delivery, reason: str, description: str) -> None:
        self._settle(delivery, lambda r, m: r.dead_letter_message(m, reason=reason, error_description=description))

    def _settle(
        self, delivery: Delivery, settle: Callable[[ServiceBusReceiver, ServiceBusReceivedMessage], Awaitable[None]]
    ) -> None:
        from azure.servicebus import ServiceBusReceivedMessage

        handle = delivery.handle
        if not (isinstance(handle, tuple) and len(handle) == 2 and isinstance(handle[1], ServiceBusReceivedMessage)):
            raise LockLost(f"message {delivery.message_id} was not received from this queue")
        holder, message = handle

        async def run() -> None:
            receiver = holder.receiver if isinstance(holder, _Held) else holder
            try:
                await settle(receiver, message)
            finally:
                if isinstance(holder, _Held):
                    holder.open -= 1
                    if holder.open <= 0:
                        await _quietly(holder.receiver.close())  # the session goes back to the queue

        self.bus.run(run)

    # --- dead letters ------------------------------------------------------------------------------

    def reject(self, received: Received, reason: str, description: str) -> None:
        if self.rejects is None:
            raise QueueError(f"the {self.name} queue has no rejections queue to dead-letter through")
        namespace, queue = self.rejects
        carried: dict[str, Any] = {
            **dict(received.properties),
            ORIGIN: self.name,
            SESSION: received.session or "",
            REASON: reason,
            DESCRIPTION: description[:4000],
            DELIVERIES: received.delivery_count,
        }
        copy = Message(received.body, received.message_id, None, carried)

        async def run() -> None:
            await self._send(namespace, queue, [copy], session=False)
            await drain_rejections(self.bus.client(namespace), queue)

        self.bus.run(run)

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        return self.bus.run(lambda: self._dead_letters(limit))

    async def _dead_letters(self, limit: int) -> list[DeadLetter]:
        own = [self._dead(m, rejected=False) for m in await self._peek(self.namespace, self.queue, limit)]
        if self.rejects is not None and len(own) < limit:
            namespace, queue = self.rejects
            await drain_rejections(self.bus.client(namespace), queue)
            for m in await self._peek(namespace, queue, SCAN_BOUND):
                if _properties(m).get(ORIGIN) == self.name and len(own) < limit:
                    own.append(self._dead(m, rejected=True))
        return own

    async def _peek(self, namespace: str, queue: str, limit: int) -> list[ServiceBusReceivedMessage]:
        from azure.servicebus import ServiceBusSubQueue

        receiver = self.bus.client(namespace).get_queue_receiver(queue, sub_queue=ServiceBusSubQueue.DEAD_LETTER)
        found: list[ServiceBusReceivedMessage] = []
        try:
            after = 0
            while len(found) < limit:
                size = min(PAGE, limit - len(found))
                page = await receiver.peek_messages(max_message_count=size, sequence_number=after)
                if not page:
                    break
                found.extend(page)
                after = int(page[-1].sequence_number or 0) + 1
        finally:
            await _quietly(receiver.close())
        return found

    def _dead(self, m: ServiceBusReceivedMessage, *, rejected: bool) -> DeadLetter:
        props = _properties(m)
        kept = {k: v for k, v in props.items() if k not in CARRIED and k not in BROKER_SET}
        if rejected:
            session = str(props.get(SESSION) or "") or None
            count = int(props.get(DELIVERIES) or 1)
            ident = f"{self.name}-r{m.sequence_number}"
        else:
            # in the dead-letter queue every delivery is one before: the header's count is the count
            session, count, ident = m.session_id, int(m.delivery_count or 0), f"{self.name}-{m.sequence_number}"
        return DeadLetter(
            id=ident,
            queue=self.name,
            message_id=str(m.message_id),
            session=session,
            reason=m.dead_letter_reason or "",
            description=m.dead_letter_error_description or "",
            delivery_count=count,
            enqueued_at=m.enqueued_time_utc,
            dead_lettered_at=None,  # Service Bus does not say when
            body=_body(m),
            properties=kept,
        )

    def _where(self, dead_letter_id: str) -> tuple[str, str, int, bool] | None:
        """(namespace, queue, sequence number, from the rejections queue) that an id names, or None."""
        prefix = f"{self.name}-"
        rest = dead_letter_id.strip()
        if not rest.startswith(prefix):
            return None
        rest = rest[len(prefix) :]
        rejected = rest.startswith("r") and self.rejects is not None
        number = rest[1:] if rejected else rest
        if not number.isdigit():
            return None
        namespace, queue = self.rejects if rejected and self.rejects else (self.namespace, self.queue)
        return namespace, queue, int(number), rejected

    def find(self, dead_letter_id: str) -> DeadLetter | None:
        where = self._where(dead_letter_id)
        if where is None:
            return None
        namespace, queue, number, rejected = where

        async def run() -> DeadLetter | None:
            from azure.servicebus import ServiceBusSubQueue

            receiver = self.bus.client(namespace).get_queue_receiver(queue, sub_queue=ServiceBusSubQueue.DEAD_LETTER)
            try:
                page = await receiver.peek_messages(max_message_count=1, sequence_number=number)
            finally:
                await _quietly(receiver.close())
            if not page or page[0].sequence_number != number:
                return None
            if rejected and _properties(page[0]).get(ORIGIN) != self.name:
                return None
            return self._dead(page[0], rejected=rejected)

        return self.bus.run(run)

    def replay(self, dead_letter_id: str) -> DeadLetter:
        return self._take_dead(dead_letter_id, replay=True)

    def purge(self, dead_letter_id: str) -> DeadLetter:
        return self._take_dead(dead_letter_id, replay=False)

    def _take_dead(self, dead_letter_id: str, *, replay: bool) -> DeadLetter:
        where = self._where(dead_letter_id)
        if where is None:
            raise NoSuchDeadLetter(f"no dead letter {dead_letter_id} in the {self.name} queue", field="id")
        namespace, queue, number, rejected = where

        async def run() -> DeadLetter:
            from azure.servicebus import ServiceBusSubQueue

            receiver = self.bus.client(namespace).get_queue_receiver(
                queue, sub_queue=ServiceBusSubQueue.DEAD_LETTER, max_wait_time=2
            )
            held: list[ServiceBusReceivedMessage] = []
            target: ServiceBusReceivedMessage | None = None
            try:
                while target is None and len(held) < SCAN_BOUND:
                    batch = await receiver.receive_messages(max_message_count=PAGE, max_wait_time=2)
                    if not batch:
                        break
                    for m in batch:
                        if m.sequence_number == number and target is None:
                            target = m
                        else:
                            held.append(m)
                if target is None or (rejected and _properties(target).get(ORIGIN) != self.name):
                    if target is not None:
                        held.append(target)
                    raise NoSuchDeadLetter(f"no dead letter {dead_letter_id} in the {self.name} queue", field="id")
                dead = self._dead(target, rejected=rejected)
                if replay:
                    again = Message(dead.body, dead.message_id, dead.session, dead.properties)
                    await self._send(self.namespace, self.queue, [again], session=self.sessions)
                await receiver.complete_message(target)
                return dead
            finally:
                for m in held:  # looked through, not ours: back for the next operator, at once
                    await _quietly(receiver.abandon_message(m))
                await _quietly(receiver.close())

        return self.bus.run(run, budget=self.bus.budget_s * 2)

    def counts(self) -> QueueCounts:
        async def run() -> QueueCounts:
            dead = len(await self._peek(self.namespace, self.queue, COUNT_BOUND))
            if self.rejects is not None:
                namespace, queue = self.rejects
                rejected = await self._peek(namespace, queue, COUNT_BOUND)
                dead += sum(1 for m in rejected if _properties(m).get(ORIGIN) == self.name)
            return QueueCounts(self.name, None, None, min(dead, COUNT_BOUND), at_least=dead >= COUNT_BOUND)

        return self.bus.run(run)

    def close(self) -> None:
        receiver, self._receiver = self._receiver, None
        if receiver is not None:
            self.bus.run(lambda: _quietly(receiver.close()))


async def drain_rejections(client: ServiceBusClient, queue: str, *, wait: float = 1.0) -> int:
    """Dead-letter everything in the rejections queue with the reason each copy carries; how many it moved.

    Every message there was put there to be dead-lettered, by this instance or another, so whoever
    receives it dead-letters it: a copy left behind by a crash goes on the next rejection, or the
    next listing, whichever comes first.
    """
    receiver = client.get_queue_receiver(queue, max_wait_time=wait)
    moved = 0
    try:
        while True:
            batch = await receiver.receive_messages(max_message_count=PAGE, max_wait_time=wait)
            if not batch:
                return moved
            for m in batch:
                props = _properties(m)
                await receiver.dead_letter_message(
                    m,
                    reason=str(props.get(REASON) or "rejected"),
                    error_description=str(props.get(DESCRIPTION) or ""),
                )
                moved += 1
    finally:
        await _quietly(receiver.close())


@dataclass
class ServiceBusTopic:
    """Decision events out: each a CloudEvent in structured mode (``application/cloudevents+json``) on a topic."""

    bus: ServiceBus
    namespace: str
    topic: str

    def publish(self, events: Sequence[CloudEvent]) -> None:
        from azure.servicebus import ServiceBusMessage

        async def run() -> None:
            sender = await self.bus.sender(self.namespace, self.topic, topic=True)
            messages = [
                ServiceBusMessage(
                    json.dumps(e.document(), separators=(",", ":")).encode("utf-8"),
                    message_id=e.id,
                    content_type="application/cloudevents+json; charset=utf-8",
                    subject=e.type,  # sys.Label: a subscription filters on it
                )
                for e in events
            ]
            try:
                await sender.send_messages(messages)
            except Exception:
                await self.bus.drop_sender(self.namespace, self.topic)
                raise

        self.bus.run(run)

    def close(self) -> None:
        """The links close with the ``ServiceBus``."""


__all__ = ["Properties", "ServiceBus", "ServiceBusQueue", "ServiceBusTopic", "connector", "drain_rejections"]
