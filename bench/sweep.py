"""Sweep and sweep --apply at scale, against a naive per-mailbox script.

The sandbox runs in its own process with 4 orgs x 50,000 mailboxes, 5% of people
in several orgs. Each measured run is a child process (so its peak RSS is its
own): the sweep (dry run), then the sweep with --apply on a fresh ledger. The
sandbox's own counters give the HTTP requests each org received. The minimum is
the issue's: pages = ceil(rows read / 5000) per org (syncing mailbox rows, plus
alert rows where the org has failing mailboxes), writes = ceil(changes / 1000)
batches per org. The naive baseline (one GET by address and one PATCH per
mailbox, sequential, like a typical admin script) runs on a tenth of the
mailboxes and is scaled by ten for the ratio.

``python -m bench sweep`` (``BENCH_MAILBOXES`` / ``BENCH_ORGS`` change the size).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.report import console, header, table

REPO = Path(__file__).resolve().parents[1]
POLICY = """
version: 1
mode: enforce
default: block
primary:
  - when: {mailbox.domain: [contoso.co.jp]}
    org: contoso-jp
  - when: {mailbox.domain: [contoso.eu, contoso.de]}
    org: contoso-eu
rules:
  - id: designated-primary
    effect: prefer-primary
"""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_sandbox(port: int, mailboxes: int, orgs: int) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "sandbox", "--port", str(port), "--mailboxes", str(mailboxes)]
    process = subprocess.Popen(
        [*command, "--overlap", "0.05", "--orgs", str(orgs)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/_sandbox/orgs", timeout=5).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.5)
    process.kill()
    raise RuntimeError("the sandbox did not start")


def _orgs_file(directory: Path, base: str) -> Path:
    lines = ["orgs:"]
    for org in httpx.get(f"{base}/_sandbox/orgs", timeout=30).json():
        lines += [f"  - name: {org['name']}", f"    id: {org['id']}", f"    url: {org['url']}"]
        lines += [f"    webhook_key: bench-key-{org['name']}"]
    path = directory / "orgs.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _counters(base: str) -> dict[str, Any]:
    data: dict[str, Any] = httpx.get(f"{base}/_sandbox/requests", timeout=30).json()
    return data


def _diff(after: dict[str, Any], before: dict[str, Any]) -> dict[str, dict[str, int]]:
    out = {}
    for org, counts in after.items():
        b = before[org]
        methods = {m: n - b["by_method"].get(m, 0) for m, n in counts["by_method"].items()}
        out[org] = {
            "http": counts["http"] - b["http"],
            "batches": counts["batches"] - b["batches"],
            "inner": counts["batch_inner"] - b["batch_inner"],
            "patch": methods.get("PATCH", 0),
            "get": methods.get("GET", 0),
            "throttled": counts["throttled"] - b["throttled"],
        }
    return out


# --- the child processes -------------------------------------------------------------------


def child_sweep(directory: str, apply: bool) -> None:
    sys.path.insert(0, str(REPO))
    from shared import bootstrap
    from shared.config.settings import Settings

    folder = Path(directory)
    ledger_path = folder / ("apply.db" if apply else "sweep.db")
    (folder / "policy.yaml").write_text(POLICY)
    settings = Settings(
        ledger=f"sqlite:///{ledger_path}", orgs=str(folder / "orgs.yaml"), policy=str(folder / "policy.yaml")
    )
    c = bootstrap.build(settings)
    jobs = c.jobs()
    job = jobs.start_sweep([], apply=apply, actor="bench")
    started = time.perf_counter()
    _, result = asyncio.run(jobs.run_sweep(job))
    wall = time.perf_counter() - started
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    doc = result.doc(limit=0)
    doc.update(wall=wall, peak_mib=peak_mib)
    print(json.dumps(doc))


def child_naive(base: str, per_org: int) -> None:
    """One GET (by address) and one PATCH per mailbox, one after the other."""
    orgs = [o["name"] for o in httpx.get(f"{base}/_sandbox/orgs", timeout=30).json()]
    done = requests = 0
    started = time.perf_counter()
    with httpx.Client(base_url=base, headers={"Authorization": "Bearer naive-admin-script"}, timeout=60) as http:
        for org in orgs:
            api = f"/orgs/{org}/api/data/v9.2/"
            page = http.get(
                api + "mailboxes",
                params={"$select": "emailaddress", "$filter": "statecode eq 0", "$top": str(per_org)},
            ).json()["value"]
            for row in page:
                address = str(row["emailaddress"]).strip().replace("'", "''")
                found = http.get(
                    api + "mailboxes",
                    params={"$select": "mailboxid,actdeliverymethod", "$filter": f"emailaddress eq '{address}'"},
                ).json()["value"]
                requests += 1
                if found:
                    http.patch(
                        api + f"mailboxes({found[0]['mailboxid']})",
                        json={"actdeliverymethod": found[0]["actdeliverymethod"]},
                        headers={"If-Match": "*"},
                    )
                    requests += 1
                done += 1
    print(json.dumps({"mailboxes": done, "requests": requests, "wall": time.perf_counter() - started}))


# --- the benchmark -------------------------------------------------------------------------


def _child(*args: str) -> dict[str, Any]:
    answer = subprocess.run(
        [sys.executable, "-m", "bench.sweep", *args], cwd=REPO, capture_output=True, text=True, check=False
    )
    if answer.returncode != 0:
        raise RuntimeError(answer.stderr[-3000:])
    doc: dict[str, Any] = json.loads(answer.stdout.strip().splitlines()[-1])
    return doc


def _minimum(result: dict[str, Any], served: dict[str, dict[str, int]]) -> int:
    """The issue's floor: ceil(rows/5000) pages per org (mailboxes, and alerts where read), ceil(changes/1000)."""
    pages = sum(math.ceil(rows / 5000) for rows in result["rows_by_org"].values())
    pages += sum(math.ceil(n / 5000) for n in result["alerts_by_org"].values())
    writes = sum(math.ceil(s["patch"] / 1000) for s in served.values())
    return pages + writes


def main() -> None:
    mailboxes = int(os.environ.get("BENCH_MAILBOXES", "50000"))
    orgs = int(os.environ.get("BENCH_ORGS", "4"))
    header(f"Sweep: {orgs} orgs x {mailboxes:,} mailboxes, 5% in several orgs")
    port = _port()
    base = f"http://127.0.0.1:{port}"
    seeding = time.perf_counter()
    sandbox = _start_sandbox(port, mailboxes, orgs)
    console.print(f"sandbox seeded and serving in {time.perf_counter() - seeding:.1f} s")
    rows: list[list[object]] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            _orgs_file(Path(tmp), base)
            results = {}
            for name, apply in (("sweep", False), ("sweep --apply", True)):
                before = _counters(base)
                result = _child("child-sweep", tmp, "1" if apply else "0")
                served = _diff(_counters(base), before)
                http = sum(s["http"] for s in served.values())
                minimum = _minimum(result, served)
                results[name] = (result, served, http)
                rows.append(
                    [
                        name,
                        f"{result['wall']:.1f}",
                        http,
                        minimum,
                        f"{http / minimum:.3f}",
                        f"{result['peak_mib']:.0f}",
                        result["conflicts_total"],
                        sum(s["inner"] for s in served.values()),
                    ]
                )
            per_org = max(1, mailboxes // 10)
            # The naive script would spend the documented 6,000 requests in minutes and then wait out windows;
            # its baseline is the cost per mailbox, so the sandbox's service protection is off for it alone.
            limits = {"budget": None, "execution_budget_s": None, "concurrency": None}
            httpx.put(f"{base}/_sandbox/settings", json=limits, timeout=30).raise_for_status()
            before = _counters(base)
            naive = _child("child-naive", base, str(per_org))
            naive_http = sum(s["http"] for s in _diff(_counters(base), before).values())
            rows.append(
                [
                    f"naive GET+PATCH, {naive['mailboxes']:,} mailboxes (1/10)",
                    f"{naive['wall']:.1f}",
                    naive_http,
                    "-",
                    "-",
                    "-",
                    "-",
                    naive["requests"] // 2,
                ]
            )
            table(
                [
                    "run",
                    "wall s",
                    "requests",
                    "minimum",
                    "ratio",
                    "peak RSS MiB",
                    "findings",
                    "writes",
                ],
                rows,
            )
            applied, _, apply_http = results["sweep --apply"]
            swept, _, _ = results["sweep"]
            scale = 10
            console.print(
                f"rows read {swept['mailboxes']:,} (syncing), alerts read {swept['alerts_read']:,}; "
                f"counts {swept['counts']}; unowned single-org {swept['unowned']:,}"
            )
            console.print(
                f"naive x{scale} (whole data): {naive['wall'] * scale:,.0f} s and {naive_http * scale:,} requests; "
                f"sweep --apply: {applied['wall']:.1f} s and {apply_http:,} requests -> "
                f"{naive['wall'] * scale / applied['wall']:,.0f}x faster, "
                f"{naive_http * scale / apply_http:,.0f}x fewer requests"
            )
    finally:
        sandbox.terminate()
        sandbox.wait(30)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "child-sweep":
        child_sweep(sys.argv[2], sys.argv[3] == "1")
    elif len(sys.argv) > 1 and sys.argv[1] == "child-naive":
        child_naive(sys.argv[2], int(sys.argv[3]))
    else:
        main()
