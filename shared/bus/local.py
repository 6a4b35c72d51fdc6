"""The local work queue: Service Bus' semantics on one SQLite file, for ``orgguard serve`` and the tests.

One file holds every queue (a row per message). Each operation is one ``BEGIN IMMEDIATE``
transaction, so consumers in any thread or process take turns on the file lock and a
message is delivered to one of them at a time. A delivery carries a lock token and a lock
expiry: settling checks both, so a consumer whose lock ran out (it crashed, or was too slow)
cannot complete a message another consumer has since received (``LockLost``).

On a session queue the deliverable message of a session is its oldest visible one, and a
session is busy while any of its messages is locked: that is what keeps a mailbox's work in
order and on one consumer at a time. Senders in this process wake waiting receivers at once;
receivers in another process see new messages within ``POLL_S``.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shared.bus.port import (
    MAX_DELIVERIES_REASON,
    DeadLetter,
    Delivery,
    LockLost,
    Message,
    NoSuchDeadLetter,
    QueueCounts,
    QueueError,
    Received,
)

POLL_S = 0.1  # how often a waiting receiver looks again (another process's sends, scheduled messages coming due)

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL, message_id TEXT NOT NULL, session TEXT, body BLOB NOT NULL, properties TEXT NOT NULL,
    enqueued_at REAL NOT NULL, visible_at REAL NOT NULL, deliveries INTEGER NOT NULL DEFAULT 0,
    lock_token TEXT, locked_until REAL,
    dead INTEGER NOT NULL DEFAULT 0, reason TEXT, description TEXT, dead_at REAL
);
CREATE INDEX IF NOT EXISTS messages_ready ON messages (queue, dead, visible_at, seq);
CREATE INDEX IF NOT EXISTS messages_by_session ON messages (queue, session, dead, seq);
"""

# The oldest visible message of a session whose messages are all unlocked (or one without a session).
_READY = """
SELECT * FROM messages m
WHERE m.queue = :queue AND m.dead = 0 AND m.visible_at <= :now AND (m.locked_until IS NULL OR m.locked_until < :now)
  AND (m.session IS NULL OR (
        m.seq = (SELECT MIN(s.seq) FROM messages s
                 WHERE s.queue = m.queue AND s.session = m.session AND s.dead = 0 AND s.visible_at <= :now)
    AND NOT EXISTS (SELECT 1 FROM messages b
                    WHERE b.queue = m.queue AND b.session = m.session AND b.dead = 0 AND b.locked_until >= :now)))
ORDER BY m.seq LIMIT :limit
"""

_wakeups: dict[str, threading.Condition] = {}
_wakeups_lock = threading.Lock()


def _wakeup(path: str) -> threading.Condition:
    """One condition per file in this process, so a send wakes every receiver on that file at once."""
    with _wakeups_lock:
        return _wakeups.setdefault(path, threading.Condition())


def _when(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


class LocalQueue:
    """One queue (``name``) in the SQLite file at ``path``."""

    def __init__(
        self,
        path: str | Path,
        name: str,
        *,
        sessions: bool,
        max_deliveries: int,
        lock_s: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = str(path)
        if self.path == ":memory:" or not self.path:
            raise QueueError("the local queue needs a file (its consumers in other processes share it)")
        if max_deliveries < 1:
            raise ValueError("max_deliveries must be at least 1")
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.sessions = sessions
        self.max_deliveries = max_deliveries
        self.lock_s = lock_s
        self.clock = clock
        # One connection per queue, its transactions taken in turn: the file lock serializes writers anyway,
        # and a queue's operations are few and short next to the work they hand out.
        self._db: sqlite3.Connection | None = None
        self._lock = threading.RLock()
        self._wakeup = _wakeup(str(Path(self.path).resolve()))
        try:
            with self._lock:
                self._open().executescript(SCHEMA)
        except sqlite3.Error as exc:
            raise QueueError(f"cannot prepare the local queue at {self.path}: {exc}") from exc

    @classmethod
    def from_url(cls, url: str, name: str, **kwargs: Any) -> LocalQueue:
        """``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``."""
        rest = url.removeprefix("sqlite:")
        path = rest[3:] if rest.startswith("///") else ""
        if not path:
            raise QueueError(f"the local queue URL names no file: {url!r} (sqlite:///.orgguard/bus.db)")
        return cls(path, name, **kwargs)

    # --- connections and transactions ----------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        """The queue's connection (opened on first use, and again after ``close``); call it holding the lock."""
        if self._db is None:
            try:
                db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
                db.row_factory = sqlite3.Row
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
            except sqlite3.Error as exc:
                raise QueueError(f"cannot open the local queue at {self.path}: {exc}") from exc
            self._db = db
        return self._db

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction: committed when the block ends, rolled back if it raises."""
        with self._lock:
            db = self._open()
            try:
                db.execute("BEGIN IMMEDIATE")
                with db:  # the connection's own context: COMMIT, or ROLLBACK on any exception
                    yield db
            except sqlite3.Error as exc:
                if db.in_transaction:
                    db.rollback()
                raise QueueError(f"the local queue is unavailable: {exc}") from exc

    def _rows(self, sql: str, args: Sequence[Any]) -> list[sqlite3.Row]:
        """A read outside any transaction (one statement sees one committed state in WAL mode)."""
        with self._lock:
            try:
                return self._open().execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise QueueError(f"the local queue is unavailable: {exc}") from exc

    def _notify(self) -> None:
        with self._wakeup:
            self._wakeup.notify_all()

    # --- sending and receiving -------------------------------------------------------------

    def send(self, messages: Sequence[Message]) -> None:
        now = self.clock()
        for m in messages:
            if self.sessions and not m.session:
                raise QueueError(f"the {self.name} queue takes sessions: message {m.message_id} names none")
        with self._tx() as db:
            for m in messages:
                visible = m.deliver_at.timestamp() if m.deliver_at else now
                db.execute(
                    "INSERT INTO messages (queue, message_id, session, body, properties, enqueued_at, visible_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (self.name, m.message_id, m.session if self.sessions else None, m.body,
                     json.dumps(dict(m.properties)), now, visible),
                )  # fmt: skip
        self._notify()

    def receive(self, *, max_messages: int = 1, wait_s: float = 0.0) -> list[Delivery]:
        until = time.monotonic() + max(wait_s, 0.0)
        while True:
            got = self._take(max_messages)
            left = until - time.monotonic()
            if got or left <= 0:
                return got
            with self._wakeup:
                self._wakeup.wait(min(left, POLL_S))

    def _take(self, limit: int) -> list[Delivery]:
        taken: list[Delivery] = []
        expired = False
        with self._tx() as db:
            while len(taken) < limit:
                now = self.clock()
                rows = db.execute(_READY, {"queue": self.name, "now": now, "limit": limit - len(taken)}).fetchall()
                if not rows:
                    break
                for row in rows:
                    if row["deliveries"] >= self.max_deliveries:  # its last lock ran out unsettled
                        self._bury(db, row["seq"], MAX_DELIVERIES_REASON, _too_many(row["deliveries"]), now)
                        expired = True
                        continue
                    token = str(uuid.uuid4())
                    db.execute(
                        "UPDATE messages SET deliveries = deliveries + 1, lock_token = ?, locked_until = ? "
                        "WHERE seq = ?",
                        (token, now + self.lock_s, row["seq"]),
                    )
                    taken.append(self._delivery(row, token, now + self.lock_s))
                if expired:
                    expired = False
                    continue  # a buried head frees its session's next message
                break
        return taken

    def _delivery(self, row: sqlite3.Row, token: str, locked_until: float) -> Delivery:
        return Delivery(
            message_id=row["message_id"],
            body=bytes(row["body"]),
            session=row["session"],
            properties=json.loads(row["properties"]),
            delivery_count=row["deliveries"] + 1,
            enqueued_at=_when(row["enqueued_at"]),
            locked_until=_when(locked_until),
            handle=(row["seq"], token),
        )

    # --- settlement ------------------------------------------------------------------------

    def _locked(self, db: sqlite3.Connection, delivery: Delivery) -> sqlite3.Row:
        seq, token = _handle(delivery)
        row: sqlite3.Row | None = db.execute(
            "SELECT * FROM messages WHERE seq = ? AND queue = ?", (seq, self.name)
        ).fetchone()
        if row is None or row["lock_token"] != token or row["dead"] or (row["locked_until"] or 0) < self.clock():
            raise LockLost(f"the lock on message {delivery.message_id} ran out; it was not settled here")
        return row

    def complete(self, delivery: Delivery) -> None:
        with self._tx() as db:
            row = self._locked(db, delivery)
            db.execute("DELETE FROM messages WHERE seq = ?", (row["seq"],))
        self._notify()  # the session's next message is deliverable now

    def abandon(self, delivery: Delivery) -> None:
        with self._tx() as db:
            row = self._locked(db, delivery)
            if row["deliveries"] >= self.max_deliveries:
                self._bury(db, row["seq"], MAX_DELIVERIES_REASON, _too_many(row["deliveries"]), self.clock())
            else:
                db.execute("UPDATE messages SET lock_token = NULL, locked_until = NULL WHERE seq = ?", (row["seq"],))
        self._notify()

    def dead_letter(self, delivery: Delivery, reason: str, description: str) -> None:
        with self._tx() as db:
            row = self._locked(db, delivery)
            self._bury(db, row["seq"], reason, description, self.clock())
        self._notify()

    def reject(self, received: Received, reason: str, description: str) -> None:
        now = self.clock()
        with self._tx() as db:
            db.execute(
                "INSERT INTO messages (queue, message_id, session, body, properties, enqueued_at, visible_at, "
                "deliveries, dead, reason, description, dead_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?)",
                (self.name, received.message_id, received.session if self.sessions else None, received.body,
                 json.dumps(dict(received.properties)),
                 received.enqueued_at.timestamp() if received.enqueued_at else now, now,
                 received.delivery_count, reason, description, now),
            )  # fmt: skip

    @staticmethod
    def _bury(db: sqlite3.Connection, seq: int, reason: str, description: str, now: float) -> None:
        db.execute(
            "UPDATE messages SET dead = 1, reason = ?, description = ?, dead_at = ?, lock_token = NULL, "
            "locked_until = NULL WHERE seq = ?",
            (reason, description, now, seq),
        )

    # --- dead letters ----------------------------------------------------------------------

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        rows = self._rows(
            "SELECT * FROM messages WHERE queue = ? AND dead = 1 ORDER BY dead_at, seq LIMIT ?", (self.name, limit)
        )
        return [self._dead(row) for row in rows]

    def find(self, dead_letter_id: str) -> DeadLetter | None:
        seq = self._seq(dead_letter_id)
        if seq is None:
            return None
        rows = self._rows("SELECT * FROM messages WHERE seq = ? AND queue = ? AND dead = 1", (seq, self.name))
        return self._dead(rows[0]) if rows else None

    def replay(self, dead_letter_id: str) -> DeadLetter:
        with self._tx() as db:
            row = self._dead_row(db, dead_letter_id)
            now = self.clock()
            db.execute(
                "INSERT INTO messages (queue, message_id, session, body, properties, enqueued_at, visible_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (self.name, row["message_id"], row["session"], row["body"], row["properties"], now, now),
            )
            db.execute("DELETE FROM messages WHERE seq = ?", (row["seq"],))
        self._notify()
        return self._dead(row)

    def purge(self, dead_letter_id: str) -> DeadLetter:
        with self._tx() as db:
            row = self._dead_row(db, dead_letter_id)
            db.execute("DELETE FROM messages WHERE seq = ?", (row["seq"],))
        return self._dead(row)

    def _dead_row(self, db: sqlite3.Connection, dead_letter_id: str) -> sqlite3.Row:
        seq = self._seq(dead_letter_id)
        row: sqlite3.Row | None = None
        if seq is not None:
            row = db.execute(
                "SELECT * FROM messages WHERE seq = ? AND queue = ? AND dead = 1", (seq, self.name)
            ).fetchone()
        if row is None:
            raise NoSuchDeadLetter(f"no dead letter {dead_letter_id} in the {self.name} queue", field="id")
        return row

    def _seq(self, dead_letter_id: str) -> int | None:
        prefix = f"{self.name}-"
        rest = dead_letter_id.strip()
        if not rest.startswith(prefix) or not rest[len(prefix) :].isdigit():
            return None
        return int(rest[len(prefix) :])

    def _dead(self, row: sqlite3.Row) -> DeadLetter:
        return DeadLetter(
            id=f"{self.name}-{row['seq']}",
            queue=self.name,
            message_id=row["message_id"],
            session=row["session"],
            reason=row["reason"] or "",
            description=row["description"] or "",
            delivery_count=row["deliveries"],
            enqueued_at=_when(row["enqueued_at"]),
            dead_lettered_at=_when(row["dead_at"]),
            body=bytes(row["body"]),
            properties=json.loads(row["properties"]),
        )

    def counts(self) -> QueueCounts:
        now = self.clock()
        (row,) = self._rows(
            "SELECT SUM(dead = 0 AND visible_at <= ?) AS active, SUM(dead = 0 AND visible_at > ?) AS scheduled, "
            "SUM(dead = 1) AS dead FROM messages WHERE queue = ?",
            (now, now, self.name),
        )
        return QueueCounts(self.name, row["active"] or 0, row["scheduled"] or 0, row["dead"] or 0)

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


def _too_many(deliveries: int) -> str:
    return f"delivered {deliveries} time(s) without being completed (the queue's maximum delivery count)"


def _handle(delivery: Delivery) -> tuple[int, str]:
    handle = delivery.handle
    if not (isinstance(handle, tuple) and len(handle) == 2):
        raise LockLost(f"message {delivery.message_id} was not received from this queue")
    seq, token = handle
    return int(seq), str(token)
