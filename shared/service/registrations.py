"""The last check of OrgGuard's own registration in each org, kept with its time.

Health answers within a second, so it never reads the orgs itself: it shows what the last
check found and how old that is. The housekeeping timer (every minute in Azure; the local
host's loop) checks again when the last check is older than ``every``, and the sweep checks
the orgs it sweeps. Reconciling a save the gate never heard reads the gate's state from here
(``gate``), and says "unknown" rather than guess when the last check is too old.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from shared.dataverse.port import RetryPolicy
from shared.domain.drift import GateState, OrgRegistration

EVERY = timedelta(minutes=5)  # how often the timer checks again
CHECK_RETRY = RetryPolicy(attempts=2, base_delay=0.2, max_delay=5.0, timeout=10.0)  # a check is read-only and redone
TRUSTED_FOR = timedelta(minutes=30)  # how long a check says what the gate's state is


@dataclass
class Registrations:
    every: timedelta = EVERY
    trusted_for: timedelta = TRUSTED_FOR
    _last: dict[str, OrgRegistration] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, checks: Iterable[OrgRegistration]) -> None:
        """Keep each org's newest check (of two checks racing, the later one)."""
        with self._lock:
            for found in checks:
                known = self._last.get(found.org)
                if known is None or known.checked_at <= found.checked_at:
                    self._last[found.org] = found

    def latest(self, names: Sequence[str]) -> dict[str, OrgRegistration | None]:
        with self._lock:
            return {name: self._last.get(name) for name in names}

    def due(self, names: Sequence[str], now: datetime) -> bool:
        """Whether any of ``names`` was never checked or not within ``every``."""
        return any(found is None or now - found.checked_at >= self.every for found in self.latest(names).values())

    def gate(self, org: str, now: datetime) -> GateState:
        """The org's gate as last checked; unknown when never checked or longer ago than ``trusted_for``."""
        found = self.latest([org])[org]
        if found is None or now - found.checked_at > self.trusted_for:
            return GateState.UNKNOWN
        return found.gate

    def view(self, names: Sequence[str], now: datetime) -> dict[str, object]:
        """What health shows: per org whether the gate and the events are in place, and how fresh that is.

        No drift details or URLs (health answers anyone); ``orgguard register --check`` and the
        sweep's report have them.
        """
        orgs: dict[str, object] = {}
        for name, found in self.latest(names).items():
            if found is None:
                orgs[name] = {"ok": None, "checked_at": None, "reason": "not checked yet"}
                continue
            doc = found.doc(now=now)
            orgs[name] = {
                key: doc[key] for key in ("ok", "gate", "events", "checked_at", "age_s", "error") if key in doc
            } | {"drift": len(found.drift)}
        checked = [f for f in self.latest(names).values() if f is not None]
        return {
            "ok": bool(checked) and len(checked) == len(names) and all(f.ok for f in checked),
            "advisory": True,  # an org's registration is not this instance's health: it never makes health 503
            "orgs": orgs,
        }
