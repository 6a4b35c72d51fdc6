"""The outbox worker's notify path: resolve a notice's recipients, write the letter, send it through Graph.

A notify action is ``applied`` only after Graph answered 202 to ``sendMail`` for
every recipient it names. Otherwise:

* a clean failure (no connection, 429, 5xx, a recipient group Graph could not
  list just now) defers it with backoff, ``Retry-After`` honoured, and a later
  attempt sends it again: nothing had gone out, so nothing goes out twice;
* a refusal (400, 403, 404: the sender mailbox or a permission is missing) or
  too many attempts fail it with the error, visible in its case and retryable;
* a lost answer (the request was sent, the answer never came) fails it at once
  and is never resent by itself: the message may have gone out. The error
  names the message's ``Message-ID`` (``<action id>.<part>@<sender domain>``,
  chosen here, the same on every attempt), so an operator can look it up in
  the sender's Sent Items or the message trace before ``orgguard actions retry``.

A message to more than 500 recipients (Exchange Online's default limit per
message) goes out in parts; each part that Graph accepted is remembered on the
action (as short hashes of its recipients), so a retry sends only the rest.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from shared.domain import backoff, letters
from shared.domain.model import Action, ActionStatus, DomainError, Notice, NoticeKind, Org, utcnow
from shared.domain.notices import ADMIN_PREFIX
from shared.domain.orgs import OrgRegistry
from shared.domain.policy import GROUP_PREFIX, Policy
from shared.graph.port import GraphError, MailGraph, unique
from shared.ledger.port import Ledger
from shared.service.execution import ExecutionReport

if TYPE_CHECKING:
    from shared.dataverse.port import OrgClient

log = logging.getLogger("orgguard.delivery")

MAX_RECIPIENTS = 500  # per message: Exchange Online's default recipient limit


class SendFailed(Exception):
    """A letter did not go out; ``again`` says whether a later attempt may send it without sending it twice."""

    def __init__(self, reason: str, *, again: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.again = again


class _PartFailed(Exception):
    def __init__(self, error: GraphError, message_id: str, done: set[str]) -> None:
        super().__init__(str(error))
        self.error, self.message_id, self.done = error, message_id, done


class _Defer(Exception):
    """Resolving recipients failed in a way a later attempt may not (Graph or an org unavailable)."""

    def __init__(self, error: str, retry_after: float | None = None) -> None:
        super().__init__(error)
        self.retry_after = retry_after


@dataclass
class Delivery:
    ledger: Ledger
    orgs: OrgRegistry
    client_for: Callable[[Org], OrgClient]
    connect: Callable[[], MailGraph]
    sender: str
    policy: Callable[[], Policy]
    public_url: str | None = None
    clock: Callable[[], datetime] = utcnow
    max_attempts: int = 8
    base_delay: float = 2.0
    max_delay: float = 300.0
    _graph: MailGraph | None = field(default=None, repr=False)

    @property
    def graph(self) -> MailGraph:
        if self._graph is None:
            self._graph = self.connect()
        return self._graph

    async def aclose(self) -> None:
        if self._graph is not None:
            await self._graph.aclose()
            self._graph = None

    async def deliver(self, actions: Sequence[Action], report: ExecutionReport) -> None:
        for action in actions:
            await self._one(action, report)

    async def _one(self, action: Action, report: ExecutionReport) -> None:
        notice = action.notice
        case = await asyncio.to_thread(self.ledger.case, action.case_id)
        if case is None or notice is None:
            await self._end(
                action, ActionStatus.FAILED, "its case is gone" if case is None else "it has no notice", report
            )
            return
        if notice.kind is NoticeKind.CARRIED_OUT and any(
            a.writes and a.status is ActionStatus.PENDING for a in case.actions
        ):
            report.deferred += 1  # told once the writes are done: its lease runs out and it comes back
            return
        try:
            addresses, problems = await self._resolve(notice.to)
        except _Defer as exc:
            await self._defer(action, str(exc), exc.retry_after, report)
            return
        done = set(notice.sent)
        if not addresses:
            await self._end(action, ActionStatus.FAILED, f"nobody to send it to: {'; '.join(problems)}", report)
            return
        letter = letters.write(notice.kind, case, self.policy(), public_url=self.public_url, now=self.clock())
        try:
            done = await self._send_parts(letter, addresses, done, key=action.id)
        except _PartFailed as failed:
            progress = replace(notice, sent=tuple(sorted(failed.done)))
            await self._failed_send(action, progress, failed.error, failed.message_id, report)
            return
        note = f"sent, but not to: {'; '.join(problems)}" if problems else None
        await self._end(action, ActionStatus.APPLIED, note, report, replace(notice, sent=tuple(sorted(done))))

    async def send(self, letter: letters.Letter, to: Sequence[str], *, message_key: str) -> int:
        """Send ``letter`` to recipients as the policy names them (the operations digest); how many it reached.

        ``SendFailed`` says why not, and whether trying again later is safe (``again``).
        """
        try:
            addresses, problems = await self._resolve(to)
        except _Defer as exc:
            raise SendFailed(str(exc), again=True) from None
        if not addresses:
            raise SendFailed(f"nobody to send it to: {'; '.join(problems)}", again=False)
        try:
            await self._send_parts(letter, addresses, set(), key=message_key)
        except _PartFailed as failed:
            error = failed.error
            raise SendFailed(f"sendMail: {error}{_hint(error)}", again=error.transient and not error.lost) from None
        return len(addresses)

    async def _send_parts(self, letter: letters.Letter, addresses: list[str], done: set[str], *, key: str) -> set[str]:
        """Send to every address not in ``done`` (marks), in parts; the marks of all reached, or ``_PartFailed``."""
        waiting = [a for a in addresses if _mark(a) not in done]
        done = set(done)
        for part, chunk in _parts(waiting, len(done)):
            to, bcc = (chunk, []) if len(addresses) == 1 else ([self.sender], chunk)
            message_id = f"<{key}.{part}@{self.sender.rpartition('@')[2]}>"
            body = letters.mime(letter, sender=self.sender, to=to, bcc=bcc, message_id=message_id, now=self.clock())
            try:
                await self.graph.send_mime(self.sender, body)
            except GraphError as exc:
                raise _PartFailed(exc, message_id, done) from None
            done |= {_mark(a) for a in chunk}
        return done

    # --- recipients ----------------------------------------------------------------------

    async def _resolve(self, to: Sequence[str]) -> tuple[list[str], list[str]]:
        """Every address ``to`` reaches, and what could not be resolved (and will not be as it stands)."""
        found: list[str] = []
        problems: list[str] = []
        for recipient in to:
            if recipient.startswith(GROUP_PREFIX):
                found += await self._group(recipient[len(GROUP_PREFIX) :], problems)
            elif recipient.startswith(ADMIN_PREFIX):
                address = await self._admin(recipient[len(ADMIN_PREFIX) :], problems)
                found += [address] if address else []
            else:
                found.append(recipient)
        return unique(found), problems

    async def _group(self, name: str, problems: list[str]) -> list[str]:
        try:
            ids = await self.graph.groups_named(name)
            if len(ids) != 1:
                problems.append(
                    f"group:{name} ({'no group has that name' if not ids else f'{len(ids)} groups have it'})"
                )
                return []
            members = await self.graph.member_addresses(ids[0])
        except GraphError as exc:
            if exc.transient:
                raise _Defer(f"listing group:{name} failed: {exc}", exc.retry_after) from None
            problems.append(f"group:{name} (Graph refused to list it: {exc})")
            return []
        if not members:
            problems.append(f"group:{name} (it has no member with a mailbox)")
        return members

    async def _admin(self, ref: str, problems: list[str]) -> str | None:
        """The address of the Dataverse user who made the change: ``systemuser.internalemailaddress``."""
        from shared.dataverse.port import DataverseError

        org_name, _, user_id = ref.partition("/")
        try:
            org = self.orgs.get(org_name)
        except DomainError:
            problems.append(f"the admin in {org_name} (the org is no longer registered)")
            return None
        try:
            row = await self.client_for(org).get(
                "systemusers", user_id, select=("internalemailaddress", "fullname", "isdisabled")
            )
        except DataverseError as exc:
            if exc.status in (None, 408, 429) or (exc.status or 0) >= 500:
                raise _Defer(f"reading the admin's address in {org_name} failed: {exc}") from None
            problems.append(f"the admin in {org_name} ({exc})")
            return None
        except (OSError, TimeoutError) as exc:
            raise _Defer(f"reading the admin's address in {org_name} failed: {exc}") from None
        address = str(row.get("internalemailaddress") or "").strip() if row else ""
        if not address:
            problems.append(
                f"the admin in {org_name} ({'no such user' if row is None else 'the user has no email address'})"
            )
            return None
        return address

    # --- recording ----------------------------------------------------------------------

    async def _failed_send(
        self, action: Action, progress: Notice, exc: GraphError, message_id: str, report: ExecutionReport
    ) -> None:
        if exc.lost:
            error = (
                f"the answer to sendMail was lost after the request went out ({exc}): the message may have been "
                f"sent. Look for Message-ID {message_id} in the sender's Sent Items or the message trace before "
                "retrying; a retry sends it again with the same Message-ID"
            )
            await self._end(action, ActionStatus.FAILED, error, report, progress)
        elif exc.transient:
            await self._defer(action, f"sendMail: {exc}", exc.retry_after, report, progress)
        else:
            await self._end(action, ActionStatus.FAILED, f"sendMail refused: {exc}{_hint(exc)}", report, progress)

    async def _defer(
        self,
        action: Action,
        error: str,
        retry_after: float | None,
        report: ExecutionReport,
        notice: Notice | None = None,
    ) -> None:
        attempts = action.attempts + 1
        if attempts >= self.max_attempts:
            await self._end(action, ActionStatus.FAILED, f"{error} (gave up after {attempts} attempts)", report, notice)
            return
        delay = backoff.delay(attempts, base=self.base_delay, cap=self.max_delay, jitter=0.0)
        if retry_after:
            delay = max(delay, min(retry_after, self.max_delay))
        retry_at = self.clock() + timedelta(seconds=delay)
        await asyncio.to_thread(
            self.ledger.record_attempt, action.id, ActionStatus.PENDING, error, retry_at=retry_at, notice=notice
        )
        report.deferred += 1

    async def _end(
        self,
        action: Action,
        status: ActionStatus,
        error: str | None,
        report: ExecutionReport,
        notice: Notice | None = None,
    ) -> None:
        await asyncio.to_thread(self.ledger.record_attempt, action.id, status, error, notice=notice)
        if status is ActionStatus.APPLIED:
            report.applied += 1
        else:
            report.failed += 1
            report.errors.append(f"notify ({action.notice.kind.value if action.notice else '?'}): {error}")
            log.warning("notice %s failed: %s", action.id, error)


def _mark(address: str) -> str:
    """What ``Notice.sent`` keeps of a recipient: enough to recognize it, not its address."""
    return hashlib.sha256(address.casefold().encode()).hexdigest()[:16]


def _parts(addresses: list[str], already: int) -> list[tuple[int, list[str]]]:
    """Recipients in parts of ``MAX_RECIPIENTS``, numbered after the parts already sent (for the Message-ID)."""
    first = -(-already // MAX_RECIPIENTS)
    return [
        (first + n, addresses[i : i + MAX_RECIPIENTS]) for n, i in enumerate(range(0, len(addresses), MAX_RECIPIENTS))
    ]


def _hint(exc: GraphError) -> str:
    if exc.status == 403:
        return " (the app needs Mail.Send, and an application access policy or RBAC scope that includes the sender)"
    if exc.status == 404:
        return " (ORGGUARD_MAIL_FROM names no mailbox Graph knows)"
    return ""
