"""What a sweep finds: one mailbox's syncing rows across the orgs, and why it needs settling (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from shared.domain.model import MailboxKey


class FindingKind(StrEnum):
    MULTI_ORG = "multi_org"
    ALERT = "alert"
    OWNER_NOT_SYNCING = "owner_not_syncing"
    UNKNOWN_OWNER = "unknown_owner"


@dataclass(frozen=True, slots=True)
class Stamp:
    """Who last changed a row, and when (``modifiedby``, ``modifiedonbehalfby``, ``modifiedon``)."""

    modified_on: datetime | None
    modified_by: str | None = None
    on_behalf_of: str | None = None


@dataclass(frozen=True, slots=True)
class Row:
    """One org's active server-side-sync row for the mailbox."""

    org: str
    mailbox_id: str
    failing: bool
    alert: bool
    stamp: Stamp | None = None  # read only for rows that sync against the ledger's owner (a save may have skipped
    # the gate); a row failing with the alert was last changed by synchronization, not by a save


def failing(act_failed: bool, test_pending: bool) -> bool:
    """Whether a row counts as failing: its ACT status says Failure and no Test & Enable is pending on it.

    Test & Enable completes after the save that schedules it (FACTS.md, "Checked again"): until it
    runs, the status is the previous test's, so a row just repaired (check box + Test & Enable) is
    not failing again, and a second sweep does not repair it twice.
    """
    return act_failed and not test_pending


def needs_stamp(finding: Finding, row: Row) -> bool:
    """Whether the sweep reads who last changed ``row``: it syncs (fine) against another owner the ledger knows."""
    return finding.owner is not None and row.org != finding.owner and not row.alert


@dataclass(frozen=True, slots=True)
class Finding:
    key: MailboxKey
    kinds: tuple[FindingKind, ...]
    rows: tuple[Row, ...]
    owner: str | None  # the ledger's

    @property
    def orgs(self) -> list[str]:
        return sorted({r.org for r in self.rows})

    def row(self, org: str) -> Row | None:
        return next((r for r in self.rows if r.org == org), None)


def classify(key: str, rows: list[Row], owner: tuple[str | None, int | None]) -> Finding:
    """The finding for one key: its rows, and each reason it needs settling (``owner``: the ledger's owner,
    and its place among the registered orgs, None when it is not registered any more)."""
    name, index = owner
    orgs = {r.org for r in rows}
    kinds = []
    if len(orgs) > 1:
        kinds.append(FindingKind.MULTI_ORG)
    if any(r.alert for r in rows):
        kinds.append(FindingKind.ALERT)
    if name is not None and index is None:
        kinds.append(FindingKind.UNKNOWN_OWNER)
    elif name is not None and name not in orgs:
        kinds.append(FindingKind.OWNER_NOT_SYNCING)
    return Finding(MailboxKey(key), tuple(kinds), tuple(rows), name)


def claim_order(finding: Finding) -> list[Row]:
    """Who claims first: the ledger's owner, then rows syncing fine (Exchange likely holds them), then the rest."""
    first_row_per_org: dict[str, Row] = {}
    for row in finding.rows:
        first_row_per_org.setdefault(row.org, row)
    return sorted(
        first_row_per_org.values(),
        key=lambda r: (r.org != finding.owner, r.failing, r.org),
    )
