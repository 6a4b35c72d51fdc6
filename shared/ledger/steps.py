"""Recording an attempt at an action, and an operator's retry: written once for every ledger.

The rule is the case work's (``casework.attempt``, ``casework.retry``, ``casework.hand_back``):
given the stored action and its case, each says what the action, the case and the audit log must
become. A ledger adds only ``_write_steps``: reading the actions and their cases, and writing the steps'
results in one transaction where the storage has one for them, so each audit entry lands with the
change it records (``_write_step`` is one step of it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from shared.domain import casework
from shared.domain.model import Action, ActionStatus, AuditEvent, Case, Notice
from shared.ledger.port import Attempt

StepRule = Callable[[Action, Case | None, datetime], casework.Step | None]
"""The stored action, its case and the time, to the step to write (None: leave them as they are)."""

OutboxChange = tuple[Action, Case | None, AuditEvent | None]
"""The action, its case (moved or not, None: untouched) and the audit event (None: nothing to audit)."""

ChangeRule = Callable[[Action, Case | None, datetime], OutboxChange | None]
"""A ``StepRule`` that may leave the case and the audit log alone (an action handed back unattempted)."""


class OutboxSteps:
    """``record_attempt(s)`` and ``reset_action`` of the outbox port, for a ledger that writes steps."""

    def _write_step(self, action_id: str, step: StepRule) -> Action:
        """Apply ``step`` to the stored action in one transaction; ``NotFound`` when there is no such action."""
        return self._write_steps([(action_id, step)])[0]

    def _write_steps(self, steps: Sequence[tuple[str, ChangeRule]]) -> list[Action]:
        """Apply each rule to its stored action, in order, each seeing the ones before (``record_attempts``)."""
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
        return self._write_step(action_id, self._spent(Attempt(action_id, status, error, retry_at, notice)))

    def record_attempts(self, attempts: Sequence[Attempt]) -> list[Action]:
        if not attempts:
            return []
        return self._write_steps([(a.action_id, self._spent(a) if a.spent else _hand_back(a)) for a in attempts])

    def _spent(self, attempt: Attempt) -> StepRule:
        kept = self._kept_error(attempt.error)

        def step(old: Action, case: Case | None, now: datetime) -> casework.Step | None:
            return casework.attempt(
                old, case, status=attempt.status, error=kept, retry_at=attempt.retry_at, notice=attempt.notice,
                number=attempt.number, now=now,
            )  # fmt: skip

        return step

    def reset_action(self, action_id: str, *, actor: str) -> Action:
        def step(old: Action, case: Case | None, now: datetime) -> casework.Step:
            return casework.retry(old, case, actor=actor, now=now)

        return self._write_step(action_id, step)


def _hand_back(attempt: Attempt) -> ChangeRule:
    def step(old: Action, case: Case | None, _: datetime) -> OutboxChange | None:
        new = casework.hand_back(old, due=attempt.retry_at, lease=attempt.lease)
        return None if new is None else (new, None, None)

    return step
