"""A soak: the local host under a steady mixed load for some minutes, watched from outside.

``orgguard serve --sandbox`` runs in its own process (in a scratch directory); this process
sends a fixed rate of gate calls (a quarter of them contested), asynchronous events, case
listings and health checks, and reads the server's RSS, open files and threads from /proc
before and after. Latency percentiles are printed per interval; the baseline is the first
interval (a server that degrades over time shows it as a growing ratio).

    python -m bench soak            # 2 minutes at 40 requests/s
    ORGGUARD_SOAK_S=600 ORGGUARD_SOAK_RATE=60 python -m bench soak
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench import knobs
from bench.report import console, header, percentile, table
from bench.sandbox_process import wait_until_up
from sandbox.server import free_port

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
AIKO_ROW = "f1e2d3c4-b5a6-4978-8a9b-0c1d2e3f4a5b"


@dataclass
class Interval:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0


def process_state(pid: int) -> dict[str, float]:
    """RSS (MiB), open file descriptors and threads of ``pid`` (and its children, the sandbox is one process)."""
    status = Path(f"/proc/{pid}/status").read_text()
    values = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {
        "rss_mib": int(values["VmRSS"].split()[0]) / 1024,
        "open_files": len(os.listdir(f"/proc/{pid}/fd")),
        "threads": int(values["Threads"]),
    }


def _payload(name: str, address: str) -> bytes:
    text = (FIXTURES / name).read_text()
    text = text.replace(AIKO_ROW, str(uuid.uuid4())).replace("0b3f6d2e-7a91-4c5d-a8e2-6f4b1d9c3e70", str(uuid.uuid4()))
    return text.replace("Aiko.Tanaka@Contoso.com", address).encode()


async def _one(client: httpx.AsyncClient, n: int, keys: dict[str, str], token: str) -> int:
    kind = n % 10
    if kind < 5:  # gate calls from contoso-jp; every fourth on a mailbox contoso-na owns
        address = f"owned{n % 200}@contoso.com" if n % 4 == 0 else f"soak{n}@contoso.com"
        r = await client.post(
            "/api/dataverse/gate", content=_payload("gate-test-enable.json", address),
            headers={"x-orgguard-key": keys["contoso-jp"], "content-type": "application/json"},
        )  # fmt: skip
        return r.status_code if r.status_code not in (200, 409) else 200
    if kind < 7:
        r = await client.post(
            "/api/dataverse/events", content=_payload("event-post-test-enable.json", f"event{n}@contoso.com"),
            headers={"x-orgguard-key": keys["contoso-jp"], "content-type": "application/json"},
        )  # fmt: skip
        return r.status_code if r.status_code != 202 else 200
    if kind < 9:
        r = await client.get("/api/cases", params={"limit": 20}, headers={"Authorization": f"Bearer {token}"})
        return r.status_code
    return (await client.get("/api/health")).status_code


async def _load(
    base: str, keys: dict[str, str], token: str, seconds: float, rate: float, every: float
) -> list[Interval]:
    intervals: list[Interval] = []
    start = time.perf_counter()
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        # contoso-na owns the mailboxes the contested calls name
        for i in range(0, 200, 4):
            await client.post(
                "/api/dataverse/gate",
                content=_payload("gate-test-enable.json", f"owned{i}@contoso.com").replace(
                    b"8a2d4f60-1c3b-4f7e-b5a9-7d0c9e2f6a12", b"3f0e6c1a-5b7d-4e2a-9c11-2a6f0b8d4e01"
                ),
                headers={"x-orgguard-key": keys["contoso-na"], "content-type": "application/json"},
            )
        tasks: set[asyncio.Task[None]] = set()
        n = 0

        async def timed(i: int, bucket: Interval) -> None:
            t0 = time.perf_counter()
            try:
                status = await _one(client, i, keys, token)
            except httpx.HTTPError:
                status = 0
            bucket.latencies.append((time.perf_counter() - t0) * 1000)
            if status >= 400 or status == 0:
                bucket.errors += 1

        while (elapsed := time.perf_counter() - start) < seconds:
            index = int(elapsed // every)
            while len(intervals) <= index:
                intervals.append(Interval())
            task = asyncio.create_task(timed(n, intervals[index]))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            n += 1
            await asyncio.sleep(max(0.0, start + n / rate - time.perf_counter()) + random.uniform(0, 0.1 / rate))
        await asyncio.gather(*tasks)
    return intervals


def main() -> None:
    seconds = knobs.amount("ORGGUARD_SOAK_S", 120.0, minimum=1.0, unit="seconds")
    rate = knobs.amount("ORGGUARD_SOAK_RATE", 40.0, minimum=0.1, unit="claims per second")
    every = max(5.0, seconds / 8)
    header(f"Soak: the local host under {rate:.0f} mixed requests/s for {seconds:.0f} s")
    port, sandbox_port = free_port(), free_port()
    orgguard = REPO / ".venv" / "bin" / "orgguard"
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "ORGGUARD_ADMIN_TOKEN": "soak-admin-token"}
        server = subprocess.Popen(
            [str(orgguard), "serve", "--sandbox", "--port", str(port), "--sandbox-port", str(sandbox_port)],
            cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            base = f"http://127.0.0.1:{port}"
            try:
                wait_until_up(f"{base}/api/health", server, timeout=60)
            except RuntimeError:
                raise SystemExit("the local host did not start") from None
            keys = json.loads((Path(tmp) / ".orgguard" / "keys.json").read_text())
            token_file = Path(tmp) / ".orgguard" / "admin-token"
            token = env["ORGGUARD_ADMIN_TOKEN"]
            if token_file.exists() and httpx.get(
                f"{base}/api/cases", headers={"Authorization": f"Bearer {token}"}
            ).status_code in (401, 403):
                token = token_file.read_text().strip()  # an OrgGuard that still prefers its generated token
            before = process_state(server.pid)
            intervals = asyncio.run(_load(base, keys, token, seconds, rate, every))
            time.sleep(1)
            after = process_state(server.pid)
        finally:
            server.terminate()
            server.wait(timeout=30)
    first = intervals[0].latencies if intervals else []
    base_p99 = percentile(first, 99)
    rows: list[list[object]] = []
    for i, bucket in enumerate(intervals):
        p99 = percentile(bucket.latencies, 99)
        rows.append([f"{i * every:.0f}-{(i + 1) * every:.0f} s", len(bucket.latencies), bucket.errors,
                     percentile(bucket.latencies, 50), percentile(bucket.latencies, 95), p99,
                     f"{p99 / base_p99:.2f}x" if base_p99 else "-"])  # fmt: skip
    table(["interval", "requests", "errors", "p50 ms", "p95 ms", "p99 ms", "p99 / first"], rows)
    growth = [[name, before[name], after[name], f"{after[name] / before[name]:.2f}x"] for name in before]
    table(["server process", "before", "after", "after / before"], growth)
    console.print("errors: statuses other than the intended answers (gate 200/409, events 202, reads 200)")
