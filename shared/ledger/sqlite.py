"""The embedded ledger: one SQLite file in WAL mode.

Every ``commit`` is one ``BEGIN IMMEDIATE`` transaction, so writers in any
thread or process serialize on the file lock and a decision is recorded whole
or not at all. The mailbox row's ``version`` makes each decision conditional on
the view it was computed from. The audit head (last seq and hash) is kept in
``meta`` in the same transaction, so deleting the newest entries is detected too.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from shared.domain.exemptions import Book, Plan
from shared.domain.jobs import Job, JobConflict, JobKind
from shared.domain.model import (
    OPEN_STATES,
    Action,
    AuditEntry,
    AuditEvent,
    AuditReport,
    Case,
    CaseQuery,
    Change,
    ClaimKind,
    ClaimRecord,
    Effect,
    EventOutcome,
    MailboxKey,
    MailboxView,
    NotFound,
    Origin,
    Overview,
    Ownership,
    Page,
    PolicyVersion,
    utcnow,
)
from shared.ledger import codec, deadline
from shared.ledger.checkpoints import CHECKPOINTS
from shared.ledger.cursors import CursorCodec, new_secret
from shared.ledger.deadline import DeadlineExceeded, WouldWait
from shared.ledger.port import ConcurrencyConflict, DuplicateEvent, ExemptionPlanner, LedgerError
from shared.ledger.recent import Recent
from shared.ledger.steps import ChangeRule, OutboxSteps

SCHEMA_VERSION = 2  # 2: exemptions
BUSY_SLACK_MS = 250  # a writer's busy timeout is set again only when its budget moved by more than this
PING_WAIT_S = 0.5  # a writer that cannot get in within this is reported as stuck by the health check

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS mailboxes (
    key TEXT PRIMARY KEY, version INTEGER NOT NULL, ownership TEXT
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    event_key TEXT PRIMARY KEY, effect TEXT NOT NULL, case_id TEXT, at TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS claims (
    key TEXT NOT NULL, at TEXT NOT NULL, event_key TEXT NOT NULL, org TEXT NOT NULL, kind TEXT NOT NULL,
    origin TEXT NOT NULL, effect TEXT NOT NULL, case_id TEXT, PRIMARY KEY (key, at, event_key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cases (
    seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, key TEXT NOT NULL,
    owner TEXT, claimant TEXT NOT NULL, state TEXT NOT NULL, doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS cases_by_state ON cases (state, seq);
CREATE INDEX IF NOT EXISTS cases_by_key ON cases (key, seq);
CREATE INDEX IF NOT EXISTS cases_by_claimant ON cases (claimant, seq);
CREATE INDEX IF NOT EXISTS cases_by_owner ON cases (owner, seq);
CREATE TABLE IF NOT EXISTS actions (
    seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, case_id TEXT NOT NULL,
    status TEXT NOT NULL, next_at TEXT, doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS actions_by_case ON actions (case_id, seq);
CREATE INDEX IF NOT EXISTS actions_pending ON actions (status, seq);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY, at TEXT NOT NULL, kind TEXT NOT NULL, subject TEXT NOT NULL,
    actor TEXT NOT NULL, data TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS policies (
    version INTEGER PRIMARY KEY, text TEXT NOT NULL, actor TEXT NOT NULL, at TEXT NOT NULL
);
"""


# Sweeps and migrations (appended): job records, and a key-ordered walk over ownership.
SCHEMA += """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, version INTEGER NOT NULL, created TEXT NOT NULL, doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_by_kind ON jobs (kind, created);
"""

# The audit head kept beside the log by the insert itself (one statement fewer on every decision; a ledger
# written before the trigger existed kept it by hand, with the same value).
SCHEMA += """
CREATE TRIGGER IF NOT EXISTS audit_head AFTER INSERT ON audit BEGIN
    INSERT OR REPLACE INTO meta (key, value) VALUES ('audit_head', NEW.seq || ':' || NEW.hash);
END;
"""

# Schema 2 (appended): exemptions, each a document; the set's version is in ``meta`` (exemptions_version).
SCHEMA += """
CREATE TABLE IF NOT EXISTS exemptions (id TEXT PRIMARY KEY, created TEXT NOT NULL, doc TEXT NOT NULL) WITHOUT ROWID;
"""


class SqliteLedger(OutboxSteps):
    """Ledger on one SQLite file; safe across threads (a connection each) and processes."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path == ":memory:" or not self.path:
            raise LedgerError("the SQLite ledger needs a file (each thread opens its own connection)")
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        # Writers in this process queue here instead of in SQLite's busy handler, whose
        # growing sleeps put hundreds of milliseconds on the tail under concurrent requests.
        self._writer = threading.Lock()
        self._exemptions: Book | None = None  # the set as last read, by its version
        self._policy: PolicyVersion | None = None  # the newest version as last read
        self._closed = False
        self._checkpointing = threading.Lock()
        self._actions = Recent(_decode_action)  # the outbox reads back what it wrote a moment before
        self._migrate()

    @classmethod
    def from_url(cls, url: str) -> SqliteLedger:
        """``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``."""
        rest = url.removeprefix("sqlite:")
        path = rest[3:] if rest.startswith("///") else rest
        if not path or (path.startswith("/") and url.startswith("sqlite://") and not url.startswith("sqlite:///")):
            raise LedgerError("the sqlite ledger URL names no file (sqlite:///.orgguard/ledger.db)")
        return cls(path)

    # --- connections --------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            except sqlite3.Error as exc:
                raise LedgerError(f"cannot open the ledger at {self.path}: {exc}") from exc
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
            conn.execute("PRAGMA wal_autocheckpoint=0")  # checkpoints run off the writers' path (checkpoints.py)
            self._local.conn = conn
            self._local.busy_ms = 30000
            with self._lock:
                self._all.append(conn)
        return conn

    @contextmanager
    def _tx(self, budget: float | None = None) -> Iterator[sqlite3.Connection]:
        """One write transaction; waiting for it is bounded, and a deadline is checked right before COMMIT.

        The wait for this process's writer lock and for SQLite's file lock share one budget: the current
        deadline's working time (the gate's), else ``DEFAULT_WAIT_S``. A writer that cannot get in within it
        gives up with ``DeadlineExceeded`` instead of queueing behind a stuck lock and holding a thread. Inside
        ``deadline.without_waiting`` (the gate on the event loop) it waits for neither: ``WouldWait`` at once.
        """
        db = self._conn()
        if not deadline.waiting_allowed():  # on the event loop: get in at once or not at all
            if not self._writer.acquire(blocking=False):
                raise WouldWait("another writer of this process holds the ledger")
            wait, until = 0.0, 0.0
        else:
            wait = deadline.wait_budget() if budget is None else budget
            until = time.monotonic() + wait
            if not self._writer.acquire(timeout=max(wait, 0.0)):
                raise DeadlineExceeded(f"the ledger's writers stayed busy for {wait:.1f} s")
        try:
            try:
                self._busy_timeout(db, max(1, int((until - time.monotonic()) * 1000)) if until else 0)
                db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if _busy(exc):
                    deadline.may_wait("wait for another process's write lock")
                    raise DeadlineExceeded(
                        f"another process held the ledger's write lock for over {wait:.1f} s"
                    ) from exc
                raise LedgerError(f"the ledger is unavailable: {exc}") from exc
            except sqlite3.Error as exc:
                raise LedgerError(f"the ledger is unavailable: {exc}") from exc
            try:
                yield db
                work = deadline.current()
                if work is not None and not work.claim_commit():
                    raise DeadlineExceeded(f"the decision missed its {work.seconds:g} s deadline; nothing recorded")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            try:
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                db.execute("ROLLBACK")
                raise LedgerError(f"the ledger could not commit: {exc}") from exc
        finally:
            self._writer.release()
        CHECKPOINTS.committed(self)

    def _busy_timeout(self, db: sqlite3.Connection, ms: int) -> None:
        """Bound SQLite's wait for another process's lock to ``ms``; the pragma is a statement of its own, so it is
        sent again only when the budget moved by more than ``BUSY_SLACK_MS`` (the gate's is the same each time)."""
        now = self._local.busy_ms
        if ms != now and (0 in (ms, now) or abs(ms - now) > BUSY_SLACK_MS):  # 0 (never wait) is exact
            db.execute(f"PRAGMA busy_timeout={ms}")
            self._local.busy_ms = ms

    def checkpoint(self, mode: str = "PASSIVE") -> None:
        """Fold the committed log into the file (the checkpoint thread, and ``close``); never waits for writers.

        Never at the same time as ``close``: closing a connection another thread is using crashes the process."""
        with self._checkpointing:
            if not self._closed:
                self._conn().execute(f"PRAGMA wal_checkpoint({mode})").fetchall()

    @contextmanager
    def _snapshot(self) -> Iterator[sqlite3.Connection]:
        """One read transaction: in WAL mode every query inside it sees the same committed state."""
        db = self._conn()
        try:
            db.execute("BEGIN")
        except sqlite3.Error as exc:
            raise LedgerError(f"the ledger is unavailable: {exc}") from exc
        try:
            yield db
        except sqlite3.Error as exc:
            raise LedgerError(f"the ledger is unavailable: {exc}") from exc
        finally:
            db.execute("COMMIT")

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        try:
            return self._conn().execute(sql, args).fetchall()
        except sqlite3.OperationalError as exc:
            if _busy(exc):  # a reader meets a lock only while the log is recovered or reset: wait where allowed
                deadline.may_wait("wait for the ledger's log")
            raise LedgerError(f"the ledger is unavailable: {exc}") from exc
        except sqlite3.Error as exc:
            raise LedgerError(f"the ledger is unavailable: {exc}") from exc

    def _migrate(self) -> None:
        with self._tx() as db:
            for statement in _statements(SCHEMA):
                db.execute(statement)
            row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            found = int(row["value"]) if row else 0
            if found > SCHEMA_VERSION:
                raise LedgerError(f"the ledger's schema {found} is newer than this OrgGuard ({SCHEMA_VERSION})")
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('cursor_key', ?)", (new_secret(),))
            secret = db.execute("SELECT value FROM meta WHERE key = 'cursor_key'").fetchone()["value"]
        self.cursors = CursorCodec(secret)

    # --- the mailbox aggregate ---------------------------------------------------------

    def mailbox(self, key: MailboxKey) -> MailboxView:
        rows = self._read("SELECT version, ownership FROM mailboxes WHERE key = ?", (key.address,))
        if not rows:
            return MailboxView(key, None, 0)
        doc = rows[0]["ownership"]
        ownership = codec.ownership_from(key, json.loads(doc)) if doc else None
        return MailboxView(key, ownership, int(rows[0]["version"]))

    def event(self, event_key: str) -> EventOutcome | None:
        rows = self._read("SELECT * FROM events WHERE event_key = ?", (event_key,))
        return _event_from(rows[0]) if rows else None

    def commit(self, change: Change) -> None:
        with self._tx() as db:
            if change.event:  # written first: a seen event is found by its key, without a read on every decision
                e = change.event
                try:
                    db.execute(
                        "INSERT INTO events (event_key, effect, case_id, at) VALUES (?, ?, ?, ?)",
                        (e.event_key, e.effect.value, e.case_id, codec.ts(e.at)),
                    )
                except sqlite3.IntegrityError:
                    seen = db.execute("SELECT * FROM events WHERE event_key = ?", (e.event_key,)).fetchone()
                    raise DuplicateEvent(_event_from(seen)) from None
            ownership = json.dumps(codec.ownership_doc(change.ownership)) if change.ownership else None
            self._next_version(db, change.key, change.expected_version, ownership)
            for case_id, state in change.expect:
                stored = db.execute("SELECT state FROM cases WHERE id = ?", (case_id,)).fetchone()
                if stored is None or stored["state"] != state.value:
                    raise ConcurrencyConflict(f"case {case_id} is no longer {state.value}")
            if change.claim:
                c = change.claim
                db.execute(
                    "INSERT INTO claims (key, org, kind, origin, event_key, effect, case_id, at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        c.key.address,
                        c.org,
                        c.kind.value,
                        c.origin.value,
                        c.event_key,
                        c.effect.value,
                        c.case_id,
                        codec.ts(c.at),
                    ),
                )
            for case in change.cases:
                self._write_case(db, case)
            if change.audit:
                self._append_all(db, change.audit)

    @staticmethod
    def _next_version(db: sqlite3.Connection, key: MailboxKey, expected: int, ownership: str | None) -> None:
        """Move the mailbox from version ``expected`` to the next, in one statement that is also the check
        (``ownership`` None keeps the recorded one); ``ConcurrencyConflict`` when another commit got there first."""
        if expected == 0:
            moved = db.execute(
                "INSERT INTO mailboxes (key, version, ownership) VALUES (?, 1, ?) ON CONFLICT(key) DO NOTHING",
                (key.address, ownership),
            )
        else:
            moved = db.execute(
                "UPDATE mailboxes SET version = version + 1, ownership = coalesce(?, ownership) "
                "WHERE key = ? AND version = ?",
                (ownership, key.address, expected),
            )
        if moved.rowcount != 1:
            row = db.execute("SELECT version FROM mailboxes WHERE key = ?", (key.address,)).fetchone()
            current = int(row["version"]) if row else 0
            raise ConcurrencyConflict(f"mailbox version is {current}, the decision was made at {expected}")

    def _write_case(self, db: sqlite3.Connection, case: Case) -> None:
        db.execute(
            "INSERT INTO cases (id, key, owner, claimant, state, doc) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET state = excluded.state, owner = excluded.owner, doc = excluded.doc",
            (case.id, case.key.address, case.owner, case.claimant, case.state.value, json.dumps(codec.case_doc(case))),
        )
        for action in case.actions:
            db.execute(
                "INSERT INTO actions (id, case_id, status, next_at, doc) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(id) DO NOTHING",
                (action.id, action.case_id, action.status.value, codec.ts(action.next_attempt_at), self._text(action)),
            )

    # --- reads -------------------------------------------------------------------

    def case(self, case_id: str) -> Case | None:
        rows = self._read("SELECT doc FROM cases WHERE id = ?", (case_id,))
        return self._case_from(rows[0]["doc"]) if rows else None

    def _case_from(self, doc: str) -> Case:
        data = json.loads(doc)
        actions = self._read("SELECT doc FROM actions WHERE case_id = ? ORDER BY seq", (data["id"],))
        return codec.case_from(data, tuple(self._actions.read(a["doc"]) for a in actions))

    @staticmethod
    def _where(query: CaseQuery) -> tuple[str, list[object]]:
        """The SQL form of ``CaseQuery.matches`` (without the cursor)."""
        where: list[str] = ["1 = 1"]
        args: list[object] = []
        if query.state:
            where.append("state = ?")
            args.append(query.state.value)
        if query.open:
            where.append(f"state IN ({', '.join('?' * len(OPEN_STATES))})")
            args += sorted(state.value for state in OPEN_STATES)
        if query.org:
            where.append("(claimant = ? OR owner = ?)")
            args += [query.org, query.org]
        if query.mailbox:
            where.append("key = ?")
            args.append(query.mailbox.address)
        if query.search:
            where.append("instr(key, ?) > 0")
            args.append(query.search.casefold())
        return " AND ".join(where), args

    def cases(self, query: CaseQuery) -> Page:
        where, args = self._where(query)
        if query.cursor:
            where += " AND seq < ?"
            args.append(self.cursors.seq(query.cursor))
        limit = max(1, min(query.limit, 500))
        rows = self._read(
            f"SELECT seq, doc FROM cases WHERE {where} ORDER BY seq DESC LIMIT ?",  # noqa: S608
            (*args, limit + 1),
        )
        items = tuple(self._case_from(r["doc"]) for r in rows[:limit])
        nxt = self.cursors.issue("seq", int(rows[limit - 1]["seq"])) if len(rows) > limit else None
        return Page(items, nxt)

    def count_cases(self, query: CaseQuery) -> int:
        where, args = self._where(query)
        rows = self._read(f"SELECT COUNT(*) AS n FROM cases WHERE {where}", args)  # noqa: S608
        return int(rows[0]["n"])

    def overview(self) -> Overview:
        """Counts per state and the open cases, read in one snapshot so they agree."""
        where, args = self._where(CaseQuery(open=True))
        with self._snapshot() as db:
            counts = {
                r["state"]: int(r["n"]) for r in db.execute("SELECT state, COUNT(*) AS n FROM cases GROUP BY state")
            }
            docs = db.execute(f"SELECT doc FROM cases WHERE {where}", args).fetchall()  # noqa: S608
        return Overview.of(counts, [codec.case_from(json.loads(r["doc"])) for r in docs])

    def claims(self, key: MailboxKey, limit: int = 50) -> Sequence[ClaimRecord]:
        rows = self._read(
            "SELECT * FROM claims WHERE key = ? ORDER BY at DESC, event_key DESC LIMIT ?", (key.address, limit)
        )
        return [
            ClaimRecord(
                MailboxKey(r["key"]),
                r["org"],
                ClaimKind(r["kind"]),
                Origin(r["origin"]),
                r["event_key"],
                Effect(r["effect"]),
                r["case_id"],
                codec.must_ts(r["at"]),
            )
            for r in rows
        ]

    # --- the outbox ------------------------------------------------------------------

    def pending_actions(self, limit: int = 100, *, now: datetime | None = None) -> Sequence[Action]:
        moment = codec.ts(now or utcnow())
        rows = self._read(
            "SELECT doc FROM actions WHERE status = 'pending' AND (next_at IS NULL OR next_at <= ?) "
            "ORDER BY seq LIMIT ?",
            (moment, limit),
        )
        return [self._actions.read(r["doc"]) for r in rows]

    def lease_actions(self, limit: int, *, now: datetime, until: datetime) -> Sequence[Action]:
        with self._tx() as db:
            rows = db.execute(
                "SELECT doc FROM actions WHERE status = 'pending' AND (next_at IS NULL OR next_at <= ?) "
                "ORDER BY seq LIMIT ?",
                (codec.ts(now), limit),
            ).fetchall()
            taken = [self._actions.read(r["doc"]) for r in rows]
            self._save_actions(db, [replace(action, next_attempt_at=until) for action in taken])
            return taken

    def _write_steps(self, steps: Sequence[tuple[str, ChangeRule]]) -> list[Action]:
        """One round's actions, their cases and audit entries in one transaction (``record_attempts``).

        The actions and their cases are read in a few queries up front, each step sees the ones before it
        (two actions of one case settle it once), and each moved case is written once, as it ends.
        """
        with self._tx() as db:
            now = utcnow()
            actions, cases = self._load_for_steps(db, list(dict.fromkeys(action_id for action_id, _ in steps)))
            moved_cases: set[str] = set()
            done: list[Action] = []
            events: list[AuditEvent] = []
            for action_id, step in steps:
                old = actions[action_id]
                case = cases.get(old.case_id)
                planned = step(old, case, now)
                if planned is None:
                    done.append(old)
                    continue
                new, moved, event = planned
                actions[action_id] = new
                if case is not None:
                    if moved is not None and moved.history != case.history:
                        moved_cases.add(case.id)
                    after = moved or case
                    cases[case.id] = replace(after, actions=tuple(new if a.id == new.id else a for a in after.actions))
                if event is not None:
                    events.append(event)
                done.append(new)
            self._append_all(db, events)
            self._save_actions(db, list({a.id: a for a in done}.values()))
            db.executemany(
                "UPDATE cases SET state = ?, owner = ?, doc = ? WHERE id = ?",
                [(c.state.value, c.owner, json.dumps(codec.case_doc(c)), c.id)
                 for c in (cases[case_id] for case_id in moved_cases) if c is not None],
            )  # fmt: skip
            return done

    def _load_for_steps(
        self, db: sqlite3.Connection, action_ids: list[str]
    ) -> tuple[dict[str, Action], dict[str, Case | None]]:
        """The actions by id and their cases (with all their actions) by id; ``NotFound`` for a missing action."""
        case_ids: dict[str, None] = {}
        for chunk in _chunks(action_ids):
            marks = ", ".join("?" * len(chunk))  # placeholders only: every value is bound
            found = db.execute(f"SELECT case_id FROM actions WHERE id IN ({marks})", chunk)  # noqa: S608
            case_ids.update((r["case_id"], None) for r in found)
        actions: dict[str, Action] = {}
        cases: dict[str, Case | None] = dict.fromkeys(case_ids)
        for chunk in _chunks(list(case_ids)):
            marks = ", ".join("?" * len(chunk))
            of_case: dict[str, list[Action]] = {}
            for r in db.execute(f"SELECT doc FROM actions WHERE case_id IN ({marks}) ORDER BY seq", chunk):  # noqa: S608
                action = self._actions.read(r["doc"])
                actions[action.id] = action
                of_case.setdefault(action.case_id, []).append(action)
            for r in db.execute(f"SELECT doc FROM cases WHERE id IN ({marks})", chunk):  # noqa: S608
                data = json.loads(r["doc"])
                cases[data["id"]] = codec.case_from(data, tuple(of_case.get(data["id"], ())))
        missing = [action_id for action_id in action_ids if action_id not in actions]
        if missing:
            raise NotFound(f"no action {missing[0]}", field="action")
        return actions, cases

    def _save_actions(self, db: sqlite3.Connection, actions: Sequence[Action]) -> None:
        """Each action's status, due time and document, in one statement however many there are."""
        db.executemany(
            "UPDATE actions SET status = ?, next_at = ?, doc = ? WHERE id = ?",
            [(a.status.value, codec.ts(a.next_attempt_at), self._text(a), a.id) for a in actions],
        )

    def _text(self, action: Action) -> str:
        """The action's stored document; kept with it, so reading the row back unchanged decodes nothing."""
        text = json.dumps(codec.action_doc(action))
        self._actions.wrote(text, action)
        return text

    # --- audit ------------------------------------------------------------------------

    def append_audit(self, event: AuditEvent) -> AuditEntry:
        with self._tx() as db:
            return self._append(db, event)

    def _append(self, db: sqlite3.Connection, event: AuditEvent) -> AuditEntry:
        return self._append_all(db, [event])[0]

    def _append_all(self, db: sqlite3.Connection, events: Sequence[AuditEvent]) -> list[AuditEntry]:
        """``events`` chained after the head in order, written in one statement (a round's entries at once)."""
        head = self._audit_head(db)
        entries: list[AuditEntry] = []
        for event in events:
            entry = codec.entry_after(head, event)
            entries.append(entry)
            head = (entry.seq, entry.hash)
        db.executemany(
            "INSERT INTO audit (seq, at, kind, subject, actor, data, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (e.seq, codec.ts(e.event.at), e.event.kind, e.event.subject, e.event.actor, codec.dumps(e.event.data),
                 e.prev_hash, e.hash)
                for e in entries
            ],
        )  # fmt: skip
        return entries  # the trigger audit_head keeps meta's head in the same statement

    @staticmethod
    def _audit_head(db: sqlite3.Connection) -> tuple[int, str] | None:
        """The newest entry's sequence and hash, as ``meta`` keeps them beside the log (the row itself is not read)."""
        row = db.execute("SELECT value FROM meta WHERE key = 'audit_head'").fetchone()
        if row is None:  # a ledger whose log predates the kept head
            newest = db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
            return (int(newest["seq"]), str(newest["hash"])) if newest else None
        seq, _, hash_ = str(row["value"]).partition(":")
        return int(seq), hash_

    def audit_entries(self, after: int = 0, limit: int = 1000) -> Sequence[AuditEntry]:
        rows = self._read("SELECT * FROM audit WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit))
        return [_audit_from(r) for r in rows]

    def verify_audit(self) -> AuditReport:
        with self._snapshot() as db:  # entries and head as of one moment, whatever writers do meanwhile
            entries = [_audit_from(r) for r in db.execute("SELECT * FROM audit ORDER BY seq")]
            head = db.execute("SELECT value FROM meta WHERE key = 'audit_head'").fetchall()
        ok, bad, reason = codec.verify_chain(entries)
        if ok:
            expected = head[0]["value"] if head else None
            actual = f"{entries[-1].seq}:{entries[-1].hash}" if entries else None
            if expected != actual:
                ok, bad, reason = False, len(entries) + 1, "the newest entries were removed"
        return AuditReport(ok, len(entries), bad, reason)

    # --- policy versions ------------------------------------------------------------

    def policy(self) -> PolicyVersion | None:
        """The newest version; its text is read only when the version moved (every decision asks)."""
        newest = self._read("SELECT max(version) AS v FROM policies")[0]["v"]
        cached = self._policy
        if newest is None or (cached is not None and cached.version == newest):
            return cached if newest is not None else None
        row = self._read("SELECT * FROM policies WHERE version = ?", (newest,))[0]
        self._policy = PolicyVersion(row["version"], row["text"], row["actor"], codec.must_ts(row["at"]))
        return self._policy

    def save_policy(self, text: str, actor: str) -> PolicyVersion:
        with self._tx() as db:
            row = db.execute("SELECT MAX(version) AS v FROM policies").fetchone()
            version = int(row["v"] or 0) + 1
            saved = PolicyVersion(version, text, actor, utcnow())
            db.execute(
                "INSERT INTO policies (version, text, actor, at) VALUES (?, ?, ?, ?)",
                (version, text, actor, codec.ts(saved.at)),
            )
            self._append(db, AuditEvent("policy.saved", f"policy:{version}", actor, {"version": version}))
            return saved

    # --- exemptions ---------------------------------------------------------------------

    def exemptions(self) -> Book:
        """The set, read again only when its version moved (every competing claim asks for it)."""
        rows = self._read("SELECT value FROM meta WHERE key = 'exemptions_version'")  # one statement: no snapshot
        cached = self._exemptions
        if cached is not None and cached.version == (int(rows[0]["value"]) if rows else 0):
            return cached
        with self._snapshot() as db:  # the version and the set it numbers, read together
            self._exemptions = _book(db)
            return self._exemptions

    def change_exemptions(self, planner: ExemptionPlanner) -> tuple[Book, Plan]:
        """Read the set, plan and write in one ``BEGIN IMMEDIATE`` transaction: writers in any process queue."""
        with self._tx() as db:
            plan = planner(_book(db))
            if plan.empty:
                return _book(db), plan
            for exemption in plan.changed:
                db.execute(
                    "INSERT INTO exemptions (id, created, doc) VALUES (?, ?, ?) "
                    "ON CONFLICT(id) DO UPDATE SET doc = excluded.doc",
                    (exemption.id, codec.ts(exemption.created_at), json.dumps(codec.exemption_doc(exemption))),
                )
            db.execute(
                "INSERT INTO meta (key, value) VALUES ('exemptions_version', '1') "
                "ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1"
            )
            for event in plan.audit:
                self._append(db, event)
            return _book(db), plan

    # --- life cycle -------------------------------------------------------------------

    def ping(self) -> None:
        """Raise ``LedgerError`` when the file cannot be read, or a writer cannot get in within a moment.

        A read alone would pass while another process holds the write lock and every decision waits.
        """
        self._read("SELECT count(*) FROM meta")
        with self._tx(budget=PING_WAIT_S):
            pass

    def close(self) -> None:
        with suppress(sqlite3.Error):  # another connection reading: the next checkpoint folds it in
            self.checkpoint("TRUNCATE")  # what this process wrote is in the file, the log emptied
        with self._checkpointing:  # a checkpoint under way ends first; none starts after this
            self._closed = True
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()

    # --- jobs and the ownership index (sweeps and migrations) ------------------------

    def save_job(self, job: Job) -> Job:
        saved = replace(job, version=job.version + 1)
        with self._tx() as db:
            row = db.execute("SELECT version FROM jobs WHERE id = ?", (job.id,)).fetchone()
            current = int(row["version"]) if row else 0
            if current != job.version:
                raise JobConflict(f"job {job.id} is at version {current}, not {job.version}; read it again")
            db.execute(
                "INSERT INTO jobs (id, kind, version, created, doc) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET version = excluded.version, doc = excluded.doc",
                (job.id, job.kind.value, saved.version, codec.ts(job.created_at), json.dumps(codec.job_doc(saved))),
            )
        return saved

    def job(self, job_id: str) -> Job | None:
        rows = self._read("SELECT doc FROM jobs WHERE id = ?", (job_id,))
        return codec.job_from(json.loads(rows[0]["doc"])) if rows else None

    def jobs(self, kind: JobKind, limit: int = 50) -> Sequence[Job]:
        rows = self._read(
            "SELECT doc FROM jobs WHERE kind = ? ORDER BY created DESC, id LIMIT ?", (kind.value, max(1, limit))
        )
        return [codec.job_from(json.loads(r["doc"])) for r in rows]

    def ownerships(self, after: str = "", limit: int = 1000) -> Sequence[Ownership]:
        rows = self._read(
            "SELECT key, ownership FROM mailboxes WHERE key > ? AND ownership IS NOT NULL ORDER BY key LIMIT ?",
            (after, max(1, limit)),
        )
        return [codec.ownership_from(MailboxKey(r["key"]), json.loads(r["ownership"])) for r in rows]


def _busy(exc: sqlite3.OperationalError) -> bool:
    """SQLite's answer when a lock is held (SQLITE_BUSY, SQLITE_LOCKED)."""
    return "locked" in str(exc) or "busy" in str(exc)


def _statements(script: str) -> Iterator[str]:
    """The complete statements of ``script`` one by one (a trigger's body holds semicolons of its own)."""
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            yield pending.strip()
            pending = ""
    if pending.strip():
        raise LedgerError(f"the ledger's schema ends in an incomplete statement: {pending.strip()[:80]}")


def _book(db: sqlite3.Connection) -> Book:
    row = db.execute("SELECT value FROM meta WHERE key = 'exemptions_version'").fetchone()
    docs = db.execute("SELECT doc FROM exemptions ORDER BY created, id").fetchall()
    return Book(int(row["value"]) if row else 0, tuple(codec.exemption_from(json.loads(r["doc"])) for r in docs))


def _event_from(row: sqlite3.Row) -> EventOutcome:
    return EventOutcome(row["event_key"], Effect(row["effect"]), row["case_id"], codec.must_ts(row["at"]))


def _audit_from(row: sqlite3.Row) -> AuditEntry:
    event = AuditEvent(row["kind"], row["subject"], row["actor"], json.loads(row["data"]), codec.must_ts(row["at"]))
    return AuditEntry(int(row["seq"]), event, row["prev_hash"], row["hash"])


def _decode_action(text: str) -> Action:
    return codec.action_from(json.loads(text))


def _chunks(items: list[str], size: int = 500) -> list[list[str]]:
    """``items`` in pieces small enough for one ``IN (...)`` list."""
    return [items[start : start + size] for start in range(0, len(items), size)]
