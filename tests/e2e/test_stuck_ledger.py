"""A stuck ledger over a real server: the gate answers by its deadline, health within a second.

Another OS process holds SQLite's write lock (``BEGIN IMMEDIATE``), as a
backup tool or a hung instance would. Every gate call must still be answered
within ``ORGGUARD_GATE_DEADLINE_S`` plus a little, per ``gate.on_error`` and
saying so; none of those decisions may turn up in the ledger later; health
answers 503 with the reason in under a second; the admin API keeps its
threads; and once the lock goes, the gate decides normally again.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from functions.http_api import create_api
from shared import bootstrap
from tests.factories import ADMIN_TOKEN, KEYS, claim, container, fixture, fixture_bytes, ledger_snapshot
from tests.serving import serve

DEADLINE = 1.5
SLACK = 1.0  # scheduling on a busy two-core machine, the HTTP round trip
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

HOLD_LOCK = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.read()
db.execute("ROLLBACK")
"""


@contextmanager
def write_lock_held(path: Path) -> Iterator[None]:
    """Another process holds the ledger's write lock until the block ends."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        yield
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=10)


def gate_body() -> bytes:
    """Test & Enable from JP on Aiko's mailbox, as a new operation each time."""
    doc = fixture("gate-test-enable.json")
    doc["OperationId"], doc["CorrelationId"], doc["RequestId"] = (str(uuid.uuid4()) for _ in range(3))
    return json.dumps(doc).encode()


def timed(client: httpx.Client, method: str, url: str, **kwargs) -> tuple[float, httpx.Response]:
    started = time.monotonic()
    response = client.request(method, url, **kwargs)
    return time.monotonic() - started, response


@pytest.fixture
def server(tmp_path):
    c = container(tmp_path, gate_deadline_s=DEADLINE)
    c.service.handle_claim(claim("contoso-na", op="seed-owner"))  # NA owns Aiko's mailbox
    bootstrap.install(c)
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    with serve(create_api()) as url, httpx.Client(base_url=url, timeout=20, limits=limits) as client:
        yield client, c, tmp_path / "ledger.db"
    bootstrap.install(None)
    c.close()


def test_a_stuck_ledger_gets_an_answer_by_the_deadline_and_records_nothing(server):
    client, c, path = server
    before = ledger_snapshot(c)
    headers = {"x-orgguard-key": KEYS["contoso-jp"], "content-type": "application/json"}
    bodies = [gate_body() for _ in range(60)]  # more than the server's 40 shared threads
    with write_lock_held(path), ThreadPoolExecutor(max_workers=64) as pool:
        calls = [pool.submit(timed, client, "POST", "/api/dataverse/gate", content=b, headers=headers) for b in bodies]
        time.sleep(0.3)  # the gate calls are waiting for the ledger now
        health_s, health = timed(client, "GET", "/api/health")
        cases_s, cases = timed(client, "GET", "/api/cases", headers=ADMIN)
        event_s, event = timed(client, "POST", "/api/dataverse/events", content=gate_body(), headers=headers)
        answers = [call.result() for call in calls]
        late_health_s, late_health = timed(client, "GET", "/api/health")

    slowest = max(seconds for seconds, _ in answers)
    assert slowest < DEADLINE + SLACK, f"a gate call took {slowest:.2f} s"
    for _, r in answers:
        assert r.status_code == 409, r.text  # gate.on_error is block
        body = r.json()
        assert body["degraded"] is True and body["effect"] == "block" and body.get("case") is None
        assert "could not decide" in body["detail"] and "gate.on_error is block" in body["detail"]
    assert health_s < 1.0 and late_health_s < 1.0
    assert health.status_code == 503 and late_health.status_code == 503
    assert health.json()["checks"]["ledger"]["ok"] is False and health.json()["checks"]["ledger"]["reason"]
    assert cases.status_code == 200 and cases_s < 1.0, "the admin API waited for threads the gate held"
    assert event.status_code == 503 and event_s < DEADLINE + SLACK  # Dataverse retries a 503 once, later

    time.sleep(DEADLINE)  # a decision that missed its deadline must not be committed late
    assert ledger_snapshot(c) == before
    assert not [r for r in c.ledger.claims(claim("contoso-jp").key) if r.org == "contoso-jp"]

    seconds, decided = timed(client, "POST", "/api/dataverse/gate", content=gate_body(), headers=headers)
    assert decided.status_code == 409 and decided.json()["case"] and "degraded" not in decided.json()
    assert seconds < DEADLINE
    assert client.get("/api/health").status_code == 200


def test_on_error_allow_answers_allow_and_says_so(tmp_path):
    c = container(tmp_path, gate_deadline_s=DEADLINE, gate_on_error="allow")
    c.service.handle_claim(claim("contoso-na", op="seed-owner"))
    bootstrap.install(c)
    try:
        with serve(create_api()) as url, httpx.Client(base_url=url, timeout=20) as client:
            headers = {"x-orgguard-key": KEYS["contoso-jp"], "content-type": "application/json"}
            before = ledger_snapshot(c)
            with write_lock_held(tmp_path / "ledger.db"):
                seconds, r = timed(client, "POST", "/api/dataverse/gate", content=gate_body(), headers=headers)
            assert r.status_code == 200 and seconds < DEADLINE + SLACK
            assert r.json()["effect"] == "allow" and r.json()["degraded"] is True
            assert "gate.on_error is allow" in r.json()["detail"]
            time.sleep(DEADLINE)
            assert ledger_snapshot(c) == before  # the allow the caller got was not recorded as a decision
            # the save went on; its asynchronous event finds it, and the case says the gate could not decide
            event = client.post("/api/dataverse/events", content=fixture_bytes("event-post-test-enable.json"),
                                headers=headers)  # fmt: skip
            assert event.status_code == 202 and event.json()["case"], event.text
            found = c.ledger.case(event.json()["case"])
            assert found is not None and found.unheard is not None
            assert (found.unheard.found.value, found.unheard.by.value) == ("gate_degraded", "webhook")
    finally:
        bootstrap.install(None)
        c.close()


@pytest.mark.azurite
def test_a_stalled_table_storage_account_gets_the_same_deadline(tmp_path, azurite):
    """Table Storage that stops answering (a network partition, a throttled account) behind a real proxy."""
    import re

    from shared.config.settings import Settings
    from shared.ledger.tables import TableLedger
    from tests.azurite import connection_string
    from tests.factories import BLOCKING_POLICY, registry
    from tests.proxy import proxy_to

    port = re.search(r"TableEndpoint=http://127\.0\.0\.1:(\d+)", azurite).group(1)
    with proxy_to(f"http://127.0.0.1:{port}") as (proxy, _):
        ledger = TableLedger.from_connection_string(connection_string(proxy.port), prefix=f"s{uuid.uuid4().hex[:12]}")
        settings = Settings(ledger="tables:", orgs="unused", policy=str(tmp_path / "none"), admin_token=ADMIN_TOKEN,
                            gate_deadline_s=DEADLINE)  # fmt: skip
        c = bootstrap.build(settings, ledger=ledger, orgs=registry())
        c.service.save_policy(BLOCKING_POLICY, actor="test")
        c.service.handle_claim(claim("contoso-na", op="seed-owner"))
        bootstrap.install(c)
        headers = {"x-orgguard-key": KEYS["contoso-jp"], "content-type": "application/json"}
        try:
            with serve(create_api()) as url, httpx.Client(base_url=url, timeout=20) as client:
                before = ledger_snapshot(c)
                proxy.stall()
                with ThreadPoolExecutor(max_workers=8) as pool:
                    calls = [
                        pool.submit(timed, client, "POST", "/api/dataverse/gate", content=gate_body(), headers=headers)
                        for _ in range(8)
                    ]
                    health_s, health = timed(client, "GET", "/api/health")
                    answers = [call.result() for call in calls]
                assert max(s for s, _ in answers) < DEADLINE + SLACK
                assert all(r.status_code == 409 and r.json()["degraded"] for _, r in answers)
                assert health_s < 1.0 and health.status_code == 503
                proxy.resume()
                time.sleep(DEADLINE)
                assert ledger_snapshot(c) == before
                seconds, decided = timed(client, "POST", "/api/dataverse/gate", content=gate_body(), headers=headers)
                assert decided.status_code == 409 and decided.json()["case"] and seconds < DEADLINE
        finally:
            bootstrap.install(None)
            ledger.drop_tables()
            c.close()
