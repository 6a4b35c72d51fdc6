"""The ledger on Azure Table Storage (and Cosmos DB for Table, through the same SDK).

``TableLedger`` is one class for callers, composed from one module per concern
(listed at the end of this note).

Table Storage has no transaction across partitions or tables, so the design
follows the port's own words: *the mailbox is the aggregate*. Everything a
decision must write atomically lives in the mailbox's partition and goes in
one entity-group transaction; everything else is a derived index, written
after that transaction from a journal row that the transaction also wrote.

Tables (each name is ``<prefix><name>``; one account can host several
environments with different prefixes) and their keys. ``esc(x)`` keeps
``[A-Za-z0-9@._+=:-]`` and writes any other character as ``!XX`` per UTF-8
byte, so ``/ \\ # ?``, control characters, ``'``, ``|`` and ``~`` never reach a
key; a value whose escaped form is too long (120 characters, 200 for event keys)
becomes ``!!<sha256>``.
``inv(n)`` is ``10**19 - 1 - n`` zero-padded to 19 digits (newest sorts first).

``mailboxes`` -- the aggregate, PartitionKey ``esc(address)``:

=================================== ==========================================
RowKey                              row
=================================== ==========================================
``mailbox``                         root: Version (decisions), Seq (every
                                    transaction), Ownership; ETag-conditional
``event|<esc(event key)>``          idempotency guard, created if absent
``claim|<inv(version)>``            claim record (claims per mailbox, newest
                                    first, is one range query)
``case|<esc(case id)>|``            case document (history trimmed to fit)
``case|<esc(id)>|action|<esc(id)>`` action (case + actions: one range query)
``journal|<seq>``                   derived work still to do (see below)
=================================== ==========================================

PartitionKey ``~journals``, RowKey ``esc(address)`` or ``~policy``: recovery
markers, written after a mailbox's transaction (before its roll-forward) and
before a policy or exemptions change, so any instance finds work in flight; a
journal whose writer died before its marker is found by ``recover``'s scan.

``events`` -- PartitionKey ``esc(event key)``, RowKey ``event``: the processed
event's outcome, for ``event()`` look-ups without knowing the mailbox.

``cases`` -- PartitionKey ``id|<esc(case id)>`` (RowKey ``case``) points a case
id at its mailbox; listing partitions ``all``, ``state|<state>``,
``org|<esc(org)>`` (claimant and owner) and ``mailbox|<esc(address)>`` hold
one row per case, RowKey ``inv(created µs)|inv(version)|esc(id)``: newest
first; the cursor is the last RowKey returned.

``actions`` -- PartitionKey ``id|<esc(action id)>`` (RowKey ``action``) points
an action at its mailbox and case; PartitionKey ``queue``, RowKey
``created µs|esc(case id)|n``, holds one row per pending action with its
NextAt: the executor's outbox.

``audit`` -- PartitionKey ``chain``: RowKey ``head`` (Seq, Hash), entries
``e<seq:016>``, and ``origin|<id>`` markers that make each append idempotent.

``policies`` -- PartitionKey ``policy``, RowKey ``inv(version)``; PartitionKey ``exemptions``: RowKey
``head`` (the set's version), ``x|<esc(id)>`` per exemption (``exemptions.py``) and ``policy`` (the newest
policy version in force), so one query reads both versions (``versions.py``).

Concurrency without a lock. Every write to a mailbox's partition is one
transaction whose first operation updates the root with ``If-Match`` (or
creates it): two instances that read the same root cannot both write, the
loser gets 412 and reads again. ``commit`` raises ``ConcurrencyConflict`` when
the Version moved (the service layer decides again) and retries by itself when
only Seq moved (an action attempt on the same mailbox). The event guard is
created in the same transaction: 409 means the event was processed, and the
stored outcome comes back in ``DuplicateEvent``. New cases and actions are
created (409 if they exist), existing ones updated ``If-Match``. (The guard
lives with its mailbox: an event key names the org's own mailbox row, so it
belongs to one mailbox; the ``events`` look-up catches a key seen on another
mailbox before, but not one committed there at the very same moment.)

Derived records (the ``events`` look-up, case and outbox indexes, audit) are
written from the journal after ``commit`` returns, on the ledger's backlog threads
(``backlog.py``), then the journal row is deleted; the gate's path is the
versions read (policy and exemptions, one query), the mailbox read (root and
journal rows in one query) and the transaction, which is conditioned on the root that read saw (a root that moved,
an event or a case that exists fails it, and the commit reads the partition and
plans again as before). The root names the mailbox's newest event, so a repeat
of it is answered from that read. A read through an index (``case``, ``cases``,
the outbox, the audit log) first waits for this instance's backlog and rolls
forward the journals other instances have in flight (their markers, written
right after the answer), so it sees every decision whose roll-forward began. Each step is idempotent, and index rows
carry the mailbox Seq that wrote them (``Stamp``): an index row is only
overwritten or deleted by a newer journal, so journals may be rolled forward in
any order or twice. A journal older than ``takeover_after`` is someone else's
unfinished work: the next reader or writer of that mailbox, or ``recover`` in
``pending_actions`` (the housekeeping timer's outbox round: the markers, and at
most once per ``scan_every`` (ten minutes) a scan of every partition for old journal rows,
which finds a writer killed between its transaction and its marker), rolls it forward.
Reads that go through an index (``cases``, ``pending_actions``) re-check every
hit against the mailbox partition, so a stale index row costs a read, never a
wrong answer; reads are eventually consistent only for an instance that died
between its transaction and its roll-forward.

The audit chain with several writers: one partition, ordered by the head
entity. An append reads the head (Seq, Hash, ETag), chains its entries from
it, and submits one transaction: update the head ``If-Match``, create the
entries, create the ``origin`` marker. Two instances appending at once: one
transaction wins, the other gets 412, re-reads the head and chains after the
winner (jittered backoff). The marker makes a repeated append (a retry after
a lost response, a journal rolled forward twice) a no-op. ``verify_audit``
reads the head first and checks every entry up to it: an edited entry fails
its hash, a deleted one leaves a gap, a truncated newest one no longer
matches the head.

Limits are checked (``entities.py``) before anything is sent (Azurite does not enforce all
of them): keys (no ``/ \\ # ?`` or control characters, at most 255 bytes --
Cosmos DB's RowKey limit, Table Storage allows 1 KiB), 252 properties, 64 KiB
per string property (long texts are split over ``Name``, ``Name1``, ...),
1 MiB per entity, 100 operations and 2 MB per transaction (Cosmos DB; Table
Storage allows 4 MiB). A case whose history would not fit keeps its first and
newest entries with a note saying how many were trimmed; an action's error
text keeps its first 32,000 characters. Anything else too large raises
``LedgerError`` before the transaction, so nothing is half-written.

Cosmos DB for Table returns query results unsorted: against it, ordered reads
fetch the whole filtered partition and sort it (``TableStore._rows``).

Where each part lives:

================== ============================================================
``keys.py``        ``escape`` (``esc``), ``inv``, the row and sort keys of every table
``entities.py``    the limits above, checked; long texts split and joined
``documents.py``   mailbox-partition rows to records and back; trimmed histories
``account.py``     ``tables:`` URLs and the Entra ID credential
``timeouts.py``    each HTTP try cut to the current deadline
``storage.py``     ``TableStore``: the tables, queries, storage errors, life cycle
``audit.py``       the audit chain
``policies.py``    policy versions (and auditing a saved one)
``exemptions.py``  the exemptions, versioned: one transaction per change, audited right after
``versions.py``    the policy's and the exemptions' versions, read in one query per decision
``journal.py``     journals rolled forward, recovery markers, ``recover``
``partition.py``   the mailbox-partition transaction (snapshot, seal, transact)
``backlog.py``     journals rolled forward on worker threads after the decision returns
``mailbox.py``     the aggregate: ``mailbox``, ``event``, ``commit``
``reads.py``       cases, listings with cursors, counts, claims
``outbox.py``      the action queue, leases, attempts and retries
``jobs.py``        jobs and the ownership index
================== ============================================================
"""

from __future__ import annotations

from shared.ledger.tables.account import Target, default_credential, parse_target
from shared.ledger.tables.documents import fit_case
from shared.ledger.tables.entities import check_entity, get_text, put_text
from shared.ledger.tables.jobs import JobRows
from shared.ledger.tables.keys import escape
from shared.ledger.tables.mailbox import MailboxAggregate
from shared.ledger.tables.outbox import OutboxQueue
from shared.ledger.tables.timeouts import cut_to_deadline

__all__ = [
    "TableLedger",
    "Target",
    "check_entity",
    "cut_to_deadline",
    "default_credential",
    "escape",
    "fit_case",
    "get_text",
    "parse_target",
    "put_text",
]


class TableLedger(MailboxAggregate, OutboxQueue, JobRows):
    """Ledger on Azure Table Storage / Cosmos DB for Table; safe across threads, processes and instances."""
