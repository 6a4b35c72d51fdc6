"""The sweep against the sandbox's orgs over their Web API: S2, and a dry run that writes nothing."""

from __future__ import annotations

import asyncio
import csv
import json
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from functions.console import app
from shared import bootstrap
from shared.domain.jobs import JobKind, JobState
from shared.domain.model import CaseQuery, MailboxKey
from shared.ledger.port import job_ledger
from tests.factories import ADMIN_TOKEN, AIKO
from tests.hosting import api_client, installed
from tests.jobs_support import ADMIN, API, exchange, row_for, rows, wired, writes

pytestmark = pytest.mark.sandbox

SANDBOX_SEED = {"mailboxes": 60, "overlap": 0.3}
AIKO_ADDRESS = "Aiko.Tanaka@Contoso.com"


def policy_designating(org: str) -> str:
    return f"""
version: 1
mode: enforce
default: hold
primary:
  - when: {{mailbox.address: [aiko.tanaka@contoso.com]}}
    org: {org}
rules:
  - id: designated-primary
    effect: prefer-primary
"""


SEMANTICS = ["overwrite", "alert", "disable-other"]
DELAYS = [0.0, 0.3]  # Test & Enable inside the save, or completing later as in Dataverse (FACTS.md)


def jp_fails_with_the_alert(sandbox: httpx.Client, *, semantics: str = "overwrite", delay: float = 0.0) -> None:
    """S2: JP's admin runs Test & Enable while Exchange holds NA; JP tests under the alert semantics (the others
    under ``semantics``), and the test completes ``delay`` seconds after the save."""
    sandbox.put("/_sandbox/settings", json={"semantics": semantics, "test_enable_delay_s": delay}).raise_for_status()
    sandbox.put("/_sandbox/settings", json={"org": "contoso-jp", "semantics": "alert"}).raise_for_status()
    jp = row_for(sandbox, "contoso-jp", AIKO_ADDRESS)
    answer = sandbox.patch(
        API.format(org="contoso-jp") + f"mailboxes({jp['mailboxid']})",
        json={"testemailconfigurationscheduled": True},
        headers=ADMIN,
    )
    assert answer.status_code == 204, answer.text
    tests_done(sandbox)
    assert row_for(sandbox, "contoso-jp", AIKO_ADDRESS)["actstatus"] == 2
    assert exchange(sandbox, AIKO_ADDRESS) == "contoso-na"


def tests_done(sandbox: httpx.Client) -> None:
    """Every pending Test & Enable (and each old owner's synchronization after it) has run."""
    for _ in range(3):  # a test that takes a mailbox over schedules the old owner's synchronization
        jobs = sandbox.get("/_sandbox/test-enable", params={"wait": 10}).json()
        if jobs["pending"] == 0:
            return
    raise AssertionError("Test & Enable jobs still pending")


def sweep(c: bootstrap.Container, *, apply: bool, orgs: list[str] | None = None) -> tuple[object, object]:
    jobs = c.jobs()
    return asyncio.run(jobs.run_sweep(jobs.start_sweep(orgs or [], apply=apply, actor="test")))


@pytest.mark.parametrize("delay", DELAYS, ids=["test-in-the-save", "test-completing-later"])
@pytest.mark.parametrize("semantics", SEMANTICS)
def test_s2_alert_in_jp_with_jp_designated_is_repaired_in_jp(
    sandbox: httpx.Client, base_url: str, tmp_path: Path, semantics: str, delay: float
):
    jp_fails_with_the_alert(sandbox, semantics=semantics, delay=delay)
    c = wired(tmp_path, base_url, policy_designating("contoso-jp"))
    job, result = sweep(c, apply=True)
    tests_done(sandbox)  # the repair's Test & Enable, and NA's synchronization after JP took the mailbox over
    assert job.state is JobState.DONE
    aiko = next(f for f in result.conflicts if f["mailbox"] == AIKO.address)
    assert "alert" in aiko["kinds"] and aiko["failing"] == ["contoso-jp"] and aiko["winner"] == "contoso-jp"
    jp, na = row_for(sandbox, "contoso-jp", AIKO_ADDRESS), row_for(sandbox, "contoso-na", AIKO_ADDRESS)
    assert jp["orgmarkedasprimaryforexchangesync"] is True and jp["actdeliverymethod"] == 1
    assert jp["actstatus"] == 1
    assert na["actdeliverymethod"] == 2 and na["orgmarkedasprimaryforexchangesync"] is False
    assert exchange(sandbox, AIKO_ADDRESS) == "contoso-jp"
    assert c.ledger.mailbox(AIKO).ownership.owner == "contoso-jp"
    assert_settled(c)


def assert_settled(c: bootstrap.Container) -> None:
    """The repair's case is applied, and a second sweep finds nothing left to do for the mailbox."""
    (case,) = c.ledger.cases(CaseQuery(mailbox=AIKO)).items
    assert case.state.value == "applied", case.history
    _, again = sweep(c, apply=False)
    assert [f for f in again.conflicts if f["mailbox"] == AIKO.address] == []


@pytest.mark.parametrize("delay", DELAYS, ids=["test-in-the-save", "test-completing-later"])
@pytest.mark.parametrize("semantics", SEMANTICS)
def test_s2_alert_in_jp_with_na_designated_is_repaired_in_na(
    sandbox: httpx.Client, base_url: str, tmp_path: Path, semantics: str, delay: float
):
    jp_fails_with_the_alert(sandbox, semantics=semantics, delay=delay)
    before = row_for(sandbox, "contoso-na", AIKO_ADDRESS)
    c = wired(tmp_path, base_url, policy_designating("contoso-na"))
    sweep(c, apply=True)
    tests_done(sandbox)
    jp, na = row_for(sandbox, "contoso-jp", AIKO_ADDRESS), row_for(sandbox, "contoso-na", AIKO_ADDRESS)
    assert na["orgmarkedasprimaryforexchangesync"] is True and na["actdeliverymethod"] == 1
    assert na["testemailconfigurationretrycount"] == before["testemailconfigurationretrycount"] + 1  # Test & Enable ran
    assert jp["actdeliverymethod"] == 2
    assert exchange(sandbox, AIKO_ADDRESS) == "contoso-na"
    assert c.ledger.mailbox(AIKO).ownership.owner == "contoso-na"
    case = c.ledger.cases(CaseQuery(mailbox=AIKO)).items[0]
    assert case.state.value == "applied" and case.decision.rule == "designated-primary"
    assert_settled(c)


@pytest.mark.parametrize("semantics", SEMANTICS)
def test_s2_a_second_sweep_while_the_repair_s_test_is_pending_does_not_repair_it_again(
    sandbox: httpx.Client, base_url: str, tmp_path: Path, semantics: str
):
    """The repair schedules Test & Enable in JP; until it runs, JP's status is still the old test's Failure."""
    jp_fails_with_the_alert(sandbox, semantics=semantics)
    sandbox.put("/_sandbox/settings", json={"test_enable_delay_s": 3600}).raise_for_status()  # held back
    c = wired(tmp_path, base_url, policy_designating("contoso-jp"))
    sweep(c, apply=True)
    _, again = sweep(c, apply=True)
    assert [f for f in again.conflicts if f["mailbox"] == AIKO.address] == []
    assert len(c.ledger.cases(CaseQuery(mailbox=AIKO)).items) == 1  # one repair, one Test & Enable
    sandbox.post("/_sandbox/test-enable/run").raise_for_status()
    assert exchange(sandbox, AIKO_ADDRESS) == "contoso-jp"
    assert row_for(sandbox, "contoso-jp", AIKO_ADDRESS)["actstatus"] == 1
    assert_settled(c)


def test_a_sweep_without_apply_changes_nothing_and_reports_every_conflict(
    sandbox: httpx.Client, base_url: str, tmp_path: Path
):
    jp_fails_with_the_alert(sandbox)
    before = {org: rows(sandbox, org) for org in ("contoso-na", "contoso-jp", "contoso-eu")}
    sandbox.delete("/_sandbox/requests")
    c = wired(tmp_path, base_url, policy_designating("contoso-jp"))
    bootstrap.install(c)
    try:
        answer = CliRunner().invoke(app, ["sweep", "--json", "--csv", str(tmp_path / "sweep.csv")])
    finally:
        bootstrap.install(None)
    assert answer.exit_code == 0, answer.output
    doc = json.loads(answer.stdout)
    assert writes(sandbox) == {"contoso-na": 0, "contoso-jp": 0, "contoso-eu": 0}
    assert {org: rows(sandbox, org) for org in before} == before
    assert exchange(sandbox, AIKO_ADDRESS) == "contoso-na"
    assert c.ledger.cases(CaseQuery()).items == () and c.ledger.mailbox(AIKO).ownership is None
    # What Exchange-side truth says is in several orgs, the sweep reports: every active, syncing address
    syncing: dict[str, set[str]] = {}
    for org, org_rows in before.items():
        for row in org_rows:
            if row["statecode"] == 0 and row["actdeliverymethod"] == 1:
                syncing.setdefault(MailboxKey.parse(row["emailaddress"]).address, set()).add(org)
    expected = {key for key, orgs in syncing.items() if len(orgs) > 1}
    reported = {f["mailbox"]: set(f["orgs"]) for f in doc["conflicts"] if "multi_org" in f["kinds"]}
    assert set(reported) == expected and all(reported[k] == syncing[k] for k in expected)
    assert doc["orgs"] == 3 and doc["mailboxes"] == sum(len(o) for o in syncing.values())
    assert doc["multi_org"] == len(expected) and doc["alert"] >= 1
    assert doc["requests"] >= 3 and doc["apply"] is False
    aiko = next(f for f in doc["conflicts"] if f["mailbox"] == AIKO.address)
    assert aiko["winner"] == "contoso-jp" and aiko["cases"] == []
    with (tmp_path / "sweep.csv").open(encoding="utf-8") as handle:
        assert len(list(csv.DictReader(handle))) == len(doc["conflicts"])


def test_sweep_apply_settles_multi_org_conflicts_per_policy(sandbox: httpx.Client, base_url: str, tmp_path: Path):
    c = wired(tmp_path, base_url, "version: 1\nmode: enforce\ndefault: block\nrules: []\n")
    _, result = sweep(c, apply=True)
    multi = [f for f in result.conflicts if "multi_org" in f["kinds"]]
    assert multi and result.applied > 0 and result.failed == 0
    for finding in multi:
        owner = c.ledger.mailbox(MailboxKey(finding["mailbox"])).ownership.owner
        assert owner == finding["winner"]
        others = [o for o in finding["orgs"] if o != owner]
        for org in others:  # blocked claimants are at None now
            assert all(
                r["actdeliverymethod"] == 2
                for r in rows(sandbox, org)
                if r["statecode"] == 0 and MailboxKey.parse(r["emailaddress"]).address == finding["mailbox"]
            )
    # a second sweep finds no conflict left
    _, again = sweep(c, apply=False)
    assert [f for f in again.conflicts if "multi_org" in f["kinds"]] == []


def test_post_sweeps_runs_in_the_background_and_reports(sandbox: httpx.Client, base_url: str, tmp_path: Path):
    with api_client(wired(tmp_path, base_url, policy_designating("contoso-jp")), timeout=30) as http:
        auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        started = http.post("/api/sweeps", json={"apply": False}, headers=auth)
        assert started.status_code == 202, started.text
        job_id = started.json()["id"]
        for _ in range(200):
            doc = http.get(f"/api/sweeps/{job_id}", headers=auth).json()
            if doc["state"] != "running":
                break
            asyncio.run(asyncio.sleep(0.05))
        assert doc["progress"]["phase"] == "done", doc
        assert doc["result"]["multi_org"] > 0 and doc["result"]["apply"] is False
        assert http.get("/api/sweeps/nope", headers=auth).status_code == 404
        assert http.post("/api/sweeps", json={"apply": True}).status_code == 401


def test_the_sweep_timer_repairs_only_when_told_to(
    sandbox: httpx.Client, base_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The Function App's timer, called with a real TimerRequest: a dry run by default, a repair with APPLY."""
    from azure.functions.timer import TimerRequest

    from functions import timers

    jp_fails_with_the_alert(sandbox)
    with installed(wired(tmp_path, base_url, policy_designating("contoso-na"))) as c:
        assert not c.settings.sweep_apply  # ORGGUARD_SWEEP_APPLY unset
        timers.sweep(TimerRequest(past_due=False, schedule_status={}, schedule={}))
        assert row_for(sandbox, "contoso-jp", AIKO_ADDRESS)["actdeliverymethod"] == 1  # looked, wrote nothing
        assert job_ledger(c.ledger).jobs(JobKind.SWEEP)[0].state is JobState.DONE

        c.settings = c.settings.model_copy(update={"sweep_apply": True})  # as ORGGUARD_SWEEP_APPLY=true sets it
        timers.sweep(TimerRequest(past_due=True, schedule_status={}, schedule={}))
        assert row_for(sandbox, "contoso-jp", AIKO_ADDRESS)["actdeliverymethod"] == 2
        assert exchange(sandbox, AIKO_ADDRESS) == "contoso-na"
