"""The dead-letter queue over HTTP (CONTRACT, "Added for the second wave"): list and show for a Reader,
replay and purge for an Admin. The use cases are ``shared.service.deadletters``; the CLI's
``orgguard deadletters`` calls the same ones, directly or through these routes."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from starlette.concurrency import run_in_threadpool

from functions.deps import container, role
from shared.domain.auth import Principal, Role
from shared.service.deadletters import MAX_LIST, counts_view, dead_letter_view

router = APIRouter(prefix="/api", tags=["deadletters"])

Reader = Annotated[Principal, Depends(role(Role.READER))]
Admin = Annotated[Principal, Depends(role(Role.ADMIN))]
LetterId = Annotated[str, Path(min_length=1, max_length=120, pattern=r"^[A-Za-z0-9._/-]+$")]


@router.get("/deadletters")
async def list_dead_letters(
    _: Reader,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 100,
    queue: Annotated[str | None, Query(max_length=60)] = None,
) -> dict[str, Any]:
    """The oldest dead letters of OrgGuard's queues (its work queue, Dataverse's queue), and how many each holds."""
    letters = container().dead_letters()
    items = await run_in_threadpool(letters.oldest, limit, queue)
    counts = await run_in_threadpool(letters.counts)
    return {"items": [dead_letter_view(d) for d in items], "counts": counts_view(counts)}


@router.get("/deadletters/{letter_id}")
async def show_dead_letter(letter_id: LetterId, _: Reader) -> dict[str, Any]:
    """One dead letter with its properties and body (the first 64 KiB)."""
    return dead_letter_view(await run_in_threadpool(container().dead_letters().show, letter_id), body=True)


@router.post("/deadletters/{letter_id}/replay")
async def replay_dead_letter(letter_id: LetterId, who: Admin) -> dict[str, Any]:
    """Send it back to its queue as it was (its session, its properties) and take it out of the dead letters."""
    done = await run_in_threadpool(lambda: container().dead_letters().replay(letter_id, actor=who.name))
    return {"replayed": dead_letter_view(done)}


@router.delete("/deadletters/{letter_id}")
async def purge_dead_letter(letter_id: LetterId, who: Admin) -> dict[str, Any]:
    """Remove it for good (recorded in the audit log)."""
    done = await run_in_threadpool(lambda: container().dead_letters().purge(letter_id, actor=who.name))
    return {"purged": dead_letter_view(done)}
