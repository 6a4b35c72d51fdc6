"""Saves that skipped the gate: how OrgGuard came to hear of them afterwards, and why the gate did not.

OrgGuard's synchronous gate can stop a claim only when Dataverse calls it. A save skips it when
its caller sends the bypass headers (``MSCRM.BypassBusinessLogicExecution: CustomSync``, the legacy
``MSCRM.BypassCustomPluginExecution``, or the gate's step id; users with the bypass privilege,
System Administrators by default), when someone disabled or deleted the gate's step, or when the
gate answered without deciding (``gate.on_error: allow``). The asynchronous step (unless the caller
also sent ``CustomAsync``) and the sweep still find the claim; the case then says how it was found
(its origin), why the gate missed it (``Found``) and who saved.

Pure rules; the service layer gathers the facts (the ledger's claims, the last registration
check, the gate's own undecided answers) and calls them.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from shared.domain.drift import GateState
from shared.domain.model import ClaimRecord, Effect, Found, Origin, Unheard

HEARD_WITHIN = timedelta(minutes=2)  # the gate decides a save before it commits: at most its deadline earlier
CLOCK_SLACK = timedelta(seconds=10)  # OrgGuard's clock and the org's may differ a little
LET_THROUGH = frozenset({Effect.ALLOW, Effect.OVERRIDE, Effect.AUDIT})  # the gate answered 200: the save went on


def why_unheard(*, degraded: bool, gate: GateState) -> Found:
    """Why the gate missed a save it never decided."""
    if degraded:
        return Found.GATE_DEGRADED
    if gate is GateState.OFF:
        return Found.GATE_DISABLED
    if gate is GateState.ENABLED:
        return Found.BYPASS
    return Found.UNHEARD


def heard_at_the_gate(claims: Iterable[ClaimRecord], org: str, saved_at: datetime) -> bool:
    """Whether the gate decided, and let through, a claim of ``org`` on the mailbox just before ``saved_at``.

    The gate decides before the save commits, within its deadline; a claim it stopped (block, hold)
    cancelled that save, so a later one it did not hear.
    """
    return any(
        c.org == org
        and c.origin is Origin.GATE
        and c.effect in LET_THROUGH
        and saved_at - HEARD_WITHIN <= c.at <= saved_at + CLOCK_SLACK
        for c in claims
    )


def heard_since(claims: Iterable[ClaimRecord], org: str, since: datetime) -> bool:
    """Whether OrgGuard heard ``org`` claim the mailbox at or after ``since`` and let it be (the sweep's rule).

    A claim the gate stopped does not count: that save was cancelled, so the one that made the row
    sync was another.
    """
    return any(
        c.org == org and c.at >= since - CLOCK_SLACK and not (c.origin is Origin.GATE and c.effect not in LET_THROUGH)
        for c in claims
    )


def changed_unheard(
    claims: Iterable[ClaimRecord], org: str, *, owner_since: datetime | None, modified_on: datetime | None
) -> bool:
    """The sweep's rule: ``org``'s row, found syncing against the ledger's owner, was changed after OrgGuard
    recorded that owner, and OrgGuard heard no claim of ``org`` since: a save skipped the gate.

    A row unchanged since then syncs from before OrgGuard knew the mailbox (a latent conflict, not a skip).
    """
    # Dataverse stamps modifiedon to the second: only a later second is surely after the owner was recorded
    if owner_since is None or modified_on is None or modified_on <= owner_since.replace(microsecond=0):
        return False
    return not heard_since(claims, org, owner_since)


__all__ = ["Found", "Unheard", "changed_unheard", "heard_at_the_gate", "heard_since", "why_unheard"]
