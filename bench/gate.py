"""Gate decisions, held to the performance issue's goals: in-process, over HTTP, and import time.

What each figure is, so that none flatters:

* **The claims** are a stated mix (``MIX``): first claims on mailboxes nobody owns,
  competing claims on mailboxes contoso-na owns (the example policy holds them: a
  case is written), and repeated deliveries of a claim already decided (the
  cheaper duplicate path). No body of the measured run was sent in the warm-up.
* **The policy** is ``examples/policy.yaml``, the one ``make run`` starts with.
  Its ``user.*`` designations would ask Microsoft Graph; no directory is
  configured here, so they are unknown and the decision says so (README, "Graph").
* **In-process** CPU is the process's (the checkpoint thread's work included),
  per decision, against ``json.loads`` of the same bodies plus one SQLite WAL
  commit each. Latency percentiles are per decision with ``LEDGER_MAILBOXES``
  mailboxes (and as many claims and events) in the ledger, bulk-loaded into its
  own schema before the run.
* **Over HTTP** the server is uvicorn with one worker; the baseline is a bare
  FastAPI endpoint (``POST`` answering a constant JSON) on the same server
  settings in its own process. Throughput is wrk's (a C load generator from
  Debian, closed loop, ``-t1 -c8``), with the mix in ``bench/wrk/gate.lua``.
  Latency at a fixed rate comes from an open-loop Python client whose every
  latency counts from the request's *scheduled* send time, so a stalled server
  cannot hide its queue (coordinated omission); the client shares the two cores.
* **Telemetry is off** in every run (no ``APPLICATIONINSIGHTS_CONNECTION_STRING``,
  no ``ORGGUARD_TELEMETRY``): OrgGuard's counters and spans go to OpenTelemetry's
  no-op providers. With Azure Monitor on, each decision also pays the SDK's
  recording and export, which these figures do not include.
* **Answers are checked**: wrk's script and the open-loop client count every
  answer that is not a decided 200 or 409 (an error, or a 409 "degraded": the
  gate could not decide in time); any such answer fails the run.
* **Import time** is ``python -c 'import function_app'`` in a fresh process, the
  median of ten.

``python -m bench gate`` (``BENCH_LEDGER_MAILBOXES`` changes the ledger's size).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from bench import knobs, openloop
from bench.report import console, goals, header, median, percentile, table
from bench.sandbox_process import wait_until_up
from sandbox.server import free_port

if TYPE_CHECKING:
    from shared.bootstrap import Container

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "gate-test-enable.json"
POLICY = REPO / "examples" / "policy.yaml"
OPERATION = "0b3f6d2e-7a91-4c5d-a8e2-6f4b1d9c3e70"
MAILBOX_ID = "f1e2d3c4-b5a6-4978-8a9b-0c1d2e3f4a5b"
MIX = {"first": 0.70, "competing": 0.20, "repeated": 0.10}  # the share of each kind of claim in a run
OWNED = 4000  # mailboxes contoso-na owns before the run: the competing claims' targets
LEDGER_MAILBOXES = knobs.whole("BENCH_LEDGER_MAILBOXES", 1_000_000, minimum=0)
RATE = 400  # requests per second for the latency goal
GOAL_CPU_RATIO, GOAL_P99_MS, GOAL_HTTP_RATIO, GOAL_HTTP_P99_RATIO, GOAL_IMPORT_S = 3.0, 2.0, 0.4, 3.0, 0.35


def body_for(address: str, template: str | None = None) -> bytes:
    """A gate payload from contoso-jp: Test & Enable on ``address``, as a new operation on its own row."""
    text = template or FIXTURE.read_text()
    return (
        text.replace(MAILBOX_ID, str(uuid.uuid4()))
        .replace(OPERATION, str(uuid.uuid4()))
        .replace("Aiko.Tanaka@Contoso.com", address)
        .encode()
    )


def mixed(n: int, *, seed: int, prefix: str) -> list[bytes]:
    """``n`` payloads in ``MIX``'s proportions, shuffled; a repeated one re-sends an earlier body of this list."""
    rng = random.Random(seed)
    template = FIXTURE.read_text()
    out: list[bytes] = []
    for i in range(n):
        kind = rng.choices(list(MIX), weights=list(MIX.values()))[0]
        if kind == "repeated" and out:
            out.append(rng.choice(out[-200:]))
        elif kind == "competing":
            out.append(body_for(f"owned{rng.randrange(OWNED)}@contoso.com", template))
        else:
            out.append(body_for(f"{prefix}{i}@contoso.com", template))
    return out


def seed_owners(c: Container, n: int = OWNED) -> None:
    """contoso-na owns owned0..owned<n-1> (a sweep found them), through the service."""
    from shared.domain.model import Claim, ClaimKind, MailboxKey, Origin

    for i in range(n):
        key = MailboxKey(f"owned{i}@contoso.com")
        c.service.handle_claim(
            Claim(key, "contoso-na", str(uuid.uuid4()), ClaimKind.SWEEP, Origin.SWEEP, {"operation": f"seed-{i}"})
        )


def bulk_load(path: Path, n: int) -> None:
    """``n`` owned mailboxes, with a claim and an event each, written into the ledger's own tables at once."""
    if n <= 0:
        return
    stamp = "2026-11-01T00:00:00+00:00"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("BEGIN")
    db.executemany(
        "INSERT INTO mailboxes (key, version, ownership) VALUES (?, 1, ?)",
        (
            (
                f"bulk{i}@contoso.com",
                json.dumps({"owner": "contoso-na", "since": stamp, "how": "sweep", "version": 1, "mailbox_id": None}),
            )
            for i in range(n)
        ),
    )
    db.executemany(
        "INSERT INTO events (event_key, effect, case_id, at) VALUES (?, 'allow', NULL, ?)",
        ((f"bulk-{i:09d}", stamp) for i in range(n)),
    )
    db.executemany(
        "INSERT INTO claims (key, org, kind, origin, event_key, effect, case_id, at) "
        "VALUES (?, 'contoso-na', 'sweep', 'sweep', ?, 'allow', NULL, ?)",
        ((f"bulk{i}@contoso.com", f"bulk-{i:09d}", stamp) for i in range(n)),
    )
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


def _container(tmp: Path) -> Container:
    sys.path.insert(0, str(REPO))
    from tests.factories import container

    return container(tmp, POLICY.read_text())


def in_process(n: int = 4000) -> tuple[list[list[object]], dict[str, float]]:
    from shared.domain.model import Origin
    from tests.factories import KEYS

    key = KEYS["contoso-jp"]
    with tempfile.TemporaryDirectory() as tmp:
        c = _container(Path(tmp))
        seed_owners(c)
        bulk_load(Path(tmp) / "ledger.db", LEDGER_MAILBOXES)
        for body in mixed(300, seed=1, prefix="warm"):
            c.intake.receive_webhook(body, key=key, origin=Origin.GATE)
        bodies = mixed(n, seed=2, prefix="user")
        latencies: list[float] = []
        cpu, wall = time.process_time(), time.perf_counter()
        for body in bodies:
            started = time.perf_counter()
            c.intake.receive_webhook(body, key=key, origin=Origin.GATE)
            latencies.append(time.perf_counter() - started)
        ours_cpu, ours_wall = time.process_time() - cpu, time.perf_counter() - wall
        c.close()
        db = sqlite3.connect(Path(tmp) / "baseline.db", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v TEXT)")
        cpu, wall = time.process_time(), time.perf_counter()
        for i, body in enumerate(bodies):
            doc = json.loads(body)
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO t VALUES (?, ?)", (f"{doc['OperationId']}-{i}", body.decode()))
            db.execute("COMMIT")
        base_cpu, base_wall = time.process_time() - cpu, time.perf_counter() - wall
    us = 1e6 / n
    rows: list[list[object]] = [
        ["gate decision (parse, decide, commit)", n, ours_cpu * us, ours_wall * us, ours_cpu / base_cpu],
        ["baseline: json.loads + one SQLite WAL commit", n, base_cpu * us, base_wall * us, 1.0],
    ]
    figures = {
        "cpu_us": ours_cpu * us,
        "base_us": base_cpu * us,
        "p50_ms": median(latencies) * 1e3,
        "p99_ms": percentile(latencies, 99) * 1e3,
        "max_ms": max(latencies) * 1e3,
    }
    return rows, figures


SERVER = """
import sys; sys.path.insert(0, {repo!r})
from pathlib import Path
import uvicorn
from functions.http_api import create_api
from shared import bootstrap
from bench.gate import _container, seed_owners
c = _container(Path({tmp!r}))
seed_owners(c)
bootstrap.install(c)
uvicorn.run(create_api(), host="127.0.0.1", port={port}, log_level="error", access_log=False)
"""

BARE = """
import uvicorn
from fastapi import FastAPI, Request
app = FastAPI()

@app.post("/bare")
async def bare(request: Request) -> dict[str, bool]:
    await request.body()  # the same bodies as the gate's, read and answered with a constant
    return {{"ok": True}}

@app.get("/api/health")
async def health() -> dict[str, bool]:
    return {{"ok": True}}

uvicorn.run(app, host="127.0.0.1", port={port}, log_level="error", access_log=False)
"""


def _serve(script: str, **values: object) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", script.format(port=port, **values)], cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{url}/api/health", proc, timeout=60)
    except RuntimeError:
        proc.kill()
        raise
    return proc, url


def _wrk(url: str, path: str, *, script: Path | None = None, seconds: int = 8) -> tuple[float, float, float]:
    """wrk's requests/s, p50 and p99 (ms) for ``path``, closed loop with 8 connections."""
    args = ["wrk", "-t1", "-c8", f"-d{seconds}s", "--latency"]
    if script is not None:
        args += ["-s", str(script)]
    env = {
        **os.environ,
        "ORGGUARD_FIXTURE": str(FIXTURE),
        "ORGGUARD_KEY": _key(),
        "ORGGUARD_OWNED": str(OWNED),
        "ORGGUARD_MIX": f"{MIX['first']},{MIX['competing']},{MIX['repeated']}",
    }
    out = subprocess.run([*args, url + path], env={**env, "ORGGUARD_PATH": path}, capture_output=True, text=True,
                         check=True).stdout  # fmt: skip
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    unexpected = re.search(r"unexpected answers: (\d+)", out)  # gate.lua's count: not a decided 200 or 409
    if unexpected is None or int(unexpected.group(1)):
        raise RuntimeError(f"{path} answered what it should not (or gate.lua did not count): {out}")
    return rate, _ms(re.search(r"50%\s+([\d.]+)(\w+)", out)), _ms(re.search(r"99%\s+([\d.]+)(\w+)", out))


def _key() -> str:
    from tests.factories import KEYS

    return KEYS["contoso-jp"]


def _ms(match: re.Match[str] | None) -> float:
    if match is None:
        return float("nan")
    value, unit = float(match.group(1)), match.group(2)
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def _paced(url: str, path: str, bodies: list[bytes], rate: float) -> list[float]:
    """Latencies at ``rate`` per second, each from its schedule (bench/openloop.py); any answer but a decided 200/409
    fails (a gate that answers "could not decide" is fast for the wrong reason)."""
    headers = {"x-orgguard-key": _key(), "content-type": "application/json"}
    latencies, statuses = asyncio.run(openloop.paced(url, path, bodies, rate, headers))
    if set(statuses) - {"200", "409"}:
        raise RuntimeError(f"unexpected answers: {statuses}")
    return latencies


def over_http(seconds: int = 8) -> tuple[list[list[object]], dict[str, float]]:
    if not shutil.which("wrk"):
        raise RuntimeError("wrk is not installed: `make bench` installs it from Debian (apt-get install wrk)")
    rows: list[list[object]] = []
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, label, path, script in (
            ("bare", "baseline: bare FastAPI POST", "/bare", BARE),
            ("gate", "gate POST (the mix)", "/api/dataverse/gate", SERVER),
        ):
            server, url = _serve(script, repo=str(REPO), tmp=tmp)
            try:
                _paced(url, path, mixed(200, seed=3, prefix="warm"), RATE)
                rate, p50, p99 = _wrk(url, path, script=REPO / "bench" / "wrk" / "gate.lua", seconds=seconds)
                paced = _paced(url, path, mixed(RATE * 5, seed=4, prefix="paced"), RATE)
            finally:
                server.terminate()
                server.wait(timeout=10)
            rows.append([label, rate, p50, p99, percentile(paced, 50) * 1e3, percentile(paced, 99) * 1e3])
            figures.update({f"{name}_rate": rate, f"{name}_p99": percentile(paced, 99) * 1e3})
    return rows, figures


IMPORTS = {
    "import function_app": "import function_app",
    # what an HTTP instance's first request adds: the FastAPI app the deferred app builds then (deferred_app.py)
    "import function_app, then the HTTP app built": "import function_app; import function_app as f; f._api()",
    "import azure.functions": "import azure.functions",
}


def import_time(runs: int = 10) -> list[list[object]]:
    """Each statement's wall time in a fresh interpreter, ``runs`` times: the median and the best."""
    code = "import time; t=time.perf_counter(); {s}; print(time.perf_counter()-t)"
    rows = []
    for label, statement in IMPORTS.items():
        times = []
        for _ in range(runs):
            out = subprocess.run(
                [sys.executable, "-c", code.format(s=statement)], cwd=REPO, capture_output=True, text=True, check=True
            )
            times.append(float(out.stdout.strip()))
        rows.append([label, runs, median(times) * 1e3, min(times) * 1e3])
    return rows


def main() -> None:
    mix = ", ".join(f"{share:.0%} {kind}" for kind, share in MIX.items())
    header(
        f"Gate decisions in-process (example policy; {mix}; {LEDGER_MAILBOXES:,} mailboxes in the ledger; "
        "telemetry off)"
    )
    rows, inproc = in_process()
    table(["path", "requests", "CPU µs each", "wall µs each", "x baseline (CPU)"], rows)
    table(["latency per decision", "p50 ms", "p99 ms", "max ms"],
          [["gate decision", inproc["p50_ms"], inproc["p99_ms"], inproc["max_ms"]]])  # fmt: skip
    header(
        f"Gate over HTTP (uvicorn, 1 worker; wrk -t1 -c8 -d8s; then open loop at {RATE}/s for 5 s; "
        "telemetry off; an answer but a decided 200/409 fails the run)"
    )
    http_rows, http = over_http()
    table(["route", "req/s (wrk)", "p50 ms (wrk)", "p99 ms (wrk)", f"p50 ms @{RATE}/s", f"p99 ms @{RATE}/s"],
          http_rows)  # fmt: skip
    header("Cold import (python -c 'import ...', median of 10)")
    imports = import_time()
    table(["what", "runs", "median ms", "best ms"], imports)
    header("The gate's goals (issue: performance close to the floor)")
    cpu_ratio = inproc["cpu_us"] / inproc["base_us"]
    http_ratio = http["gate_rate"] / http["bare_rate"]
    p99_ratio = http["gate_p99"] / http["bare_p99"]
    import_s, with_http_s = (float(row[2]) / 1e3 for row in imports[:2])  # type: ignore[arg-type]
    goals(
        [
            ("1. CPU per decision, in-process",
             f"{inproc['cpu_us']:.0f} µs (baseline {inproc['base_us']:.0f} µs, {cpu_ratio:.2f}x)",
             f"≤ {GOAL_CPU_RATIO:g}x", cpu_ratio <= GOAL_CPU_RATIO),
            (f"1. p99 per decision, {LEDGER_MAILBOXES:,} mailboxes",
             f"{inproc['p99_ms']:.2f} ms (p50 {inproc['p50_ms']:.2f}, max {inproc['max_ms']:.1f})",
             f"≤ {GOAL_P99_MS:g} ms", inproc["p99_ms"] <= GOAL_P99_MS),
            ("2. HTTP throughput",
             f"{http['gate_rate']:.0f}/s (bare {http['bare_rate']:.0f}/s, {http_ratio:.2f}x)",
             f"≥ {GOAL_HTTP_RATIO:g}x", http_ratio >= GOAL_HTTP_RATIO),
            (f"2. HTTP p99 at {RATE}/s",
             f"{http['gate_p99']:.1f} ms (bare {http['bare_p99']:.1f} ms, {p99_ratio:.1f}x)",
             f"≤ {GOAL_HTTP_P99_RATIO:g}x", p99_ratio <= GOAL_HTTP_P99_RATIO),
            ("6. import function_app",
             f"{import_s:.3f} s (median of 10; {with_http_s:.3f} s with the HTTP app an HTTP instance's first "
             "request builds)", f"≤ {GOAL_IMPORT_S:g} s", import_s <= GOAL_IMPORT_S),
        ]
    )  # fmt: skip
    console.print("Also: python -X importtime -c 'import function_app' 2>&1 | sort -t'|' -k2 -n | tail")
