"""Long-running admin jobs (sweeps and migrations) as ledger records.

A job is what an admin started and what a restarted process picks up again:
its parameters, where it got to, and what it found or moved. The record is a
plain JSON document (the ledger codec's ``job_doc``) so every ledger stores it
the same way; ``version`` makes a save conditional on the record the writer read
(pause/cancel from the API race with the worker's progress saves).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from shared.domain.model import DomainError, InvalidTransition, new_id, utcnow


class JobKind(StrEnum):
    SWEEP = "sweep"
    MIGRATION = "migration"
    DIGEST = "digest"  # the operations digest of failed actions (shared/digest.py)


class JobState(StrEnum):
    PLANNED = "planned"  # a migration planned without --apply: the plan is the result
    RUNNING = "running"
    PAUSED = "paused"
    CANCELLED = "cancelled"
    DONE = "done"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        return self in (JobState.PLANNED, JobState.CANCELLED, JobState.DONE, JobState.FAILED)


class JobConflict(DomainError, status=409, title="Job changed"):
    """Someone else saved the job since it was read."""


@dataclass(frozen=True)
class Job:
    id: str
    kind: JobKind
    state: JobState
    params: dict[str, Any]
    actor: str
    created_at: datetime
    updated_at: datetime
    progress: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    version: int = 0  # 0: never saved

    @classmethod
    def start(cls, kind: JobKind, params: dict[str, Any], *, actor: str, apply: bool) -> Job:
        now = utcnow()
        return cls(new_id(), kind, JobState.RUNNING, {**params, "apply": apply}, actor, now, now)

    @property
    def apply(self) -> bool:
        return bool(self.params.get("apply"))

    def with_progress(self, **values: Any) -> Job:
        return replace(self, progress={**self.progress, **values}, updated_at=utcnow())

    def moved_to(self, state: JobState, *, error: str | None = None) -> Job:
        if self.state.finished and state is not self.state:
            raise InvalidTransition(
                f"job {self.id} is {self.state.value}; it cannot become {state.value}", state=self.state.value
            )
        return replace(self, state=state, error=error or self.error, updated_at=utcnow())
