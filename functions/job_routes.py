"""Sweeps and migrations over HTTP: start one (202), then watch its progress and report.

A started job runs in the background of the process that took the request; its
record in the ledger is what ``GET`` answers, so any instance can answer it, and
a migration interrupted by a restart is resumed with ``POST .../resume``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.concurrency import run_in_threadpool

from functions.deps import Name, container, role
from shared.domain.auth import Principal, Role
from shared.domain.jobs import Job, JobKind
from shared.service.jobs import Jobs
from shared.service.views import job_view

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


def _jobs() -> Jobs:
    return container().jobs()


def _spawn(work: Any, name: str) -> None:
    task = asyncio.get_running_loop().create_task(work, name=name)
    _running.add(task)
    task.add_done_callback(_finished)


def _finished(task: asyncio.Task[Any]) -> None:
    _running.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.error("job %s failed: %s", task.get_name(), task.exception())


def _readable(kind: JobKind, path: str) -> None:
    """``GET /api/{path}`` (the newest first) and ``GET /api/{path}/{job_id}``: read alike for every kind of job."""

    async def listed(_: Reader, limit: Limit = 50) -> dict[str, Any]:
        return {"items": [job_view(j) for j in await run_in_threadpool(_jobs().recent, kind, limit)]}

    async def shown(job_id: str, _: Reader) -> dict[str, Any]:
        return job_view(await run_in_threadpool(_jobs().get, kind, job_id))

    router.add_api_route(f"/{path}", listed, methods=["GET"], name=f"list_{path}")
    router.add_api_route(f"/{path}/{{job_id}}", shown, methods=["GET"], name=f"get_{path.removesuffix('s')}")


async def _started(record: Callable[[Jobs], Job]) -> dict[str, Any]:
    """Record the job (in a thread: the ledger blocks), carry it out in this process's background, answer its record."""
    jobs = _jobs()
    job = await run_in_threadpool(record, jobs)
    _spawn(jobs.run_sweep(job) if job.kind is JobKind.SWEEP else jobs.run_migration(job), f"{job.kind.value} {job.id}")
    return job_view(job)


# --- sweeps ------------------------------------------------------------------------------


@router.post("/sweeps", status_code=202)
async def start_sweep(body: SweepRequest, who: Admin) -> dict[str, Any]:
    return await _started(lambda jobs: jobs.start_sweep(body.orgs, apply=body.apply, actor=who.name))


_readable(JobKind.SWEEP, "sweeps")


# --- migrations ----------------------------------------------------------------------------


@router.post("/migrations", status_code=202)
async def start_migration(body: MigrationRequest, who: Admin) -> dict[str, Any]:
    return await _started(
        lambda jobs: jobs.start_migration(
            body.source, body.target, addresses=body.mailboxes, domain=body.domain, apply=body.apply, actor=who.name
        )
    )


_readable(JobKind.MIGRATION, "migrations")


@router.post("/migrations/{job_id}/pause")
async def pause_migration(job_id: str, _: Admin) -> dict[str, Any]:
    return job_view(await run_in_threadpool(_jobs().pause, job_id))


@router.post("/migrations/{job_id}/cancel")
async def cancel_migration(job_id: str, _: Admin) -> dict[str, Any]:
    """No further moves are recorded; the ones already decided are still carried out."""
    return job_view(await run_in_threadpool(_jobs().cancel, job_id))


@router.post("/migrations/{job_id}/resume", status_code=202)
async def resume_migration(job_id: str, _: Admin) -> dict[str, Any]:
    return await _started(lambda jobs: jobs.resume(job_id))


@router.post("/migrations/{job_id}/apply", status_code=202)
async def apply_migration_plan(job_id: str, who: Admin) -> dict[str, Any]:
    """Apply the reviewed plan of a migration planned without ``apply``: a new migration that moves
    exactly what was planned, or fails as stale (409) if planning again gives another plan."""
    return await _started(lambda jobs: jobs.apply_plan(job_id, actor=who.name))
