"""The composition root: the one place that builds adapters and wires the use cases.

``function_app.py`` and the local host both call ``container()``; tests call
``build()`` with their own ledger or registry. Nothing is opened at import time
(cold start): the first request builds the container.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from shared.claims import MailboxRow
from shared.intake import Intake, MailboxReader
from shared.ledger import Ledger, open_ledger
from shared.model import DomainError, Org
from shared.orgs import OrgRegistry, load_orgs
from shared.policy import PolicyError, UserDirectory
from shared.service import OrgGuard
from shared.settings import Settings

if TYPE_CHECKING:  # the Dataverse client (httpx) stays off the gate's cold path
    from shared.executor import Executor
    from shared.orgclients import ClientPool

log = logging.getLogger("orgguard")


@dataclass
class Container:
    settings: Settings
    ledger: Ledger
    orgs: OrgRegistry
    service: OrgGuard
    intake: Intake

    def executor(self, pool: ClientPool) -> Executor:
        """The outbox worker, writing through ``pool`` (one per event loop)."""
        from shared.executor import Executor

        return Executor(self.ledger, self.orgs, pool, clock=self.service.clock)

    async def run_actions(self) -> None:
        """Carry out every due action once, with clients for this event loop only."""
        from shared.orgclients import ClientPool

        pool = ClientPool()
        try:
            await self.executor(pool).run_once()
        finally:
            await pool.aclose()

    def close(self) -> None:
        self.ledger.close()


def build(
    settings: Settings | None = None,
    *,
    ledger: Ledger | None = None,
    orgs: OrgRegistry | None = None,
    users: UserDirectory | None = None,
    read_back: MailboxReader | None = None,
) -> Container:
    settings = settings or Settings.from_env()
    orgs = orgs if orgs is not None else load_orgs(settings.orgs)
    ledger = ledger if ledger is not None else open_ledger(settings.ledger)
    service = OrgGuard(ledger=ledger, orgs=orgs) if users is None else OrgGuard(ledger=ledger, orgs=orgs, users=users)
    seed_policy(service, settings.policy)
    return Container(settings, ledger, orgs, service, Intake(service, orgs, read_back or read_back_from_org))


def read_back_from_org(org: Org, mailbox_id: str) -> MailboxRow | None:
    """Read a mailbox back through the Web API (imported on first use: cold start)."""
    from shared.orgclients import read_back

    return read_back(org, mailbox_id)


def seed_policy(service: OrgGuard, path: str) -> None:
    """Start the ledger from the policy file when it holds no policy yet."""
    version, _ = service.policy_text()
    file = Path(path)
    if version == 0 and file.exists():
        try:
            service.save_policy(file.read_text(encoding="utf-8"), actor=f"file:{file.name}")
        except PolicyError as exc:  # say which file (ORGGUARD_POLICY) at startup, not just what is wrong
            raise PolicyError(f"the policy file {file} (ORGGUARD_POLICY) is refused: {exc.detail}",
                              errors=exc.errors) from None  # fmt: skip
        log.info("policy loaded from %s", file)


_lock = threading.Lock()
_container: Container | None = None


class NotConfigured(DomainError):
    """OrgGuard cannot start: its settings, orgs file or policy file are refused (a server-side fault)."""

    status = 503
    title = "OrgGuard is not configured"


def container() -> Container:
    """The process-wide container, built on first use; ``NotConfigured`` saying why it cannot be."""
    global _container
    with _lock:
        if _container is None:
            try:
                _container = build()
            except NotConfigured:
                raise
            except DomainError as exc:  # bad configuration is not the caller's bad request
                raise NotConfigured(f"OrgGuard cannot start: {exc.detail}", field=exc.field) from None
        return _container


def built() -> Container | None:
    """The process-wide container if it is built; never waits for a build (the event loop must not)."""
    return _container


def install(c: Container | None) -> None:
    """Replace the process-wide container (the local host and tests)."""
    global _container
    with _lock:
        _container = c
