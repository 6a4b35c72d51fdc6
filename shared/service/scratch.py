"""The sweep's scratch index: a throw-away SQLite file, so memory stays flat however many mailboxes there are.

Rows are added a page at a time and dropped from memory; grouping by ``MailboxKey`` and
comparing with the ledger's owners are SQL over the file, and findings stream out of it.
"""

from __future__ import annotations

import itertools
import sqlite3
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from shared.dataverse.schema import ACT_STATUS, ADDRESS, MAILBOX_ID, TEST_ENABLE, SyncStatus
from shared.domain import findings
from shared.domain.findings import Finding, Row, classify
from shared.domain.model import MailboxKey
from shared.ledger.port import JobLedger

SCRATCH_CACHE_KIB = 8 * 1024
FAILURE = SyncStatus.FAILURE  # ``actstatus`` of a row whose last test failed
ROWS_PER_STATEMENT = 100  # rows one INSERT carries (300-400 parameters; SQLite allows 32,766)


class ScratchIndex:
    """A throw-away SQLite file holding one row per (org, mailbox) seen, for grouping by key."""

    def __init__(self, orgs: Sequence[str], directory: str | None = None) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="orgguard-sweep-", dir=directory)
        self.db = sqlite3.connect(Path(self._dir.name) / "sweep.db", isolation_level=None, check_same_thread=False)
        self.orgs = list(orgs)
        self._org_index = {name: i for i, name in enumerate(self.orgs)}
        for pragma in ("journal_mode=OFF", "synchronous=OFF", f"cache_size=-{SCRATCH_CACHE_KIB}", "temp_store=FILE"):
            self.db.execute(f"PRAGMA {pragma}")
        self.db.executescript(
            """
            CREATE TABLE rows (key TEXT NOT NULL, org INTEGER NOT NULL, mailbox_id TEXT NOT NULL,
                               failing INTEGER NOT NULL);
            CREATE TABLE alerts (org INTEGER NOT NULL, mailbox_id TEXT NOT NULL);
            CREATE TABLE owners (key TEXT PRIMARY KEY, owner TEXT NOT NULL, org INTEGER);
            CREATE TABLE multi (key TEXT PRIMARY KEY) WITHOUT ROWID;  -- filled by index()
            CREATE INDEX failing_rows ON rows (org, mailbox_id) WHERE failing = 1;
            """
        )

    def close(self) -> None:
        self.db.close()
        self._dir.cleanup()

    def add_rows(self, org: str, page: Sequence[dict[str, Any]]) -> int:
        """Keep what the sweep needs of one page, all of it or nothing; rows without a valid address are skipped.

        The number of rows kept comes back. The rows' values go to SQLite as one flat list, a column
        at a time (no tuple per row), and as ``int``: SQLite's driver binds a ``bool`` several times
        slower than an ``int``.
        """
        keys = MailboxKey.addresses([row.get(ADDRESS) for row in page])  # the page's addresses in one pass
        rows = page
        if None in keys:
            rows = [row for key, row in zip(keys, page, strict=True) if key is not None]
            keys = [key for key in keys if key is not None]
        values: list[object] = [self._org_index[org]] * (4 * len(rows))  # key, org, mailbox_id, failing; a row
        values[0::4] = keys
        values[2::4] = [str(row[MAILBOX_ID]).lower() for row in rows]
        # a row whose status is not Failure is not failing (``findings.failing``): most rows, no call each
        values[3::4] = [1 if row.get(ACT_STATUS) == FAILURE and _failing(row) else 0 for row in rows]
        return self._insert("INSERT INTO rows", 4, values)

    def failing(self, org: str) -> list[str]:
        cur = self.db.execute("SELECT mailbox_id FROM rows WHERE org = ? AND failing = 1", (self._org_index[org],))
        return [r[0] for r in cur]

    def add_alerts(self, org: str, mailbox_ids: Sequence[str]) -> None:
        """The failing rows (``failing``) whose alert says "configured with another"; a row that syncs fine
        has no alert to act on, so only failing rows' alerts count."""
        index = self._org_index[org]
        self._insert("INSERT INTO alerts", 2, _flat([(index, m.lower()) for m in mailbox_ids]))

    def add_owners(self, owners: Sequence[tuple[str, str]]) -> None:
        self._insert(
            "INSERT OR REPLACE INTO owners",
            3,
            _flat([(key, owner, self._org_index.get(owner)) for key, owner in owners]),
        )

    def _insert(self, into: str, width: int, values: list[object]) -> int:
        """Rows of ``width`` values (``values``, flat) in one transaction, or none (how many went in comes back): a
        transaction per row cost several times more than the rows themselves. ``into``: the statement up to its
        ``VALUES``.

        ``ROWS_PER_STATEMENT`` rows go in each statement run (``VALUES (...), (...), ...``): running
        a statement, not binding its values, was most of what a row cost, so this halves it.
        A page that fails half-way leaves nothing behind (the rollback), so the index only ever
        holds whole pages; the sweep that hit the failure ends, and the next one starts afresh.
        """
        step = ROWS_PER_STATEMENT * width
        whole = len(values) - len(values) % step
        self.db.execute("BEGIN")
        try:
            if whole:
                chunks = (values[i : i + step] for i in range(0, whole, step))
                self.db.executemany(_values(into, width, ROWS_PER_STATEMENT), chunks)
            if whole < len(values):
                self.db.execute(_values(into, width, (len(values) - whole) // width), values[whole:])
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")
        return len(values) // width

    def index(self) -> None:
        """Index the rows by key once they are all in (cheaper than keeping an index up to date row by row), and
        note the keys syncing in more than one org (``multi``) in the same go: ``totals`` and ``findings`` both
        ask, and grouping every row by key twice cost more than the rest of both.

        Rows are found by id only where they fail (the alerts): the partial index ``failing_rows``, a few
        percent of the rows, kept as they come, serves that; an index of every row by id cost more than
        everything the sweep asks of it.
        """
        self.db.executescript(
            """
            CREATE INDEX rows_by_key ON rows (key, org);
            CREATE INDEX alerts_by_id ON alerts (org, mailbox_id);
            INSERT INTO multi SELECT key FROM rows GROUP BY key HAVING COUNT(DISTINCT org) > 1;
            """
        )

    def totals(self) -> tuple[int, int]:
        """(distinct keys, keys syncing in one org that the ledger does not know), once ``index`` ran: the keys in
        one org are those not in ``multi``, and the ledger knows those of them it has an owner for."""
        keys, multi, owned = self.db.execute(
            """
            SELECT (SELECT COUNT(DISTINCT key) FROM rows), (SELECT COUNT(*) FROM multi),
                   (SELECT COUNT(*) FROM owners o
                    WHERE EXISTS (SELECT 1 FROM rows r WHERE r.key = o.key)
                      AND NOT EXISTS (SELECT 1 FROM multi m WHERE m.key = o.key))
            """
        ).fetchone()
        return int(keys), int(keys) - int(multi) - int(owned)

    def findings(self, batch: int = 500) -> Iterator[Finding]:
        """Every key with something to settle, in key order, streamed.

        The ``r.failing = 1`` conditions never leave a row out (every alert is a failing row's: only their
        alerts are read), and are not dead for that: the one in the join lets SQLite find the alerted rows through
        the partial index ``failing_rows`` rather than scan every row, and the one before ``EXISTS`` spares the
        alerts' index a look-up for each row that syncs fine (nearly all of them).
        """
        cursor = self.db.execute(
            """
            WITH flagged AS (
                SELECT key FROM multi
                UNION SELECT r.key FROM alerts a JOIN rows r
                      ON r.org = a.org AND r.mailbox_id = a.mailbox_id AND r.failing = 1
                UNION SELECT o.key FROM owners o JOIN rows r ON r.key = o.key
                      WHERE o.org IS NULL OR NOT EXISTS (SELECT 1 FROM rows s WHERE s.key = o.key AND s.org = o.org)
            )
            SELECT f.key, r.org, r.mailbox_id, r.failing,
                   r.failing = 1
                   AND EXISTS (SELECT 1 FROM alerts a WHERE a.org = r.org AND a.mailbox_id = r.mailbox_id),
                   o.owner, o.org
            FROM flagged f JOIN rows r ON r.key = f.key LEFT JOIN owners o ON o.key = f.key
            ORDER BY f.key, r.org, r.mailbox_id
            """
        )
        current: str | None = None
        rows: list[Row] = []
        owner: tuple[str | None, int | None] = (None, None)
        while chunk := cursor.fetchmany(batch):
            for key, org, mailbox_id, failing, alert, owner_name, owner_index in chunk:
                if key != current:
                    if current is not None:
                        yield classify(current, rows, owner)
                    current, rows, owner = key, [], (owner_name, owner_index)
                rows.append(Row(self.orgs[org], mailbox_id, bool(failing), bool(alert)))
        if current is not None:
            yield classify(current, rows, owner)


def copy_owners(ledger: JobLedger, scratch: ScratchIndex, page: int = 1000) -> None:
    after = ""
    while batch := ledger.ownerships(after, page):
        scratch.add_owners([(o.key.address, o.owner) for o in batch])
        after = batch[-1].key.address


def _values(into: str, width: int, rows: int) -> str:
    """``into`` with ``VALUES`` for ``rows`` rows of ``width`` parameters each."""
    one = f"({', '.join('?' * width)})"
    return f"{into} VALUES {', '.join([one] * rows)}"


def _flat(rows: Sequence[tuple[object, ...]]) -> list[object]:
    return list(itertools.chain.from_iterable(rows))


def _failing(row: dict[str, Any]) -> bool:
    return findings.failing(row.get(ACT_STATUS) == SyncStatus.FAILURE, row.get(TEST_ENABLE) is True)
