"""Recording an attempt at an action, and an operator's retry: written once for every ledger.

The rule is the case work's (``casework.attempt``, ``casework.retry``): given the stored
action and its case, each says what the action, the case and the audit log must become.
A ledger adds only ``_write_step``: reading the action and its case, and writing the
step's result in one transaction, so the audit entry lands with the change it records.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from shared.domain import casework
from shared.domain.model import Action, ActionStatus, Case, Notice

StepRule = Callable[[Action, Case | None, datetime], casework.Step | None]
"""The stored action, its case and the time, to the step to write (None: leave them as they are)."""


class OutboxSteps:
    """``record_attempt`` and ``reset_action`` of the outbox port, for a ledger that writes steps."""

    def _write_step(self, action_id: str, step: StepRule) -> Action:
        """Apply ``step`` to the stored action in one transaction; ``NotFound`` when there is no such action."""
        raise NotImplementedError

    def _kept_error(self, error: str | None) -> str | None:
        """What the storage keeps of an error text: all of it here; Table Storage keeps its start."""
        return error

    def record_attempt(
        self,
        action_id: str,
        status: ActionStatus,
        error: str | None = None,
        *,
        retry_at: datetime | None = None,
        notice: Notice | None = None,
    ) -> Action:
        kept = self._kept_error(error)

        def step(old: Action, case: Case | None, now: datetime) -> casework.Step | None:
            return casework.attempt(old, case, status=status, error=kept, retry_at=retry_at, notice=notice, now=now)

        return self._write_step(action_id, step)

    def reset_action(self, action_id: str, *, actor: str) -> Action:
        def step(old: Action, case: Case | None, now: datetime) -> casework.Step:
            return casework.retry(old, case, actor=actor, now=now)

        return self._write_step(action_id, step)
