"""`python -m bench graph`: Microsoft Graph through msgraph-sdk against the sandbox's Graph.

1. Requests to resolve 1,000 users the way a sweep does (cache + JSON ``$batch``) against one call per
   user, with and without their groups.
2. Notify actions per second through the outbox (ledger, recipients, MIME, sendMail), against bare
   sendMail calls on the same client.
3. ``import function_app`` with msgraph-sdk installed and with it made unimportable (it stays off the
   import path), then what importing it and the first Graph client cost.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.report import console, header, table
from sandbox.server import running
from shared import bootstrap
from shared.bootstrap import graph_factory
from shared.config.settings import Settings
from shared.domain.model import MailboxKey
from shared.graph.client import Graph
from shared.graph.directory import GraphDirectory
from shared.ledger.sqlite import SqliteLedger
from tests.factories import claim, registry

USERS = 1000
NOTICES = 200
REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    with running(mailboxes=420, overlap=0.2) as url:
        resolve(url)
        notify(url)
    imports()


# --- 1. resolving users -------------------------------------------------------------------


def users(url: str) -> list[MailboxKey]:
    found: list[MailboxKey] = []
    next_url: str | None = f"{url}/graph/v1.0/users?$select=mail&$top=999"
    with httpx.Client(headers={"Authorization": "Bearer bench"}, timeout=30) as client:
        while next_url and len(found) < USERS:
            page = client.get(next_url).json()
            found += [MailboxKey.parse(u["mail"]) for u in page["value"]]
            next_url = page.get("@odata.nextLink")
    assert len(found) >= USERS, f"the sandbox has only {len(found)} users"
    return found[:USERS]


def asked(url: str) -> int:
    return int(httpx.get(f"{url}/_sandbox/graph").json()["http"])


def resolve(url: str) -> None:
    keys = users(url)
    rows = []
    for groups in (False, True):
        what = "attributes + groups" if groups else "attributes"
        directory = GraphDirectory(graph_factory(f"{url}/graph/v1.0", timeout=30), timeout=30)
        directory.attributes(MailboxKey.parse("orgguard@contoso.com"), groups=False)  # msgraph loaded, not timed
        before, started = asked(url), time.perf_counter()
        for start in range(0, len(keys), 500):  # as the sweep does: 500 findings at a time
            directory.prefetch(keys[start : start + 500], groups=groups)
        for key in keys:
            directory.attributes(key, groups=groups)
        swept, swept_s = asked(url) - before, time.perf_counter() - started
        before = asked(url)
        for key in keys:
            directory.attributes(key, groups=groups)
        again = asked(url) - before
        directory.close()
        naive, naive_s = asyncio.run(one_by_one(url, keys, groups))
        rows.append((what, "sweep: cache + $batch of 20", swept, f"{swept / len(keys) * 1000:.0f}", f"{swept_s:.2f}",
                     f"{naive / max(swept, 1):.1f}x fewer"))  # fmt: skip
        rows.append((what, "the same users again (cache)", again, f"{again / len(keys) * 1000:.0f}", "-", "-"))
        rows.append((what, "one call per user (no cache, no batch)", naive, f"{naive / len(keys) * 1000:.0f}",
                     f"{naive_s:.2f}", "baseline"))  # fmt: skip
    header(f"Graph requests to resolve {len(keys):,} users (msgraph-sdk against the sandbox's Graph)")
    table(("reads", "how", "HTTP requests", "per 1,000 users", "seconds", "ratio"), rows)


async def one_by_one(url: str, keys: list[MailboxKey], groups: bool) -> tuple[int, float]:
    graph = Graph(f"{url}/graph/v1.0", timeout=30)
    graph.prepare()
    started = time.perf_counter()
    for key in keys:
        found = await graph.users_at(key)
        if groups and len(found) == 1:
            await graph.groups_of(found[0].id)
    seconds = time.perf_counter() - started
    await graph.aclose()
    return graph.requests, seconds


# --- 2. notify actions ----------------------------------------------------------------------


HOLD = """
version: 1
default: hold
approval: {approvers: [crm-admin@contoso.com]}
notify: {stopped_admin: false}
"""


def notify(url: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        settings = Settings(ledger=f"sqlite:///{folder}/l.db", orgs="-", policy=f"{folder}/none",
                            graph_url=f"{url}/graph/v1.0", mail_from="orgguard@contoso.com")  # fmt: skip
        c = bootstrap.build(settings, ledger=SqliteLedger(Path(folder) / "l.db"), orgs=registry(url))
        c.service.save_policy(HOLD, actor="bench")
        for n in range(NOTICES):
            key = MailboxKey(f"bench{n}@contoso.com")
            c.service.handle_claim(claim("contoso-na", key=key, op=f"na{n}"))
            c.service.handle_claim(claim("contoso-jp", key=key, op=f"jp{n}"))
        httpx.delete(f"{url}/_sandbox/mail")
        started = time.perf_counter()
        asyncio.run(drain(c))
        outbox_s = time.perf_counter() - started
        sent = len(httpx.get(f"{url}/_sandbox/mail").json()["mail"])
        c.close()
    bare_s = asyncio.run(bare(url))
    header(f"Notify actions through the outbox: {NOTICES} held cases, one approval notice each")
    table(
        ("how", "mails", "seconds", "per second", "ratio"),
        [
            ("outbox: lease, recipients, MIME, sendMail, record", sent, outbox_s, f"{sent / outbox_s:.0f}",
             f"{bare_s / outbox_s:.2f} of bare"),
            ("bare sendMail calls, same client, nothing recorded", NOTICES, bare_s, f"{NOTICES / bare_s:.0f}",
             "baseline"),
        ],
    )  # fmt: skip


async def drain(c: bootstrap.Container) -> None:
    from shared.service.outbox import has_pending

    pool = c.client_pool()
    executor = c.executor(pool)
    await executor.run_once()  # warm: msgraph loads here
    while await asyncio.to_thread(has_pending, c.ledger):
        await executor.run_once()
    await executor.aclose()
    await pool.aclose()


async def bare(url: str) -> float:
    from shared.domain import letters
    from shared.domain.model import utcnow

    graph = Graph(f"{url}/graph/v1.0", timeout=30)
    letter = letters.Letter("bench", "bench", (), (), None)
    body = letters.mime(letter, sender="orgguard@contoso.com", to=["crm-admin@contoso.com"], bcc=[],
                        message_id="<bench@contoso.com>", now=utcnow())  # fmt: skip
    await graph.send_mime("orgguard@contoso.com", body)  # warm
    started = time.perf_counter()
    for _ in range(NOTICES):
        await graph.send_mime("orgguard@contoso.com", body)
    seconds = time.perf_counter() - started
    await graph.aclose()
    return seconds


# --- 3. import time -------------------------------------------------------------------------

NO_GRAPH = """
import sys
class Block:  # as if msgraph-sdk were not installed: the import path must not notice
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("msgraph", "msgraph_core", "kiota_abstractions", "kiota_http"):
            raise ModuleNotFoundError(name)
sys.meta_path.insert(0, Block())
"""
PROBES = {
    "import function_app, as deployed (msgraph-sdk installed, not imported)": "import function_app",
    "the same with msgraph-sdk made unimportable (as before this work)": NO_GRAPH + "import function_app",
    "import function_app, then import msgraph": "import function_app; import msgraph",
    "import function_app, then the first Graph client, warmed up": (
        "import function_app\nfrom shared.graph.client import Graph\nGraph('http://127.0.0.1:9/v1.0').prepare()"
    ),
}


def imports(runs: int = 7) -> None:
    """Each probe in a fresh interpreter, the probes interleaved (this machine is shared and noisy)."""
    times: dict[str, list[float]] = {what: [] for what in PROBES}
    for n in range(runs + 1):  # the first round only warms the file cache
        for what, code in PROBES.items():
            timer = f"import time\nstarted = time.perf_counter()\n{code}\nprint(time.perf_counter() - started)"
            done = subprocess.run([sys.executable, "-c", timer], cwd=REPO, capture_output=True, text=True, check=True)
            if n:
                times[what].append(float(done.stdout.strip().splitlines()[-1]))
    rows = []
    base = statistics.median(next(iter(times.values())))
    for what, code in PROBES.items():
        median = statistics.median(times[what])
        modules = subprocess.run(
            [sys.executable, "-c", f"{code}\nimport sys, json\nprint(json.dumps(len(sys.modules)))"],
            cwd=REPO, capture_output=True, text=True, check=True,
        ).stdout.strip().splitlines()[-1]  # fmt: skip
        rows.append((what, f"{median:.2f}", modules, f"{median / base:.2f}x"))
    header(f"Cold start (median of {runs} fresh interpreters each, interleaved)")
    table(("what", "seconds", "modules loaded", "ratio to the first row"), rows)
    console.print("msgraph loads only when a policy reads user.* or mail is sent, on the directory's own thread.")


if __name__ == "__main__":
    main()
