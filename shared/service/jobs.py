"""Sweeps and migrations as jobs: one set of rules for every entry point that starts, stops or watches them.

The admin API (``functions/job_routes.py``), the timer (``functions/timers.py``) and the
command line (``shared/cli``) all come here: what may be started (registered orgs, a
migration between two different orgs), which states a migration may move between
(``Job.moved_to``), how it is resumed, and how the work is run (a pacer per run, closed
at the end). Where the work runs (a task of the server, a thread of the command, the
timer's own call) is the caller's business.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared.domain.jobs import Job, JobKind, JobState
from shared.domain.model import InvalidTransition, NotFound
from shared.ledger.port import JobLedger

if TYPE_CHECKING:
    from shared.dataverse.pacing import Pacer
    from shared.service.orgguard import OrgGuard
    from shared.service.sweep import Progress, SweepResult

RESUMABLE = (JobState.PAUSED, JobState.RUNNING)  # running: its worker died (a restart, a kill) and left it so


@dataclass
class Jobs:
    service: OrgGuard
    ledger: JobLedger
    pacer: Callable[[], Pacer]  # a pacer per run, from the composition root (the identity and the orgs' clients)
    webhook_base: str | None = None  # OrgGuard's URL, which its endpoints in the orgs should call (the sweep checks)

    # --- reading ----------------------------------------------------------------------------

    def get(self, kind: JobKind, job_id: str) -> Job:
        job = self.ledger.job(job_id)
        if job is None or job.kind is not kind:
            raise NotFound(f"no {kind.value} {job_id}", field="id")
        return job

    def recent(self, kind: JobKind, limit: int = 50) -> Sequence[Job]:
        """Newest first."""
        return self.ledger.jobs(kind, limit)

    # --- starting ---------------------------------------------------------------------------

    def start_sweep(self, orgs: Sequence[str], *, apply: bool, actor: str) -> Job:
        from shared.service.sweep import new_job

        for name in orgs:
            self.service.orgs.get(name)
        return self.ledger.save_job(new_job(list(orgs), actor=actor, apply=apply))

    def start_migration(
        self, source: str, target: str, *, addresses: list[str] | None, domain: str | None, apply: bool, actor: str
    ) -> Job:
        """A migration recorded before anything runs: both orgs registered and different, the selection valid."""
        from shared.service.migration import Selection, new_job

        self.service.orgs.get(source)
        self.service.orgs.get(target)
        selection = Selection.parse(addresses=addresses, domain=domain)
        return self.ledger.save_job(new_job(source, target, selection, actor=actor, apply=apply))

    def apply_plan(self, planned_id: str, *, actor: str) -> Job:
        from shared.service.migration import apply_plan

        return apply_plan(self.ledger, planned_id, actor=actor)

    # --- moving a migration on ----------------------------------------------------------------

    def resume(self, job_id: str) -> Job:
        """A paused migration, or one whose worker died, runs again; a planned, done or cancelled one does not."""
        job = self.get(JobKind.MIGRATION, job_id)
        if job.state not in RESUMABLE:
            hint = " (apply a plan with its own command)" if job.state is JobState.PLANNED else ""
            raise InvalidTransition(
                f"migration {job.id} is {job.state.value}; nothing to resume{hint}", state=job.state.value
            )
        return self.ledger.save_job(job.moved_to(JobState.RUNNING))

    def pause(self, job_id: str) -> Job:
        """It stops after the batch in flight; ``resume`` goes on from there."""
        return self._move(job_id, JobState.PAUSED)

    def cancel(self, job_id: str) -> Job:
        """No further moves are recorded; the ones already decided are still carried out."""
        return self._move(job_id, JobState.CANCELLED)

    def _move(self, job_id: str, state: JobState) -> Job:
        return self.ledger.save_job(self.get(JobKind.MIGRATION, job_id).moved_to(state))

    # --- running ----------------------------------------------------------------------------

    async def run_migration(self, job: Job) -> Job:
        from shared.service.migration import Migration

        pacer = self.pacer()
        try:
            return await Migration(self.service, self.ledger, pacer, job).run()
        finally:
            await pacer.aclose()

    async def run_sweep(self, job: Job, *, progress: Progress | None = None, **options: Any) -> tuple[Job, SweepResult]:
        from shared.service.sweep import run_sweep

        pacer = self.pacer()
        try:
            return await run_sweep(
                self.service,
                self.ledger,
                job,
                pacer=pacer,
                progress=progress,
                webhook_base=self.webhook_base,
                **options,
            )
        finally:
            await pacer.aclose()
