"""Drift of OrgGuard's own registration in an org: its webhooks, steps and images as someone left them.

OrgGuard hears an org only through what ``orgguard register`` put there: two service endpoints
(the synchronous gate and the asynchronous event intake), a mailbox ``Update`` step for each,
and their entity images. Anyone with the privileges can disable or delete a step, point an
endpoint elsewhere or drop a filtering attribute, and the org then saves claims OrgGuard never
hears. A check (``orgguard register --check``, the sweep, the housekeeping timer) compares each
record with what ``register`` would write and says, per org, what differs; ``register`` repairs it.
Pure: the Dataverse reads are in ``shared/dataverse/registration.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class Part(StrEnum):
    """Which of OrgGuard's two ways in a record serves."""

    GATE = "gate"  # the synchronous step that can stop a save
    EVENTS = "events"  # the asynchronous step that reports a save afterwards


class DriftKind(StrEnum):
    MISSING = "missing"  # deleted (or never registered)
    DISABLED = "disabled"  # a step someone deactivated
    CHANGED = "changed"  # a column differs from what register writes (a URL, a stage, filtering attributes ...)
    DUPLICATE = "duplicate"  # more than one row answers to the name: register cannot tell which is OrgGuard's


class GateState(StrEnum):
    """Whether the org calls OrgGuard's gate on a claim, as last checked."""

    ENABLED = "enabled"  # present, enabled and as registered
    OFF = "off"  # missing, disabled or changed: saves may skip it
    UNKNOWN = "unknown"  # never checked, too long ago, or the org could not be read


@dataclass(frozen=True)
class Drift:
    """One record that is not as registered."""

    part: Part
    record: str  # ``<table>:<name>``, as ``register`` reports what it created or updated
    kind: DriftKind
    detail: str

    def doc(self) -> dict[str, str]:
        return {"part": self.part.value, "record": self.record, "kind": self.kind.value, "detail": self.detail}


@dataclass(frozen=True)
class OrgRegistration:
    """OrgGuard's registration in one org as checked at ``checked_at``: what drifted, or why it could not be read."""

    org: str
    checked_at: datetime
    drift: tuple[Drift, ...] = ()
    error: str | None = None  # the org could not be read (an HTTP status, no answer): the state is unknown
    compared_url: bool = True  # the endpoints' base URL was compared (it is known)

    @property
    def ok(self) -> bool:
        return self.error is None and not self.drift

    def state(self, part: Part) -> GateState:
        """Whether ``part`` (the gate or the events) is in place and enabled as registered."""
        if self.error is not None:
            return GateState.UNKNOWN
        return GateState.OFF if any(d.part is part for d in self.drift) else GateState.ENABLED

    @property
    def gate(self) -> GateState:
        return self.state(Part.GATE)

    def repair(self, base_url: str | None) -> str:
        """What to run to put it right."""
        url = base_url or "<OrgGuard's URL>"
        return f"orgguard register --org {self.org} --url {url}"

    def doc(self, *, now: datetime | None = None) -> dict[str, object]:
        """The check as health, the sweep and ``register --check --json`` show it."""
        doc: dict[str, object] = {
            "org": self.org,
            "ok": self.ok,
            "gate": self.gate.value,
            "events": self.state(Part.EVENTS).value,
            "checked_at": self.checked_at.isoformat(),
            "drift": [d.doc() for d in self.drift],
            "error": self.error,
            "compared_url": self.compared_url,
        }
        if now is not None:
            doc["age_s"] = round(max(0.0, (now - self.checked_at).total_seconds()), 1)
        return doc
