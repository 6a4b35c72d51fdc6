"""`orgguard sweep`, `migrate` and `migrations` as an operator runs them, on the ledger and through the API (--url).

Each command is written once over the operations port; every test here runs both
ways against the simulated orgs: a sweep's report, a reviewed plan applied as
planned, a stale or spent plan refused, migrations named by a prefix of their id.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from functions.console import app
from shared.domain.model import CaseQuery, MailboxKey
from tests.factories import ADMIN_TOKEN
from tests.hosting import api_url, installed
from tests.jobs_support import ADMIN, API, exchange, rows, wired, writes

pytestmark = pytest.mark.sandbox

SANDBOX_SEED = {"mailboxes": 200, "overlap": 0.8}


@pytest.fixture(params=["ledger", "api"])
def way(request: pytest.FixtureRequest, tmp_path: Path, base_url: str, sandbox: httpx.Client, monkeypatch):
    """(container, extra CLI arguments): on the ledger directly, or through a real API on a free port."""
    monkeypatch.setenv("ORGGUARD_ADMIN_TOKEN", ADMIN_TOKEN)
    monkeypatch.delenv("ORGGUARD_URL", raising=False)
    c = wired(tmp_path, base_url)
    if request.param == "api":
        with api_url(c) as url:
            yield c, ["--url", url]
    else:
        with installed(c):
            yield c, []


def cli(way: tuple[Any, list[str]], *args: str) -> Any:
    result = CliRunner().invoke(app, [*args, *way[1]])
    assert "Traceback" not in result.output, result.output
    return result


def moving(sandbox: httpx.Client, tmp_path: Path, n: int) -> tuple[Path, list[str]]:
    """A file of ``n`` addresses active in both NA and EU."""

    def active(org: str) -> set[str]:
        return {MailboxKey.parse(r["emailaddress"]).address for r in rows(sandbox, org) if r["statecode"] == 0}

    chosen = sorted(active("contoso-na") & active("contoso-eu"))[:n]
    assert len(chosen) == n
    listing = tmp_path / "moving.txt"
    listing.write_text("\n".join(chosen) + "\n")
    return listing, chosen


def plan(way: tuple[Any, list[str]], listing: Path) -> dict[str, Any]:
    result = cli(way, "migrate", "--from", "contoso-na", "--to", "contoso-eu", "--mailboxes", str(listing), "--json")
    assert result.exit_code == 0, result.output
    doc: dict[str, Any] = json.loads(result.stdout)
    assert doc["state"] == "planned"
    return doc


def test_a_reviewed_plan_is_applied_as_planned(way, sandbox: httpx.Client, tmp_path: Path):
    c, _ = way
    listing, chosen = moving(sandbox, tmp_path, 12)
    planned = plan(way, listing)
    assert planned["result"]["plan"]["moves"] == 12 and writes(sandbox) == dict.fromkeys(writes(sandbox), 0)
    human = cli(way, "migrations", "show", planned["id"][:8])
    assert f"orgguard migrate --apply --plan {planned['id'][:8]}" in human.stdout

    applied = cli(way, "migrate", "--apply", "--plan", planned["id"][:8], "--json")
    assert applied.exit_code == 0, applied.output
    job = json.loads(applied.stdout)
    assert job["state"] == "done" and job["params"]["plan"] == planned["id"]
    assert sorted(job["result"]["moved_mailboxes"]) == chosen and job["result"]["failed"] == 0
    assert {exchange(sandbox, a) for a in chosen} == {"contoso-eu"}
    shown = json.loads(cli(way, "migrations", "show", planned["id"][:8], "--json").stdout)
    assert shown["result"]["applied_by"] == job["id"]

    again = cli(way, "migrate", "--apply", "--plan", planned["id"])
    assert again.exit_code == 1 and f"already applied by migration {job['id']}" in again.stderr
    not_a_plan = cli(way, "migrate", "--apply", "--plan", job["id"][:8])
    assert not_a_plan.exit_code == 1 and "not a plan" in not_a_plan.stderr
    assert len(c.ledger.cases(CaseQuery(limit=100)).items) == 12  # one case a mailbox, whatever was asked again


def test_a_stale_plan_is_refused_and_moves_nothing(way, sandbox: httpx.Client, tmp_path: Path):
    c, _ = way
    listing, chosen = moving(sandbox, tmp_path, 6)
    planned = plan(way, listing)
    eu_row = next(  # since the review, EU's row was deactivated
        r for r in rows(sandbox, "contoso-eu") if MailboxKey.parse(r["emailaddress"]).address == chosen[0]
    )
    patched = sandbox.patch(
        API.format(org="contoso-eu") + f"mailboxes({eu_row['mailboxid']})", json={"statecode": 1}, headers=ADMIN
    )
    assert patched.status_code == 204
    sandbox.delete("/_sandbox/requests")

    result = cli(way, "migrate", "--apply", "--plan", planned["id"][:8])
    assert result.exit_code == 1
    assert f"the plan of migration {planned['id']} is stale" in result.stderr and "6 moves then, 5 now" in result.stderr
    assert c.ledger.cases(CaseQuery()).items == ()
    assert writes(sandbox) == {"contoso-na": 0, "contoso-jp": 0, "contoso-eu": 0}


def test_migrations_are_named_by_a_prefix_and_usage_errors_exit_2(way, sandbox: httpx.Client, tmp_path: Path):
    listing, _ = moving(sandbox, tmp_path, 2)
    planned = plan(way, listing)
    listed = cli(way, "migrations", "list")
    assert listed.exit_code == 0 and planned["id"][:8] in listed.stdout
    assert json.loads(cli(way, "migrations", "show", planned["id"][:6], "--json").stdout)["id"] == planned["id"]
    missing = cli(way, "migrations", "show", "zzzz")
    assert missing.exit_code == 1 and missing.stderr.strip() == "error: no migration starts with 'zzzz'"
    paused = cli(way, "migrations", "pause", planned["id"][:8])
    assert paused.exit_code == 1 and "planned" in paused.stderr  # a finished plan cannot be paused
    for args in (
        ["migrate", "--plan", planned["id"]],  # --plan without --apply
        ["migrate", "--apply", "--plan", planned["id"], "--from", "contoso-na"],
        ["migrate", "--resume", planned["id"], "--plan", planned["id"], "--apply"],
        ["migrate", "--from", "contoso-na", "--to", "contoso-eu"],
        ["migrate", "--from", "contoso-na", "--to", "contoso-eu", "--mailboxes", str(tmp_path / "none.txt")],
    ):
        assert cli(way, *args).exit_code == 2, args


def test_a_sweep_reports_the_same_both_ways(way, sandbox: httpx.Client, tmp_path: Path):
    c, _ = way
    result = cli(way, "sweep", "--json", "--csv", str(tmp_path / "sweep.csv"))
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    syncing: dict[str, set[str]] = {}
    for org in ("contoso-na", "contoso-jp", "contoso-eu"):
        for row in rows(sandbox, org):
            if row["statecode"] == 0 and row["actdeliverymethod"] == 1:
                syncing.setdefault(MailboxKey.parse(row["emailaddress"]).address, set()).add(org)
    several = {address for address, orgs in syncing.items() if len(orgs) > 1}
    assert {f["mailbox"] for f in doc["conflicts"] if "multi_org" in f["kinds"]} == several
    assert doc["conflicts_total"] == len(doc["conflicts"]) and doc["apply"] is False
    with (tmp_path / "sweep.csv").open(encoding="utf-8") as handle:
        assert [r["mailbox"] for r in csv.DictReader(handle)] == [f["mailbox"] for f in doc["conflicts"]]
    assert c.ledger.cases(CaseQuery()).items == ()  # a sweep without --apply writes nothing
    human = cli(way, "sweep", "--org", "contoso-jp", "--org", "contoso-eu")
    assert human.exit_code == 0 and "finding(s) found (nothing written; --apply acts)" in human.stdout
    unknown = cli(way, "sweep", "--org", "contoso-xx")
    assert unknown.exit_code == 1 and "'contoso-xx' is not a registered org" in unknown.stderr
