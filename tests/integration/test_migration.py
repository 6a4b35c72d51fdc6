"""Migrations against the sandbox's orgs over their Web API: the plan, S3 under a tight budget, kill and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from functions.console import app
from shared import bootstrap
from shared.domain.jobs import JobKind, JobState
from shared.domain.model import ActionStatus, CaseQuery, MailboxKey
from shared.ledger.port import job_ledger
from shared.ledger.sqlite import SqliteLedger
from tests.factories import ADMIN_TOKEN, REPO, orgs_file
from tests.hosting import api_client
from tests.jobs_support import exchange, rows, wired, writes

pytestmark = pytest.mark.sandbox

SANDBOX_SEED = {"mailboxes": 2000, "overlap": 0.8}


def in_both(sandbox: httpx.Client, n: int) -> tuple[list[str], str]:
    """``n`` addresses with an active row in NA and in EU, and one active in NA only."""

    def active(org: str) -> dict[str, dict[str, object]]:
        return {MailboxKey.parse(r["emailaddress"]).address: r for r in rows(sandbox, org) if r["statecode"] == 0}

    na, eu = active("contoso-na"), active("contoso-eu")
    both = sorted(set(na) & set(eu))
    assert len(both) >= n, f"the seed has only {len(both)} NA/EU pairs"
    only_na = sorted(set(na) - set(eu))[0]
    return both[:n], only_na


def run_cli(c: bootstrap.Container, *args: str) -> dict[str, object]:
    bootstrap.install(c)
    try:
        answer = CliRunner().invoke(app, [*args, "--json"])
    finally:
        bootstrap.install(None)
    assert answer.exit_code == 0, answer.output
    doc: dict[str, object] = json.loads(answer.stdout)
    return doc


def test_the_plan_says_what_would_move_and_writes_nothing(sandbox: httpx.Client, base_url: str, tmp_path: Path):
    chosen, only_na = in_both(sandbox, 40)
    listing = tmp_path / "move.txt"
    listing.write_text("\n".join(["# moving to EU", *[a.upper() for a in chosen], only_na]) + "\n")
    sandbox.delete("/_sandbox/requests")
    c = wired(tmp_path, base_url)
    doc = run_cli(c, "migrate", "--from", "contoso-na", "--to", "contoso-eu", "--mailboxes", str(listing))
    assert doc["state"] == "planned"
    plan = doc["result"]["plan"]
    assert plan["moves"] == 40 and plan["skipped"] == 1
    assert plan["skipped_by_reason"] == {"no active mailbox in contoso-eu: cannot move": 1}
    assert plan["requests"]["write_batches"] == 2 and plan["requests"]["operations"] == 80
    assert plan["estimated_seconds"] >= 0
    assert writes(sandbox) == {"contoso-na": 0, "contoso-jp": 0, "contoso-eu": 0}
    assert c.ledger.cases(CaseQuery()).items == ()


# A $batch counts once against the requests (FACTS.md), so the execution time each operation costs is what
# spreads a migration over several windows.
SLOW = {"budget": 20, "window_s": 0.5, "execution_budget_s": 0.5, "execution_cost_s": 0.02}


def test_a_paused_migration_stops_and_resumes_to_the_end(sandbox: httpx.Client, base_url: str, tmp_path: Path):
    chosen, _ = in_both(sandbox, 60)
    sandbox.put("/_sandbox/settings", json=SLOW)  # slow enough to pause mid-way.raise_for_status()
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with api_client(wired(tmp_path, base_url), timeout=30, headers=auth) as http:
        body = {"from": "contoso-na", "to": "contoso-eu", "mailboxes": chosen, "apply": True}
        job_id = http.post("/api/migrations", json=body).json()["id"]
        deadline = time.monotonic() + 30
        while http.get(f"/api/migrations/{job_id}").json()["progress"].get("recorded", 0) == 0:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert http.post(f"/api/migrations/{job_id}/pause").json()["state"] == "paused"
        time.sleep(1.5)
        paused = http.get(f"/api/migrations/{job_id}").json()
        assert paused["state"] == "paused" and paused["progress"]["recorded"] < 60
        assert http.post(f"/api/migrations/{job_id}/resume").status_code == 202
        while (doc := http.get(f"/api/migrations/{job_id}").json())["state"] == "running":
            assert time.monotonic() < deadline + 30
            time.sleep(0.1)
        assert doc["state"] == "done", doc
        assert doc["result"]["moved"] == 60 and doc["result"]["failed"] == 0
        assert http.post(f"/api/migrations/{job_id}/pause").status_code == 409
    assert {exchange(sandbox, a) for a in chosen} == {"contoso-eu"}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("semantics", "delay"),
    [("overwrite", 0.0), ("overwrite", 0.5), ("alert", 0.5), ("disable-other", 0.5)],
    ids=["overwrite-test-in-the-save", "overwrite-test-later", "alert-test-later", "disable-other-test-later"],
)
def test_s3_500_mailboxes_move_under_a_tight_budget_and_survive_a_kill(
    sandbox: httpx.Client, base_url: str, tmp_path: Path, semantics: str, delay: float
):
    sandbox.put("/_sandbox/settings", json={"semantics": semantics, "test_enable_delay_s": delay}).raise_for_status()
    chosen, _ = in_both(sandbox, 500)
    eu_before = {
        MailboxKey.parse(r["emailaddress"]).address: r["testemailconfigurationretrycount"]
        for r in rows(sandbox, "contoso-eu")
    }
    listing = tmp_path / "move.txt"
    listing.write_text("\n".join(chosen) + "\n")
    # tight, as Dataverse counts (FACTS.md): 20 requests a second per org (a $batch counts once) and 5 s of
    # execution time a second (each operation 50 ms, so about 100 operations a second), slow answers
    tight = {"budget": 20, "window_s": 1.0, "execution_budget_s": 5.0, "execution_cost_s": 0.05}
    sandbox.put("/_sandbox/settings", json=tight).raise_for_status()
    for org in ("contoso-na", "contoso-eu"):
        sandbox.put("/_sandbox/settings", json={"org": org, "latency_ms": 150}).raise_for_status()
    ledger_file = tmp_path / "ledger.db"
    env = {
        **os.environ,
        "ORGGUARD_LEDGER": f"sqlite:///{ledger_file}",
        "ORGGUARD_ORGS": str(orgs_file(tmp_path, base_url)),
        "ORGGUARD_POLICY": str(tmp_path / "none.yaml"),
        "PYTHONPATH": str(REPO),
    }
    c = wired(tmp_path, base_url)
    ledger = job_ledger(c.ledger)
    command = [sys.executable, "-m", "functions.console", "migrate", "--from", "contoso-na", "--to", "contoso-eu"]
    process = subprocess.Popen(
        [*command, "--mailboxes", str(listing), "--apply", "--json"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:  # kill it once it is into its second chunk: a batch is in flight
            jobs = ledger.jobs(JobKind.MIGRATION)
            if jobs and jobs[0].progress.get("recorded", 0) > jobs[0].progress.get("settled", 0) > 0:
                break
            assert process.poll() is None, "the migration ended before it could be killed"
            assert time.monotonic() < deadline, "the migration made no progress"
            time.sleep(0.01)
        time.sleep(0.1)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()
    job = ledger.jobs(JobKind.MIGRATION)[0]
    assert job.state is JobState.RUNNING and 0 < job.progress["settled"] < 500  # killed half way

    # the dead worker's leased actions come back when their lease (30 s) runs out; the resumed job
    # first reads back the rows of the batch that was in flight and records what already reached the org
    doc = run_cli(c, "migrate", "--resume", job.id)

    assert doc["state"] == "done"
    for _ in range(3):  # Test & Enable completes after the save (and each old owner synchronizes after it)
        if sandbox.get("/_sandbox/test-enable", params={"wait": 30}).json()["pending"] == 0:
            break
    report = doc["result"]
    assert report["moved"] == 500 and report["failed"] == 0 and report["pending"] == 0
    assert sorted(report["moved_mailboxes"]) == chosen
    for address in chosen:
        key = MailboxKey(address)
        assert c.ledger.mailbox(key).ownership.owner == "contoso-eu"
        cases = c.ledger.cases(CaseQuery(mailbox=key)).items
        assert len(cases) == 1 and {a.status for a in cases[0].actions} == {ActionStatus.APPLIED}
    assert {exchange(sandbox, a) for a in chosen} == {"contoso-eu"}
    na = {MailboxKey.parse(r["emailaddress"]).address: r for r in rows(sandbox, "contoso-na")}
    eu = {MailboxKey.parse(r["emailaddress"]).address: r for r in rows(sandbox, "contoso-eu")}
    assert {na[a]["actdeliverymethod"] for a in chosen} == {2}
    assert {eu[a]["orgmarkedasprimaryforexchangesync"] for a in chosen} == {True}
    # no action twice: every Test & Enable in EU ran exactly once
    assert [a for a in chosen if eu[a]["testemailconfigurationretrycount"] != eu_before[a] + 1] == []
    assert SqliteLedger  # the ledger the CLI wrote is the one read here
