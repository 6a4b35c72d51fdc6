"""Sweeps and migrations over HTTP: start one (202), then watch its progress and report.

A started job runs in the background of the process that took the request; its
record in the ledger is what ``GET`` answers, so any instance can answer it, and
a migration interrupted by a restart is resumed with ``POST .../resume``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.concurrency import run_in_threadpool

from functions.deps import Name, container, role
from shared.domain.auth import Principal, Role
from shared.domain.jobs import Job, JobKind, JobState
from shared.domain.model import NotFound
from shared.ledger.codec import job_doc  # TODO(lead): answer with a job view, not the storage codec
from shared.ledger.port import JobLedger, job_ledger

log = logging.getLogger("orgguard.jobs")
router = APIRouter(prefix="/api", tags=["jobs"])

Reader = Annotated[Principal, Depends(role(Role.READER))]
Admin = Annotated[Principal, Depends(role(Role.ADMIN))]
Limit = Annotated[int, Query(ge=1, le=500, description="Newest first, at most this many.")]

_running: set[asyncio.Task[Any]] = set()


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, populate_by_name=True)


class SweepRequest(Strict):
    orgs: list[Name] = Field(default_factory=list, max_length=100)
    apply: bool = False


class MigrationRequest(Strict):
    source: Name = Field(alias="from", min_length=1, max_length=100)
    target: Name = Field(alias="to", min_length=1, max_length=100)
    mailboxes: list[Name] | None = Field(default=None, max_length=50_000)
    domain: Name | None = Field(default=None, max_length=253)
    apply: bool = False

    @model_validator(mode="after")
    def one_selection(self) -> MigrationRequest:
        if (self.mailboxes is None) == (self.domain is None):
            raise ValueError("give either mailboxes or domain")
        return self


def _ledger() -> JobLedger:
    return job_ledger(container().ledger)


def _spawn(work: Any, name: str) -> None:
    task = asyncio.get_running_loop().create_task(work, name=name)
    _running.add(task)
    task.add_done_callback(_finished)


def _finished(task: asyncio.Task[Any]) -> None:
    _running.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.error("job %s failed: %s", task.get_name(), task.exception())


def _job(job_id: str, kind: JobKind) -> Job:
    job = _ledger().job(job_id)
    if job is None or job.kind is not kind:
        raise NotFound(f"no {kind.value} {job_id}", field="id")
    return job


async def _listed(kind: JobKind, limit: int) -> dict[str, Any]:
    return {"items": [job_doc(j) for j in await run_in_threadpool(_ledger().jobs, kind, limit)]}


async def _shown(job_id: str, kind: JobKind) -> dict[str, Any]:
    return job_doc(await run_in_threadpool(_job, job_id, kind))


# --- sweeps ------------------------------------------------------------------------------


@router.post("/sweeps", status_code=202)
async def start_sweep(body: SweepRequest, who: Admin) -> dict[str, Any]:
    from shared.service.sweep import new_job, run_sweep

    c = container()
    for name in body.orgs:
        c.orgs.get(name)
    job = await run_in_threadpool(_ledger().save_job, new_job(body.orgs, actor=who.name, apply=body.apply))
    _spawn(run_sweep(c.service, _ledger(), job), f"sweep {job.id}")
    return job_doc(job)


@router.get("/sweeps")
async def list_sweeps(_: Reader, limit: Limit = 50) -> dict[str, Any]:
    return await _listed(JobKind.SWEEP, limit)


@router.get("/sweeps/{job_id}")
async def get_sweep(job_id: str, _: Reader) -> dict[str, Any]:
    return await _shown(job_id, JobKind.SWEEP)


# --- migrations ----------------------------------------------------------------------------


async def _migrate(job: Job) -> None:
    from shared.dataverse.pacing import Pacer
    from shared.service.migration import Migration

    pacer = Pacer()
    try:
        await Migration(container().service, _ledger(), pacer, job).run()
    finally:
        await pacer.aclose()


@router.post("/migrations", status_code=202)
async def start_migration(body: MigrationRequest, who: Admin) -> dict[str, Any]:
    from shared.service.migration import Selection, new_job

    c = container()
    c.orgs.get(body.source)
    c.orgs.get(body.target)
    selection = Selection.parse(addresses=body.mailboxes, domain=body.domain)
    job = new_job(body.source, body.target, selection, actor=who.name, apply=body.apply)
    job = await run_in_threadpool(_ledger().save_job, job)
    _spawn(_migrate(job), f"migration {job.id}")
    return job_doc(job)


@router.get("/migrations")
async def list_migrations(_: Reader, limit: Limit = 50) -> dict[str, Any]:
    return await _listed(JobKind.MIGRATION, limit)


@router.get("/migrations/{job_id}")
async def get_migration(job_id: str, _: Reader) -> dict[str, Any]:
    return await _shown(job_id, JobKind.MIGRATION)


async def _move_to(job_id: str, state: JobState) -> Job:
    job = await run_in_threadpool(_job, job_id, JobKind.MIGRATION)
    return await run_in_threadpool(_ledger().save_job, job.moved_to(state))


@router.post("/migrations/{job_id}/pause")
async def pause_migration(job_id: str, _: Admin) -> dict[str, Any]:
    return job_doc(await _move_to(job_id, JobState.PAUSED))


@router.post("/migrations/{job_id}/cancel")
async def cancel_migration(job_id: str, _: Admin) -> dict[str, Any]:
    """No further moves are recorded; the ones already decided are still carried out."""
    return job_doc(await _move_to(job_id, JobState.CANCELLED))


@router.post("/migrations/{job_id}/resume", status_code=202)
async def resume_migration(job_id: str, _: Admin) -> dict[str, Any]:
    job = await _move_to(job_id, JobState.RUNNING)
    _spawn(_migrate(job), f"migration {job.id}")
    return job_doc(job)


@router.post("/migrations/{job_id}/apply", status_code=202)
async def apply_migration_plan(job_id: str, who: Admin) -> dict[str, Any]:
    """Apply the reviewed plan of a migration planned without ``apply``: a new migration that moves
    exactly what was planned, or fails as stale (409) if planning again gives another plan."""
    from shared.service.migration import apply_plan

    job = await run_in_threadpool(lambda: apply_plan(_ledger(), job_id, actor=who.name))
    _spawn(_migrate(job), f"migration {job.id}")
    return job_doc(job)
