"""A short OrgGuard life with local telemetry to a file, run in its own process by test_telemetry.py.

OpenTelemetry's providers are set once per process, so the run gets a process of its own:
the sandbox's orgs call the gate (allowed, then blocked), an asynchronous event is repaired,
an admin reads the mailbox, a wrong webhook key is refused, the outbox is carried out under
throttling, and everything is flushed to the file named on the command line.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

import httpx

from functions.local_host import create_local_app
from sandbox.server import running
from shared import bootstrap
from shared.config.settings import Settings
from shared.ledger.sqlite import SqliteLedger
from shared.service.outbox import has_pending
from shared.telemetry import setup as telemetry_setup
from tests.factories import AIKO, BLOCKING_POLICY, KEYS, fixture_bytes, registry
from tests.serving import serve

API = "/api/data/v9.2"


def main(out: Path, work: Path) -> None:
    logging.getLogger("orgguard").setLevel(logging.INFO)
    with running(mailboxes=10, overlap=0.5, loopback_webhooks=True) as sandbox_url:
        settings = Settings(
            ledger=f"sqlite:///{work}/l.db", orgs="-", policy=str(work / "none"), admin_token="secret-admin-token-42",
            telemetry=f"file:{out}",
        )  # fmt: skip
        c = bootstrap.build(settings, ledger=SqliteLedger(work / "l.db"), orgs=registry(sandbox_url))
        c.service.save_policy(BLOCKING_POLICY, actor="test")
        bootstrap.install(c)
        with serve(create_local_app(c, background=False)) as url, httpx.Client(timeout=30) as http:
            asyncio.run(c.register(c.orgs.names, url))
            for org in ("contoso-na", "contoso-jp"):
                admin = {"Authorization": f"Bearer admin-of-{org}"}
                base = f"{sandbox_url}/orgs/{org}{API}"
                row = http.get(
                    f"{base}/mailboxes",
                    params={"$select": "mailboxid", "$filter": f"contains(emailaddress,'{AIKO.address}')"},
                    headers=admin,
                ).json()["value"][0]
                http.patch(
                    f"{base}/mailboxes({row['mailboxid']})",
                    json={"testemailconfigurationscheduled": True},
                    headers={**admin, "If-Match": "*"},
                )
            http.put(f"{sandbox_url}/_sandbox/settings", json={"gate": False}).raise_for_status()
            http.get(f"{url}/api/mailboxes/{AIKO.address}", headers={"Authorization": "Bearer secret-admin-token-42"})
            http.post(
                f"{url}/api/dataverse/gate",
                content=fixture_bytes("gate-test-enable.json"),
                headers={"x-orgguard-key": KEYS["contoso-na"] + "-wrong"},
            )
            http.put(f"{sandbox_url}/_sandbox/settings", json={"budget": 1, "window_s": 1}).raise_for_status()
            for _ in range(40):
                asyncio.run(c.run_actions())
                if not has_pending(c.ledger):
                    break
        telemetry_setup.flush()
        bootstrap.install(None)
        c.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
