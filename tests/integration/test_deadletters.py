"""Dead letters for operators: the API on a real socket (roles, refusals, concurrency), the CLI on the local
queue and through the API, and the counts on ``/api/health``. The queue is the local one, for real."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from functions.console import app
from functions.http_api import create_api
from shared import bootstrap
from shared.bus.port import Message, Received
from tests.factories import ADMIN_TOKEN, BLOCKING_POLICY, container, easyauth_principal, registry
from tests.serving import serve

runner = CliRunner()
NOBODY = "http://127.0.0.1:9"


def build(tmp_path: Path, *, bus: bool = True, auth: str = "token") -> bootstrap.Container:
    bus_url = f"sqlite:///{tmp_path / 'bus.db'}" if bus else None
    return container(tmp_path, BLOCKING_POLICY, orgs=registry(NOBODY), auth=auth, bus=bus_url)


def poison(c: bootstrap.Container) -> tuple[str, str]:
    """A Dataverse message rejected as malformed and a work message dead-lettered after its last delivery."""
    assert c.bus.inbound is not None and c.bus.work is not None
    c.bus.inbound.reject(
        Received(b"{oops", "dv-1", None, {"p": "v"}, delivery_count=1), "malformed", "the body is not JSON"
    )
    c.bus.work.send([Message(b'{"case": "c-1"}', "w-1", "mbx-1", {"kind": "orgguard.work"})])
    for _ in range(3):
        (d,) = c.bus.work.receive()
        c.bus.work.abandon(d)
    (inbound,) = c.bus.inbound.dead_letters()
    (work,) = c.bus.work.dead_letters()
    return inbound.id, work.id


@pytest.fixture
def hosted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    c = build(tmp_path)
    bootstrap.install(c)
    monkeypatch.setenv("ORGGUARD_ADMIN_TOKEN", ADMIN_TOKEN)
    monkeypatch.delenv("ORGGUARD_URL", raising=False)
    monkeypatch.delenv("ORGGUARD_API_SCOPE", raising=False)
    try:
        with serve(create_api()) as url:
            yield c, url, httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30)
    finally:
        bootstrap.install(None)
        c.close()


def test_an_operator_lists_shows_replays_and_purges_through_the_api(hosted) -> None:
    c, _, http = hosted
    inbound_id, work_id = poison(c)
    listed = http.get("/api/deadletters").json()
    assert [(d["id"], d["reason"]) for d in listed["items"]] == [
        (work_id, "MaxDeliveryCountExceeded"),
        (inbound_id, "malformed"),
    ]
    assert listed["items"][0]["case"] == "c-1" and listed["items"][0]["session"] == "mbx-1"
    assert listed["counts"]["total"] == 2 and listed["counts"]["queues"]["dataverse"]["dead"] == 1
    shown = http.get(f"/api/deadletters/{inbound_id}").json()
    assert (shown["body"], shown["body_encoding"], shown["properties"]) == ("{oops", "utf-8", {"p": "v"})
    assert shown["description"] == "the body is not JSON"

    replayed = http.post(f"/api/deadletters/{work_id}/replay")
    assert replayed.status_code == 200 and replayed.json()["replayed"]["id"] == work_id
    (back,) = c.bus.work.receive()
    assert (back.message_id, back.session, back.delivery_count) == ("w-1", "mbx-1", 1)
    again = http.post(f"/api/deadletters/{work_id}/replay")
    assert again.status_code == 404 and again.headers["content-type"] == "application/problem+json"

    purged = http.delete(f"/api/deadletters/{inbound_id}")
    assert purged.status_code == 200 and purged.json()["purged"]["reason"] == "malformed"
    assert http.get("/api/deadletters").json()["items"] == []
    kinds = [e.event.kind for e in c.ledger.audit_entries()]
    assert kinds[-2:] == ["deadletter.replayed", "deadletter.purged"]  # who did what, in the audit log


@pytest.mark.parametrize(
    ("method", "path", "status", "field"),
    [
        ("GET", "/api/deadletters?limit=0", 400, None),
        ("GET", "/api/deadletters?limit=501", 400, None),
        ("GET", "/api/deadletters?queue=nope", 400, "queue"),
        ("GET", "/api/deadletters/work-999", 404, "id"),
        ("GET", "/api/deadletters/elsewhere-1", 404, "id"),
        ("POST", "/api/deadletters/work-999/replay", 404, "id"),
        ("POST", "/api/deadletters/work%201/replay", 400, None),
        ("DELETE", "/api/deadletters/dataverse-x", 404, "id"),
        ("DELETE", "/api/deadletters/" + "w" * 200, 400, None),
    ],
)
def test_a_bad_request_is_refused_with_problem_json_and_changes_nothing(hosted, method, path, status, field) -> None:
    c, _, http = hosted
    poison(c)
    before = http.get("/api/deadletters").json()
    answer = http.request(method, path)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    if field:
        assert answer.json()["field"] == field
    assert http.get("/api/deadletters").json() == before


def test_of_two_admins_replaying_one_dead_letter_at_once_one_does_it(hosted) -> None:
    c, url, _ = hosted
    _, work_id = poison(c)
    answers: list[int] = []
    barrier = threading.Barrier(2)

    def replay() -> None:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30) as mine:
            barrier.wait()
            answers.append(mine.post(f"/api/deadletters/{work_id}/replay").status_code)

    threads = [threading.Thread(target=replay) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(answers) == [200, 404]
    assert len(c.bus.work.receive(max_messages=5)) == 1


def test_a_reader_lists_but_only_an_admin_replays_or_purges(tmp_path: Path) -> None:
    c = build(tmp_path, auth="easyauth")
    bootstrap.install(c)
    try:
        _, work_id = poison(c)
        with serve(create_api()) as url, httpx.Client(base_url=url, timeout=30) as http:
            reader = {"X-MS-CLIENT-PRINCIPAL": easyauth_principal("rita", "OrgGuard.Reader")}
            approver = {"X-MS-CLIENT-PRINCIPAL": easyauth_principal("abe", "OrgGuard.Approver")}
            admin = {"X-MS-CLIENT-PRINCIPAL": easyauth_principal("ada", "OrgGuard.Admin")}
            assert http.get("/api/deadletters").status_code == 401
            assert http.get("/api/deadletters", headers=reader).status_code == 200
            assert http.post(f"/api/deadletters/{work_id}/replay", headers=approver).status_code == 403
            assert http.delete(f"/api/deadletters/{work_id}", headers=reader).status_code == 403
            assert len(c.bus.work.dead_letters()) == 1
            assert http.post(f"/api/deadletters/{work_id}/replay", headers=admin).status_code == 200
        (entry,) = [e.event for e in c.ledger.audit_entries() if e.event.kind == "deadletter.replayed"]
        assert (entry.actor, entry.subject) == ("ada", work_id)
    finally:
        bootstrap.install(None)
        c.close()


def test_without_a_queue_there_are_no_dead_letters_and_it_says_why(tmp_path: Path) -> None:
    c = build(tmp_path, bus=False)
    bootstrap.install(c)
    try:
        with serve(create_api()) as url, httpx.Client(base_url=url, timeout=30) as http:
            answer = http.get("/api/deadletters", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
            assert answer.status_code == 404 and "ORGGUARD_BUS" in answer.json()["detail"]
            assert "deadletters" not in http.get("/api/health").json()
    finally:
        bootstrap.install(None)
        c.close()


def test_health_counts_the_dead_letters_and_stays_healthy(hosted) -> None:
    c, _, http = hosted
    poison(c)
    health = http.get("/api/health")
    assert health.status_code == 200
    doc = health.json()
    assert doc["ok"] is True
    assert doc["deadletters"]["total"] == 2 and doc["deadletters"]["known"] is True
    assert doc["deadletters"]["queues"]["work"]["dead"] == 1


# --- the command line --------------------------------------------------------------------------------


def cli(*args: str) -> Any:
    result = runner.invoke(app, list(args))
    assert "Traceback" not in result.output
    return result


def test_the_cli_lists_shows_replays_and_purges_through_the_api(hosted) -> None:
    c, url, _ = hosted
    inbound_id, work_id = poison(c)
    listed = cli("deadletters", "list", "--url", url, "--json")
    assert listed.exit_code == 0, listed.stderr
    assert [d["id"] for d in json.loads(listed.stdout)["items"]] == [work_id, inbound_id]
    table = cli("deadletters", "list", "--url", url)
    assert work_id in table.stdout and "2 dead letter(s) (work: 1, dataverse: 1)" in table.stdout
    shown = cli("deadletters", "show", inbound_id, "--url", url)
    assert "the body is not JSON" in shown.stdout and "{oops" in shown.stdout
    assert cli("deadletters", "replay", work_id, "--url", url).exit_code == 0
    gone = cli("deadletters", "replay", work_id, "--url", url)
    assert gone.exit_code == 1 and "404" in gone.stderr and len(gone.stderr.strip().splitlines()) == 1
    assert cli("deadletters", "purge", inbound_id, "--url", url).exit_code == 0
    assert json.loads(cli("deadletters", "list", "--url", url, "--json").stdout)["items"] == []


def test_the_cli_works_on_this_machines_queue_after_make_run(tmp_path: Path, monkeypatch) -> None:
    """Run from the project folder after `make run`: the queue under .orgguard/ is found by itself."""
    local = tmp_path / ".orgguard"
    local.mkdir()
    (local / "orgs.yaml").write_text("orgs: []\n", encoding="utf-8")
    c = build(local)
    c.ledger.close()
    _, work_id = poison(c)
    c.close()
    monkeypatch.chdir(tmp_path)
    for name in ("ORGGUARD_URL", "ORGGUARD_BUS", "ORGGUARD_ORGS", "ORGGUARD_LEDGER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ORGGUARD_LEDGER", f"sqlite:///{local / 'ledger.db'}")
    bootstrap.install(None)
    try:
        listed = cli("deadletters", "list", "--json")
        assert listed.exit_code == 0, listed.stderr
        assert work_id in [d["id"] for d in json.loads(listed.stdout)["items"]]
        assert cli("deadletters", "purge", work_id).exit_code == 0
        missing = cli("deadletters", "show", work_id)
        assert missing.exit_code == 1 and missing.stderr.startswith("error:")
        bad = cli("deadletters", "list", "--limit", "0")
        assert bad.exit_code == 2
    finally:
        bootstrap.install(None)
