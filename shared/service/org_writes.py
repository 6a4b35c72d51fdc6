"""Each of the executor's writes reaches an org at most once, even when Dataverse's answer is lost.

A PATCH or ``$batch`` whose answer never came back (a timeout, a connection
reset, a gateway's 5xx) may have been committed. Sending it again writes the
rows twice, and a promote sent twice schedules Test & Enable twice. So these
writes are sent once (the Dataverse client does not repeat them), and after an
ambiguous failure the rows are read back: each one already in its target state
counts as applied, and only the others are sent again.

What "already in the target state" means:

* **demote**: ACT method None (2) and the check box off, and with the policy's email
  fence incoming and outgoing email None (0) too: every column it writes holds its value.
* **promote**: the values do not. Test & Enable may already have run and
  cleared ``testemailconfigurationscheduled`` (and, in some versions, the check
  box), and a row may have held method 1 and the check box before. So the row
  is read just before the first send -- its *baseline*: ETag (row version),
  number of tests, last test time, scheduled flag -- and the promote landed
  iff the row is on server-side sync (1) and since the baseline Test & Enable
  was scheduled (the flag is on and the row version moved) or has run (the
  test count or the last test time moved). A Test & Enable someone else ran
  since the baseline counts too: one is what the decision wants, a second one
  is the duplicate this rule exists to avoid.
* A promote is sent with ``If-Match: <baseline ETag>``, so of two copies (a
  lost one that still arrives late, and the one sent after the read-back) at
  most one can land; the other gets 412, which is answered by reading back.
  Where the table does not enforce ETags, the read-back rule alone holds.
* When even the read-back fails, the action waits with its baseline written
  into its recorded error (``answer lost ... [row before: ...]``), and its next
  attempt, by whichever worker, reads the row back against that baseline
  before it sends anything.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shared.dataverse.port import BatchOperation, DataverseError, OrgClient, PreconditionFailed, normalize_id
from shared.dataverse.schema import (
    ACT_METHOD,
    INCOMING_EMAIL,
    MAILBOX_ID,
    MAILBOXES,
    OUTGOING_EMAIL,
    PRIMARY_FLAG,
    TEST_COUNT,
    TEST_ENABLE,
    TESTED_ON,
    ActMethod,
    columns_set,
)
from shared.domain.model import ACT_ONLY, Action, ActionKind, Fence

COLUMNS = (MAILBOX_ID, ACT_METHOD, PRIMARY_FLAG, TEST_ENABLE, TEST_COUNT, TESTED_ON, INCOMING_EMAIL, OUTGOING_EMAIL)
LOST = "answer lost"
READ_CHUNK = 50  # rows read back per query (the URL stays far below Dataverse's limit)
READS_IN_FLIGHT = 8  # queries out at once (Dataverse allows 52 concurrent requests per user)
AMBIGUOUS_STATUS = frozenset({500, 502, 503, 504})
_UNREAD: Any = object()  # a row that could not be read (None is a row that is gone)
_NOTE = re.compile(r"\[row before: etag=(\S+) tests=(\S+) tested=(\S+) scheduled=(\S+)\]")


@dataclass(frozen=True)
class Baseline:
    """A promote's row just before the first send (see the module's rule)."""

    etag: str | None
    tests: int | None
    tested_on: str | None
    scheduled: bool | None

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> Baseline:
        tests = row.get(TEST_COUNT)
        return cls(
            _str(row.get("@odata.etag")),
            int(tests) if isinstance(tests, int) else None,
            _str(row.get(TESTED_ON)),
            row.get(TEST_ENABLE) if isinstance(row.get(TEST_ENABLE), bool)
            else None,
        )  # fmt: skip

    def note(self) -> str:
        def show(value: object) -> str:
            return "-" if value is None else str(value).lower() if isinstance(value, bool) else str(value)

        return (
            f"[row before: etag={show(self.etag)} tests={show(self.tests)} "
            f"tested={show(self.tested_on)} scheduled={show(self.scheduled)}]"
        )

    @classmethod
    def from_note(cls, text: str | None) -> Baseline | None:
        found = _NOTE.search(text or "")
        if found is None:
            return None
        etag, tests, tested, scheduled = (None if v == "-" else v for v in found.groups())
        return cls(etag, int(tests) if tests and tests.isdigit() else None, tested,
                   None if scheduled is None else scheduled == "true")  # fmt: skip


def landed(
    kind: ActionKind, row: Mapping[str, Any], baseline: Baseline | None, fence: tuple[Fence, ...] = ACT_ONLY
) -> bool:
    """Whether ``row`` already shows the write ``kind`` (the module's rule); a promote needs its baseline,
    a demote says what it ``fence``s."""
    if kind is ActionKind.DEMOTE:
        return all(row.get(column) == value for column, value in columns_set(kind, fence).items())
    if kind is not ActionKind.PROMOTE or baseline is None or row.get(ACT_METHOD) != ActMethod.SERVER_SIDE_SYNC:
        return False
    now = Baseline.of(row)
    scheduled = now.scheduled is True and now.etag != baseline.etag
    tested = now.tests != baseline.tests or now.tested_on != baseline.tested_on
    return scheduled or tested


def ambiguous(exc: BaseException) -> bool:
    """Whether a failed write may have reached Dataverse and been committed all the same."""
    if isinstance(exc, DataverseError):
        return exc.code == "transport" or exc.status in AMBIGUOUS_STATUS
    return isinstance(exc, (TimeoutError, OSError))


def lost_before(action: Action) -> bool:
    """The action's last attempt ended without knowing whether its write landed."""
    return LOST in (action.last_error or "")


# --- outcomes --------------------------------------------------------------------------


@dataclass(frozen=True)
class Applied:
    """The org holds the write (now, or from an earlier attempt whose answer was lost)."""


@dataclass(frozen=True)
class Refused:
    """The write did not land; ``error`` says why (the executor defers or fails the action by it)."""

    error: DataverseError


@dataclass(frozen=True)
class Unknown:
    """Whether it landed cannot be told now; ``error`` carries the baseline for the next attempt."""

    error: DataverseError


Outcome = Applied | Refused | Unknown


@dataclass(frozen=True)
class Write:
    action: Action
    mailbox_id: str

    @property
    def values(self) -> dict[str, Any]:
        """The columns it sets (a demote: every lever of its fence)."""
        return columns_set(self.action.kind, self.action.fence)


# --- delivering --------------------------------------------------------------------------


class OrgWrites:
    """The executor's writes to one org, carried out at most once each."""

    def __init__(self, client: OrgClient) -> None:
        self.client = client

    async def deliver(self, writes: Sequence[Write]) -> list[tuple[Action, Outcome]]:
        done: dict[str, Outcome] = {}
        baselines: dict[str, Baseline] = {}
        to_read = [w for w in writes if lost_before(w.action) or w.action.kind is ActionKind.PROMOTE]
        if to_read:
            rows, failure = await self._read(to_read)
            for w in to_read:
                row = rows.get(w.mailbox_id, _UNREAD)
                if row is None:
                    done[w.action.id] = Refused(DataverseError("the mailbox row is gone", status=404))
                elif row is _UNREAD:
                    done[w.action.id] = (
                        _unknown(f"{LOST} earlier; reading it back: {failure}", Baseline.from_note(w.action.last_error))
                        if lost_before(w.action)
                        else Refused(failure)
                    )
                elif lost_before(w.action) and landed(
                    w.action.kind, row, Baseline.from_note(w.action.last_error), w.action.fence
                ):
                    done[w.action.id] = Applied()
                else:
                    baselines[w.mailbox_id] = Baseline.of(row)
        sending = [w for w in writes if w.action.id not in done]
        if sending:
            done.update(await self._send(sending, baselines))
        return [(w.action, done[w.action.id]) for w in writes]

    async def _send(self, writes: Sequence[Write], baselines: Mapping[str, Baseline]) -> dict[str, Outcome]:
        def etag(w: Write) -> str | None:
            base = baselines.get(w.mailbox_id)
            return base.etag if base and w.action.kind is ActionKind.PROMOTE else None

        outcomes: dict[str, Outcome] = {}
        check: list[tuple[Write, DataverseError]] = []  # sent, and it cannot be told whether it landed
        try:
            if len(writes) == 1:
                w = writes[0]
                await self.client.patch(
                    MAILBOXES, w.mailbox_id, columns_set(w.action.kind, w.action.fence), etag=etag(w), at_most_once=True
                )
                outcomes[w.action.id] = Applied()
            else:
                ops = [BatchOperation("PATCH", f"{MAILBOXES}({w.mailbox_id})", w.values, etag(w)) for w in writes]
                results = await self.client.batch(ops, atomic=False, continue_on_error=True)
                for w, result in zip(writes, results, strict=True):
                    error = result.error or DataverseError("not processed", status=result.status)
                    if result.ok:
                        outcomes[w.action.id] = Applied()
                    elif isinstance(error, PreconditionFailed) or ambiguous(error):
                        check.append((w, error))
                    else:
                        outcomes[w.action.id] = Refused(error)
        except ValueError as exc:  # the client refused the request itself (a malformed id)
            return {w.action.id: Refused(DataverseError(str(exc), status=400)) for w in writes}
        except (DataverseError, TimeoutError, OSError) as exc:
            error = exc if isinstance(exc, DataverseError) else DataverseError(f"{type(exc).__name__}: {exc}")
            if not (isinstance(error, PreconditionFailed) or ambiguous(error)):
                return {w.action.id: Refused(error) for w in writes}
            check = [(w, error) for w in writes]
        if check:
            outcomes.update(await self._read_back(check, baselines))
        return outcomes

    async def _read_back(
        self, sent: Sequence[tuple[Write, DataverseError]], baselines: Mapping[str, Baseline]
    ) -> dict[str, Outcome]:
        """After a lost answer or a 412: which writes landed; the rest are sent again later."""
        rows, failure = await self._read([w for w, _ in sent])
        outcomes: dict[str, Outcome] = {}
        for w, error in sent:
            row = rows.get(w.mailbox_id, _UNREAD)
            base = baselines.get(w.mailbox_id)
            if row is _UNREAD:
                outcomes[w.action.id] = _unknown(f"{LOST} ({error}; reading it back: {failure})", base)
            elif row is not None and landed(w.action.kind, row, base, w.action.fence):
                outcomes[w.action.id] = Applied()
            else:
                outcomes[w.action.id] = Refused(error)
        return outcomes

    async def _read(self, writes: Sequence[Write]) -> tuple[dict[str, Any], DataverseError]:
        """The rows by mailbox id (None when a row is gone); rows that could not be read are left out.

        One query per ``READ_CHUNK`` rows (``mailboxid eq .. or ..``): a read costs the org's service
        protection budget one request, where a ``$batch`` of GETs would cost one per row. The queries
        go out together (at most ``READS_IN_FLIGHT`` at once): one after the other, their round trips
        were most of a large round's time.
        """
        ids = list(dict.fromkeys(w.mailbox_id for w in writes))
        chunks = [ids[start : start + READ_CHUNK] for start in range(0, len(ids), READ_CHUNK)]
        gate = asyncio.Semaphore(READS_IN_FLIGHT)

        async def read(chunk: list[str]) -> dict[str, Any] | DataverseError:
            async with gate:
                return await self._read_chunk(chunk)

        rows: dict[str, Any] = {}
        failure = DataverseError("the row could not be read back", code="transport")
        for found in await asyncio.gather(*(read(chunk) for chunk in chunks)):
            if isinstance(found, DataverseError):
                failure = found
            else:
                rows.update(found)
        return rows, failure

    async def _read_chunk(self, chunk: list[str]) -> dict[str, Any] | DataverseError:
        """One query's rows by mailbox id, or why they could not be read."""
        try:
            wanted = {normalize_id(mid): mid for mid in chunk}
            found: dict[str, Any] = dict.fromkeys(chunk)
            query = " or ".join(f"{MAILBOX_ID} eq {guid}" for guid in wanted)
            async for page in self.client.query(MAILBOXES, select=COLUMNS, filter=query):
                for row in page:
                    mid = wanted.get(normalize_id(str(row.get(MAILBOX_ID, ""))))
                    if mid is not None:
                        found[mid] = row
        except ValueError as exc:
            return DataverseError(str(exc), status=400)
        except (DataverseError, TimeoutError, OSError) as exc:
            return exc if isinstance(exc, DataverseError) else DataverseError(f"{type(exc).__name__}: {exc}")
        return found


def _unknown(what: str, baseline: Baseline | None) -> Unknown:
    """Wait and look again: the error names the loss and keeps the baseline the next attempt needs."""
    note = f" {baseline.note()}" if baseline else ""
    return Unknown(DataverseError(f"{what}; not yet known whether it reached the org{note}", code="lost"))


def _str(value: object) -> str | None:
    return None if value is None else str(value)
