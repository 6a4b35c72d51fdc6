"""What the operator's commands ask of OrgGuard: one port, reached two ways.

``LedgerOperations`` works on the ledger directly (the machine the local host runs
on, after ``make run``); ``shared.cli.api_client.ApiOperations`` goes through the admin
API (``--url``), so the operator's role applies and the server does the work. Both
answer with the documents the API gives (``shared.service.views``, ``shared.ledger.codec.job_doc``),
so each command is written once and shows the same thing whichever way it went.

Sweeps and migrations run where they are started: on the server through the API,
in a thread of this process directly. Either way the command watches the job
record and, on Ctrl-C, asks the job to stop (``interrupt``).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from shared.domain.jobs import Job, JobKind, JobState
from shared.domain.model import CaseQuery, MailboxKey, NotFound
from shared.ledger.codec import job_doc  # TODO(lead): show jobs through a view, not the storage codec
from shared.ledger.port import JobLedger, job_ledger

if TYPE_CHECKING:
    from shared.bootstrap import Container

Doc = dict[str, Any]
Verdict = Literal["approve", "deny"]
PageSeen = Callable[[str, int, int], None]  # org, rows read so far, pages read so far


@dataclass(frozen=True)
class CaseFilter:
    state: str | None = None  # a CaseState value, or "open": held, decided or failed
    org: str | None = None
    mailbox: str | None = None  # a full address, or a part of one to search for
    limit: int = 50
    cursor: str | None = None


@dataclass(frozen=True)
class MigrationOrder:
    """What `orgguard migrate --from --to (--mailboxes | --domain) [--apply]` asks for."""

    source: str
    target: str
    mailboxes: list[str] | None
    domain: str | None
    apply: bool

    def body(self) -> Doc:
        selection: Doc = {"domain": self.domain} if self.domain is not None else {"mailboxes": self.mailboxes}
        return {"from": self.source, "to": self.target, **selection, "apply": self.apply}


class Operations(Protocol):
    """The port every case and job command is written against."""

    where: str  # "the ledger at ..." / "OrgGuard at ...", for messages
    poll: float  # seconds between looks at a running job's record

    def cases(self, query: CaseFilter) -> Doc: ...

    def case(self, case_id: str) -> Doc: ...

    def decide(self, case_id: str, verdict: Verdict, reason: str) -> Doc: ...

    def retry_action(self, action_id: str) -> Doc: ...

    def mailbox(self, address: str) -> Doc: ...

    def jobs(self, kind: JobKind, limit: int = 500) -> list[Doc]: ...

    def job(self, kind: JobKind, job_id: str) -> Doc: ...

    def set_state(self, job_id: str, state: JobState) -> Doc:
        """Pause or cancel a migration."""
        ...

    def start_sweep(self, orgs: list[str], apply: bool, *, on_page: PageSeen) -> Doc:
        """Start a sweep; ``on_page`` hears each page read where the sweep runs in this process."""
        ...

    def start_migration(self, order: MigrationOrder) -> Doc: ...

    def resume_migration(self, job_id: str) -> Doc: ...

    def apply_plan(self, job_id: str) -> Doc: ...

    def settled(self, doc: Doc) -> bool:
        """Whether the job in ``doc`` is no longer being worked on (its record is final for now)."""
        ...

    def interrupt(self, kind: JobKind, job_id: str, *, hard: bool = False) -> bool:
        """Ask a job to stop (Ctrl-C): migrations pause, sweeps run here are cancelled. Whether it will."""
        ...

    def report(self, kind: JobKind, job_id: str) -> Doc:
        """The job's final document; a sweep run here keeps every conflict, not only the record's first ones."""
        ...

    def close(self) -> None: ...


class _Worker:
    """One job running in a thread of its own with its own event loop; cancellable from the caller's."""

    def __init__(self, work: Callable[[], Coroutine[Any, Any, object]]) -> None:
        self._work = work
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[object] | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="orgguard-job", daemon=True)
        self.thread.start()
        self._ready.wait(5)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except asyncio.CancelledError:
            pass
        except BaseException as exc:  # the job record says what happened; kept for the command too
            self.error = exc

    async def _main(self) -> object:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        self._ready.set()
        return await self._work()

    def cancel(self) -> None:
        if self._loop is not None and self._task is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._task.cancel)

    @property
    def alive(self) -> bool:
        return self.thread.is_alive()


class LedgerOperations:
    """The port on the ledger and service of this process (``shared.bootstrap``)."""

    poll = 0.2

    def __init__(self, container: Container, actor: str) -> None:
        self.container = container
        self.service = container.service
        self.actor = actor
        self.where = f"the ledger {container.settings.ledger}"
        self._workers: dict[str, _Worker] = {}
        self._reports: dict[str, Doc] = {}

    @property
    def ledger(self) -> JobLedger:
        return job_ledger(self.container.ledger)

    # --- cases ----------------------------------------------------------------------------

    def cases(self, query: CaseFilter) -> Doc:
        from shared.service.views import case_view

        found = CaseQuery.of(
            state=query.state, org=query.org, mailbox=query.mailbox, limit=query.limit, cursor=query.cursor
        )
        page = self.service.cases(found)
        total = self.service.count_cases(found)
        return {"items": [case_view(c) for c in page.items], "next": page.next, "total": total}

    def case(self, case_id: str) -> Doc:
        from shared.service.views import case_view

        return case_view(self.service.case(case_id))

    def decide(self, case_id: str, verdict: Verdict, reason: str) -> Doc:
        from shared.service.views import case_view

        resolve = self.service.approve if verdict == "approve" else self.service.deny
        return case_view(resolve(case_id, actor=self.actor, reason=reason))

    def retry_action(self, action_id: str) -> Doc:
        action = self.service.retry_action(action_id, actor=self.actor)
        return {"action": action.id, "status": action.status.value}

    def mailbox(self, address: str) -> Doc:
        from shared.service.views import mailbox_view

        return mailbox_view(self.service.mailbox(MailboxKey.parse(address)))

    # --- jobs -----------------------------------------------------------------------------

    def jobs(self, kind: JobKind, limit: int = 500) -> list[Doc]:
        return [job_doc(j) for j in self.ledger.jobs(kind, limit)]

    def _job(self, kind: JobKind, job_id: str) -> Job:
        job = self.ledger.job(job_id)
        if job is None or job.kind is not kind:
            raise NotFound(f"no {kind.value} {job_id}", field="id")
        return job

    def job(self, kind: JobKind, job_id: str) -> Doc:
        return job_doc(self._job(kind, job_id))

    def set_state(self, job_id: str, state: JobState) -> Doc:
        job = self._job(JobKind.MIGRATION, job_id)
        return job_doc(self.ledger.save_job(job.moved_to(state)))

    def start_sweep(self, orgs: list[str], apply: bool, *, on_page: PageSeen) -> Doc:
        from shared.service.sweep import new_job, run_sweep

        for name in orgs:
            self.service.orgs.get(name)
        job = self.ledger.save_job(new_job(orgs, actor=self.actor, apply=apply))

        async def work() -> None:
            _, result = await run_sweep(self.service, self.ledger, job, progress=on_page)
            self._reports[job.id] = result.doc()

        self._workers[job.id] = _Worker(work)
        return job_doc(job)

    def start_migration(self, order: MigrationOrder) -> Doc:
        from shared.service.migration import Selection, new_job

        selection = Selection.parse(addresses=order.mailboxes, domain=order.domain)
        self.service.orgs.get(order.source)
        self.service.orgs.get(order.target)
        return self._migrate(
            self.ledger.save_job(new_job(order.source, order.target, selection, actor=self.actor, apply=order.apply))
        )

    def resume_migration(self, job_id: str) -> Doc:
        return self._migrate(self.ledger.save_job(self._job(JobKind.MIGRATION, job_id).moved_to(JobState.RUNNING)))

    def apply_plan(self, job_id: str) -> Doc:
        from shared.service.migration import apply_plan

        return self._migrate(apply_plan(self.ledger, job_id, actor=self.actor))

    def _migrate(self, job: Job) -> Doc:
        from shared.dataverse.pacing import Pacer
        from shared.service.migration import Migration

        async def work() -> None:
            pacer = Pacer()
            try:
                await Migration(self.service, self.ledger, pacer, job).run()
            finally:
                await pacer.aclose()

        self._workers[job.id] = _Worker(work)
        return job_doc(job)

    def settled(self, doc: Doc) -> bool:
        worker = self._workers.get(str(doc["id"]))
        return not worker.alive if worker else doc["state"] != JobState.RUNNING.value

    def interrupt(self, kind: JobKind, job_id: str, *, hard: bool = False) -> bool:
        worker = self._workers.get(job_id)
        if worker is None:
            return False
        if kind is JobKind.MIGRATION and not hard:
            current = self._job(kind, job_id)
            if current.state is JobState.RUNNING:
                self.ledger.save_job(current.moved_to(JobState.PAUSED))  # it stops after the batch in flight
            return True
        worker.cancel()  # a sweep (or a second Ctrl-C): the job saves itself as cancelled / paused
        return True

    def report(self, kind: JobKind, job_id: str) -> Doc:
        doc = self.job(kind, job_id)
        if job_id in self._reports:
            doc["result"] = self._reports[job_id]
        worker = self._workers.get(job_id)
        if worker is not None and worker.error is not None and doc["state"] == JobState.RUNNING.value:
            doc["error"] = f"{type(worker.error).__name__}: {worker.error}"
        return doc

    def close(self) -> None:
        for worker in self._workers.values():
            worker.cancel()
            worker.thread.join(timeout=10)
