"""Gate decisions: in-process, over HTTP (closed loop and at a fixed rate), and import time.

Baselines run in the same process: for in-process decisions, a bare SQLite
insert-and-commit per request plus ``json.loads`` of the same payload; for
HTTP, ``GET /api/health`` on the same server.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from bench.report import console, header, median, percentile, table

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "gate-test-enable.json"


def payloads(n: int, contested_every: int = 4) -> list[bytes]:
    """n gate payloads from contoso-jp, each a distinct operation on its own mailbox row.

    One in ``contested_every`` names a mailbox contoso-na already owns (seeded by
    ``seed_owners``), so the policy decides a competing claim; the rest are first claims.
    """
    text = FIXTURE.read_text()
    out = []
    for i in range(n):
        address = f"owned{i}@contoso.com" if i % contested_every == 0 else f"user{i}@contoso.com"
        body = (
            text.replace("f1e2d3c4-b5a6-4978-8a9b-0c1d2e3f4a5b", str(uuid.uuid4()))
            .replace("0b3f6d2e-7a91-4c5d-a8e2-6f4b1d9c3e70", str(uuid.uuid4()))
            .replace("Aiko.Tanaka@Contoso.com", address)
        )
        out.append(body.encode())
    return out


def seed_owners(c, n: int, contested_every: int = 4) -> None:  # type: ignore[no-untyped-def]
    from shared.domain.model import Claim, ClaimKind, MailboxKey, Origin

    for i in range(0, n, contested_every):
        key = MailboxKey(f"owned{i}@contoso.com")
        c.service.handle_claim(
            Claim(key, "contoso-na", str(uuid.uuid4()), ClaimKind.SWEEP, Origin.SWEEP, {"operation": f"seed-{i}"})
        )


def _container(tmp: Path):  # type: ignore[no-untyped-def]
    sys.path.insert(0, str(REPO))
    from tests.factories import container

    return container(tmp)


def in_process(n: int = 3000) -> list[list[object]]:
    from shared.domain.model import Origin
    from tests.factories import KEYS

    with tempfile.TemporaryDirectory() as tmp:
        c = _container(Path(tmp))
        seed_owners(c, n)
        bodies = payloads(n)
        key = KEYS["contoso-jp"]
        start = time.perf_counter()
        for body in bodies:
            c.intake.receive_webhook(body, key=key, origin=Origin.GATE)
        ours = time.perf_counter() - start
        c.close()
        db = sqlite3.connect(Path(tmp) / "baseline.db", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v TEXT)")
        start = time.perf_counter()
        for body in bodies:
            doc = json.loads(body)
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO t VALUES (?, ?)", (doc["OperationId"], body.decode()))
            db.execute("COMMIT")
        base = time.perf_counter() - start
    return [
        ["gate decision (parse+decide+commit)", n, n / ours, ours / n * 1e3, ours / base],
        ["baseline: json.loads + one SQLite commit", n, n / base, base / n * 1e3, 1.0],
    ]


SERVER = """
import sys; sys.path.insert(0, {repo!r})
from pathlib import Path
import uvicorn
from functions.http_api import create_api
from shared import bootstrap
from tests.factories import claim, container
from bench.gate import seed_owners
c = container(Path({tmp!r}))
seed_owners(c, {n})
bootstrap.install(c)
uvicorn.run(create_api(), host="127.0.0.1", port={port}, log_level="error", access_log=False)
"""


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _closed_loop(
    url: str, bodies: list[bytes], headers: dict[str, str], concurrency: int
) -> tuple[float, list[float]]:
    latencies: list[float] = []
    queue = list(bodies)
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:

        async def worker() -> None:
            while queue:
                body = queue.pop()
                t0 = time.perf_counter()
                r = await (
                    client.post("/api/dataverse/gate", content=body, headers=headers)
                    if body
                    else client.get("/api/health")
                )
                latencies.append(time.perf_counter() - t0)
                if r.status_code not in (200, 409):
                    raise RuntimeError(f"unexpected {r.status_code}: {r.text[:200]}")

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - start, latencies


async def _open_loop(url: str, bodies: list[bytes], headers: dict[str, str], rate: float) -> list[float]:
    latencies: list[float] = []
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=httpx.Limits(max_connections=64)) as client:

        async def one(body: bytes) -> None:
            t0 = time.perf_counter()
            await (
                client.post("/api/dataverse/gate", content=body, headers=headers) if body else client.get("/api/health")
            )
            latencies.append(time.perf_counter() - t0)

        start = time.perf_counter()
        tasks = []
        for i, body in enumerate(bodies):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(body)))
        await asyncio.gather(*tasks)
    return latencies


def over_http(n: int = 2000, rate: float = 200.0) -> list[list[object]]:
    from tests.factories import KEYS

    headers = {"x-orgguard-key": KEYS["contoso-jp"], "content-type": "application/json"}
    with tempfile.TemporaryDirectory() as tmp:
        port = _free_port()
        script = SERVER.format(repo=str(REPO), tmp=tmp, port=port, n=n + int(rate * 5) + 100)
        proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO)
        url = f"http://127.0.0.1:{port}"
        try:
            _wait(url)
            rows: list[list[object]] = []
            for label, bodies in (("gate POST", payloads(n)), ("baseline: GET /api/health", [b""] * n)):
                asyncio.run(_closed_loop(url, bodies[:100], headers, 8))  # warm up
                elapsed, lat = asyncio.run(_closed_loop(url, bodies, headers, 8))
                paced = asyncio.run(
                    _open_loop(url, payloads(int(rate * 5)) if bodies[0] else [b""] * int(rate * 5), headers, rate)
                )
                rows.append(
                    [
                        label,
                        n,
                        n / elapsed,
                        median(lat) * 1e3,
                        percentile(lat, 99) * 1e3,
                        median(paced) * 1e3,
                        percentile(paced, 99) * 1e3,
                    ]
                )
            return rows
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def with_wrk(seconds: int = 8) -> list[list[object]]:
    """The same server driven by wrk (a C load generator), when it is installed: the server's own ceiling."""
    import re
    import shutil

    from tests.factories import KEYS

    if not shutil.which("wrk"):
        return []
    rows: list[list[object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        port = _free_port()
        proc = subprocess.Popen(
            [sys.executable, "-c", SERVER.format(repo=str(REPO), tmp=tmp, port=port, n=0)], cwd=REPO
        )
        try:
            _wait(f"http://127.0.0.1:{port}")
            env = {**os.environ, "ORGGUARD_FIXTURE": str(FIXTURE), "ORGGUARD_KEY": KEYS["contoso-jp"]}
            for label, args in (
                (
                    "gate POST (each a new mailbox: a ledger write)",
                    ["-s", str(REPO / "bench" / "wrk" / "gate.lua"), f"http://127.0.0.1:{port}/api/dataverse/gate"],
                ),
                ("baseline: GET /api/health", [f"http://127.0.0.1:{port}/api/health"]),
            ):
                out = subprocess.run(
                    ["wrk", "-t1", "-c8", f"-d{seconds}s", "--latency", *args],
                    env=env,
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
                rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
                p50 = re.search(r"50%\s+([\d.]+)(\w+)", out)
                p99 = re.search(r"99%\s+([\d.]+)(\w+)", out)
                rows.append([label, rate, _ms(p50), _ms(p99)])
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    return rows


def _ms(match) -> float:  # type: ignore[no-untyped-def]
    value, unit = float(match.group(1)), match.group(2)
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def _wait(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/api/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("the benchmark server did not start")


def import_time(runs: int = 5) -> list[list[object]]:
    code = "import time; t=time.perf_counter(); import {m}; print(time.perf_counter()-t)"
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "0"}
    rows = []
    for module in ("function_app", "azure.functions"):
        times = []
        for _ in range(runs):
            out = subprocess.run(
                [sys.executable, "-c", code.format(m=module)],
                cwd=REPO,
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            times.append(float(out.stdout.strip()))
        rows.append([f"import {module}", runs, median(times) * 1e3, min(times) * 1e3])
    return rows


def main() -> None:
    header("Gate decisions in-process")
    table(["path", "requests", "per second", "ms each", "x baseline"], in_process())
    header("Gate over HTTP (uvicorn, 1 worker, client with 8 connections; paced at 200 req/s for 5 s)")
    table(
        ["route", "requests", "req/s (closed loop)", "p50 ms", "p99 ms", "p50 ms @200/s", "p99 ms @200/s"], over_http()
    )
    wrk_rows = with_wrk()
    if wrk_rows:
        header("Gate over HTTP driven by wrk (-t1 -c8 -d8s), the same server")
        table(["route", "req/s", "p50 ms", "p99 ms"], wrk_rows)
    header("Cold import (python -c 'import ...', median of 5)")
    table(["what", "runs", "median ms", "best ms"], import_time())
    console.print("Also: python -X importtime -c 'import function_app' 2>&1 | sort -t'|' -k2 -n | tail")
