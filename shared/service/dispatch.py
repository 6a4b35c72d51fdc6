"""After a commit: the work it left goes on the work queue, and what it decided goes out as events.

The commit is the truth: every action is in the ledger's outbox before anything is sent here.
The service layer hands each committed ``Change`` over in the same step that commits it
(``OrgGuard.after_commit``); a thread of this dispatcher sends it a moment later, so a slow or
unreachable bus never holds up the gate's answer. Whatever is not sent -- the bus is down, the
process dies first, the hand-over queue is full -- is not lost work: the minute timer (the
housekeeping function in Azure, the local host's safety-net round) carries out every due
action in the outbox all the same. Work arrives at once, or within a minute.

Decision events are tried three times, then dropped with a logged error and a count
(``orgguard.bus.sent`` with status ``dropped``): the audit log, not the topic, is the record.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from shared import telemetry
from shared.bus.decisions import DECISION_TYPE, CloudEvent, DecisionEvents
from shared.bus.port import Message, WorkQueue
from shared.domain.decisions import DecisionFact, decisions_in, with_work
from shared.domain.model import Action, Change, Decision, MailboxKey
from shared.service.work import work_message
from shared.telemetry.lograte import rate_limited

log = rate_limited(logging.getLogger("orgguard.dispatch"))

BACKLOG = 10_000  # hand-overs waiting to be sent; beyond that they are dropped (the timer still does the work)
EVENT_TRIES = 3


@dataclass
class Dispatch:
    """Sends what commits leave behind, on a thread of its own. ``work``/``events``: None when not configured."""

    work: WorkQueue | None = None
    events: DecisionEvents | None = None
    pause: Callable[[float], None] = time.sleep
    _backlog: queue.Queue[Callable[[], None]] = field(default_factory=lambda: queue.Queue(BACKLOG))
    _thread: threading.Thread | None = None
    _start: threading.Lock = field(default_factory=threading.Lock)

    @property
    def active(self) -> bool:
        return self.work is not None or self.events is not None

    # --- what the service layer calls, right after a commit ------------------------------

    def committed(self, change: Change, decision: Decision | None = None) -> None:
        """Hand over the work and the decisions of a committed change (never raises: the commit stands)."""
        if self.work is not None:
            messages = [work_message(case.id, change.key, "decided") for case in with_work(change)]
            if messages:
                self._hand_over(lambda: self._send_work(messages))
        if self.events is not None:
            events = [decision_event(fact) for fact in decisions_in(change, decision)]
            if events:
                self._hand_over(lambda: self._publish(events))

    def retried(self, action: Action, key: MailboxKey) -> None:
        """An operator put a failed action back in the outbox: carry it out now."""
        if self.work is not None:
            message = work_message(action.case_id, key, "retried")
            self._hand_over(lambda: self._send_work([message]))

    # --- the sending thread --------------------------------------------------------------

    def _hand_over(self, send: Callable[[], None]) -> None:
        try:
            self._backlog.put_nowait(send)
        except queue.Full:
            telemetry.count(telemetry.BUS_SENT, operation="handover", status="dropped")
            log.warning("the bus backlog is full (%d); the minute timer carries this work out", BACKLOG)
            return
        self._ensure_thread()

    def _ensure_thread(self) -> None:
        with self._start:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="orgguard-dispatch", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            send = self._backlog.get()
            try:
                send()
            except Exception:  # each send reports its own failure; this keeps the thread alive whatever happens
                log.exception("dispatching failed")
            finally:
                self._backlog.task_done()

    def _send_work(self, messages: Sequence[Message]) -> None:
        assert self.work is not None
        try:
            self.work.send(messages)
        except Exception as exc:
            telemetry.count(telemetry.BUS_SENT, len(messages), operation="work", status="failed")
            log.warning("work not queued (%s); the minute timer carries it out", type(exc).__name__)
            return
        telemetry.count(telemetry.BUS_SENT, len(messages), operation="work", status="sent")

    def _publish(self, events: Sequence[CloudEvent]) -> None:
        assert self.events is not None
        for attempt in range(1, EVENT_TRIES + 1):
            try:
                self.events.publish(events)
            except Exception as exc:
                if attempt == EVENT_TRIES:
                    telemetry.count(telemetry.BUS_SENT, len(events), operation="event", status="dropped")
                    log.error("%d decision event(s) dropped after %d tries: %s", len(events), attempt, exc)
                    return
                self.pause(0.5 * attempt)
                continue
            telemetry.count(telemetry.BUS_SENT, len(events), operation="event", status="sent")
            return

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything handed over was sent (or given up); whether it was, within ``timeout``."""
        until = time.monotonic() + timeout
        while self._backlog.unfinished_tasks:
            if time.monotonic() >= until:
                return False
            time.sleep(0.01)
        return True


def decision_event(fact: DecisionFact) -> CloudEvent:
    """A decision as a CloudEvent (``com.orgguard.decision.v1``); the README documents ``data``."""
    case = fact.case
    ident = f"{fact.kind}:{fact.event_key or ''}:{case.id if case else ''}:{case.state.value if case else ''}"
    data = {
        "decision": fact.kind,
        "mailbox": fact.key.address,
        "claimant": fact.claimant,
        "owner": fact.owner,
        "new_owner": fact.new_owner,
        "effect": fact.decision.effect.value,
        "rule": fact.decision.rule,
        "explanation": fact.decision.explanation,
        "dry_run": fact.decision.dry_run,
        "origin": fact.origin.value,
        "kind": fact.claim_kind,
        "case": case.id if case else None,
        "state": case.state.value if case else None,
        "actions": [{"id": a.id, "kind": a.kind.value, "org": a.org} for a in case.actions] if case else [],
    }
    subject = f"cases/{case.id}" if case else f"claims/{_stable(ident)}"
    return CloudEvent(_stable(ident), DECISION_TYPE, subject, _utc(fact.at), data)


def _stable(text: str) -> str:
    """The same decision gets the same event id, so a consumer can drop a repeat."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "orgguard:" + text))


def _utc(at: datetime) -> datetime:
    return at.astimezone(UTC)
