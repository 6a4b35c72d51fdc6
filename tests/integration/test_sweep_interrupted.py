"""A sweep cut off half-way through its reads: the job says it failed, and the next sweep finds exactly what an
uninterrupted one finds (the scratch index holds whole pages only, and each sweep starts afresh)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared import bootstrap
from shared.dataverse.port import DataverseError
from shared.domain.jobs import JobState
from shared.domain.model import CaseQuery
from shared.service import sweep as sweeping
from shared.service.sweep import SweepResult
from tests.factories import JP_DOMAIN_POLICY
from tests.jobs_support import wired

pytestmark = pytest.mark.sandbox

SANDBOX_SEED = {"mailboxes": 60, "overlap": 0.3}
PAGE = 7  # rows a page, so each org is read in several pages


def run(c: bootstrap.Container, **options: Any) -> SweepResult:
    jobs = c.jobs()
    _, result = asyncio.run(jobs.run_sweep(jobs.start_sweep([], apply=False, actor="test"), **options))
    return result


def found(result: SweepResult) -> tuple[object, ...]:
    return (result.mailboxes, result.keys, result.unowned, result.counts, result.conflicts, result.rows_by_org)


def test_a_sweep_cut_off_between_pages_fails_and_the_next_one_finds_the_same(
    sandbox: httpx.Client, base_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(sweeping, "MAX_PAGE_SIZE", PAGE)
    c = wired(tmp_path, base_url, JP_DOMAIN_POLICY)
    clean = run(c)
    assert clean.pages["contoso-jp"] > 2 and clean.conflicts  # several pages, something to find

    def cut_off(org: str, rows: int, pages: int) -> None:
        """After jp's second page, its next request is refused (not retried): the sweep ends there."""
        if org == "contoso-jp" and pages == 2:
            fault = {"org": "contoso-jp", "fail": {"status": 400, "count": 1, "match": "mailboxes"}}
            sandbox.put("/_sandbox/settings", json=fault).raise_for_status()

    jobs = c.jobs()
    job = jobs.start_sweep([], apply=False, actor="test")
    with pytest.raises(DataverseError):
        asyncio.run(jobs.run_sweep(job, progress=cut_off))
    failed = c.ledger.job(job.id)
    assert failed is not None and failed.state is JobState.FAILED

    again = run(c)
    assert found(again) == found(clean)
    assert not c.ledger.cases(CaseQuery(limit=5)).items  # dry runs, the cut-off one too, record nothing
