"""The composition root: the one place that builds adapters and wires the use cases.

``function_app.py`` and the local host both call ``container()``; tests call
``build()`` with their own ledger or registry. Nothing is opened at import time
(cold start): the first request builds the container.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from shared.dataverse.payloads import MailboxRow
from shared.domain.model import DomainError, MailboxKey, Org
from shared.domain.orgs import OrgRegistry
from shared.domain.policy import PolicyError, UserDirectory, user_conditions
from shared.ledger import Ledger, open_ledger
from shared.service.dispatch import Dispatch
from shared.service.intake import Intake, MailboxReader
from shared.service.orgguard import OrgGuard
from shared.telemetry import setup as telemetry_setup

if TYPE_CHECKING:  # and the settings (pydantic-settings) and orgs file (YAML): read when the container is built
    from shared.bus.decisions import DecisionEvents
    from shared.bus.port import WorkQueue
    from shared.bus.servicebus import ServiceBus
    from shared.config.settings import Settings
    from shared.dataverse.clients import ClientPool
    from shared.dataverse.pacing import Pacer
    from shared.dataverse.port import EnvironmentDirectory, RetryPolicy
    from shared.dataverse.registration import RegistrationResult
    from shared.domain.drift import OrgRegistration
    from shared.domain.environments import Discovered
    from shared.graph.client import Graph
    from shared.service.deadletters import DeadLetters
    from shared.service.delivery import Delivery
    from shared.service.inbound import DataverseMessages
    from shared.service.jobs import Jobs
    from shared.service.org_rows import OrgRow  # the Dataverse client (httpx) and msgraph stay off the gate's cold path
    from shared.service.outbox import Executor
    from shared.service.work import WorkHandler

log = logging.getLogger("orgguard")

# What a queue's messages may take before they are dead-lettered: infra/app/servicebus.bicep sets the same
# maxDeliveryCount on the Service Bus queues (tests/infra checks they agree). Low on the work queue: with
# sessions, a failing message holds up its mailbox's next work until it is dead-lettered.
WORK_MAX_DELIVERIES = 3
DATAVERSE_MAX_DELIVERIES = 5


@dataclass
class Bus:
    """The queues and the decision events the settings ask for (all None without ORGGUARD_BUS)."""

    work: WorkQueue | None = None
    inbound: WorkQueue | None = None  # Dataverse's queue
    events: DecisionEvents | None = None
    servicebus: ServiceBus | None = None

    def close(self) -> None:
        for part in (self.work, self.inbound, self.events):
            if part is not None:
                part.close()
        if self.servicebus is not None:
            self.servicebus.close()


@dataclass
class Container:
    settings: Settings
    ledger: Ledger
    orgs: OrgRegistry
    service: OrgGuard
    intake: Intake
    mail_timeout_s: float = 10.0  # per sendMail: a late answer is a lost one (never resent by itself)
    bus: Bus = field(default_factory=Bus)

    @property
    def work(self) -> WorkQueue | None:
        return self.bus.work

    def work_handler(self, run_outbox: Callable[[], Awaitable[object]] | None = None) -> WorkHandler:
        """Carries out a work message (``run_outbox``: this event loop's outbox worker; one made per message
        otherwise)."""
        from shared.service.work import WorkHandler

        assert self.bus.work is not None
        return WorkHandler(self.ledger, run_outbox or self.run_actions, self.bus.work, clock=self.service.clock)

    def dataverse_messages(self) -> DataverseMessages:
        from shared.service.inbound import DataverseMessages

        return DataverseMessages(self.intake)

    def dead_letters(self) -> DeadLetters:
        """The operators' dead-letter use cases over every queue this OrgGuard has."""
        from shared.service.deadletters import DeadLetters

        return DeadLetters([q for q in (self.bus.work, self.bus.inbound) if q is not None], self.ledger)

    def executor(self, pool: ClientPool) -> Executor:
        """The outbox worker, writing through ``pool`` (one per event loop), mailing when mail is set up."""
        from shared.service.outbox import Executor

        return Executor(
            self.ledger, self.orgs, pool, clock=self.service.clock, mail=self.delivery(pool), paces=pool.pace
        )

    def delivery(self, pool: ClientPool) -> Delivery | None:
        """The notify path of the outbox (Graph sendMail), or None without ORGGUARD_GRAPH_URL and ORGGUARD_MAIL_FROM."""
        s = self.settings
        if not (s.graph_url and s.mail_from):
            return None
        from shared.service.delivery import Delivery

        return Delivery(
            self.ledger,
            self.orgs,
            pool,
            graph_factory(s.graph_url, timeout=self.mail_timeout_s, client_id=s.azure_client_id),
            s.mail_from,
            self.service.policy,
            public_url=s.public_url,
            clock=self.service.clock,
        )

    # --- the only place Dataverse clients, pacers and job runners are made -------------------

    def client_pool(self, retry: RetryPolicy | None = None) -> ClientPool:
        """A client per org for one event loop, as OrgGuard's identity (``AZURE_CLIENT_ID``); the caller closes it."""
        from shared.dataverse.clients import ClientPool

        return ClientPool(retry, client_id=self.settings.azure_client_id)

    def pacer(self) -> Pacer:
        """Clients that obey each org's service protection budget, for one sweep or migration run."""
        from shared.dataverse.clients import Connector
        from shared.dataverse.pacing import Pacer

        return Pacer(Connector(self.settings.azure_client_id))

    def jobs(self) -> Jobs:
        """Sweeps and migrations: start, pause, resume, cancel and run them (one rule for every entry point)."""
        from shared.ledger.port import job_ledger
        from shared.service.jobs import Jobs

        return Jobs(self.service, job_ledger(self.ledger), self.pacer, webhook_base=self.settings.public_url)

    async def register(
        self, names: Sequence[str], base_url: str, *, orgs: OrgRegistry | None = None
    ) -> list[RegistrationResult]:
        """OrgGuard's gate and event endpoints in each named org (``orgguard register``, ``serve --sandbox``);
        ``orgs``: a registry other than the one the container started with (orgs just discovered)."""
        from shared.dataverse.registration import register_orgs

        pool = self.client_pool()
        try:
            return await register_orgs(orgs or self.orgs, names, base_url, client_for=pool)
        finally:
            await pool.aclose()

    async def environments(self) -> list[Discovered]:
        """Every environment the Global Discovery Service shows OrgGuard's identity, each beside its registered org."""
        from shared.service.discovery import discover

        directory = discovery_directory(self.settings.discovery_url, client_id=self.settings.azure_client_id)
        try:
            return await discover(directory, self.orgs)
        finally:
            await directory.aclose()

    async def check_registration(
        self, names: Sequence[str] | None = None, base_url: str | None = None
    ) -> list[OrgRegistration]:
        """OrgGuard's endpoints, steps and images in each org compared with what ``register`` writes (read-only).

        ``base_url`` defaults to ``ORGGUARD_PUBLIC_URL`` (unset: endpoints are compared by path). The result is
        kept, with its time, for health, the sweep and reconciling saves the gate never heard.
        """
        from shared.dataverse.registration import check_orgs
        from shared.service.registrations import CHECK_RETRY

        pool = self.client_pool(CHECK_RETRY)
        try:
            found = await check_orgs(
                self.orgs,
                list(names or self.orgs.names),
                base_url or self.settings.public_url,
                client_for=pool,
                now=self.service.clock(),
            )
        finally:
            await pool.aclose()
        self.service.registrations.record(found)
        return found

    async def refresh_registration(self) -> None:
        """Check again when the last check is older than ``Registrations.every`` (the housekeeping timer)."""
        if self.service.registrations.due(self.orgs.names, self.service.clock()):
            await self.check_registration()

    def registration_health(self) -> dict[str, object]:
        """The last check for health, at once (the housekeeping timer, the local host's loop and sweeps check)."""
        return self.service.registrations.view(self.orgs.names, self.service.clock())

    async def org_rows(self, key: MailboxKey) -> list[OrgRow]:
        """Each registered org's row for ``key``, read now (the page's mailbox view); unreachable orgs say so."""
        from shared.service.org_rows import RETRY, read_rows

        pool = self.client_pool(RETRY)
        try:
            return await read_rows(list(self.orgs), key, pool)
        finally:
            await pool.aclose()

    def read_back(self, org: Org, mailbox_id: str) -> MailboxRow | None:
        """A mailbox read back from its org, for a trimmed payload (the intake's ``MailboxReader``)."""
        from shared.dataverse.clients import Connector
        from shared.dataverse.mailboxes import read_back

        return read_back(org, mailbox_id, connect=Connector(self.settings.azure_client_id))

    async def run_actions(self) -> None:
        """Carry out every due action once, with clients for this event loop only."""
        pool = self.client_pool()
        executor = self.executor(pool)
        try:
            await executor.run_once()
            await self.run_digest(pool)
        finally:
            await executor.aclose()
            await pool.aclose()

    async def run_digest(self, pool: ClientPool) -> None:
        """Send the operations digest when one is due (``notify.operations``); needs mail and a job ledger."""
        delivery = self.delivery(pool)
        if delivery is None or not self.service.policy().notify.operations:
            return
        from shared.ledger.port import job_ledger
        from shared.service.digest import send_digest

        try:
            await send_digest(job_ledger(self.ledger), delivery, self.service.policy(), now=self.service.clock())
        finally:
            await delivery.aclose()

    def close(self) -> None:
        close = getattr(self.service.users, "close", None)
        if close is not None:
            close()
        self.service.dispatch.flush(5.0)  # what a last commit left goes out before the bus closes
        self.bus.close()
        self.ledger.close()


def build(
    settings: Settings | None = None,
    *,
    ledger: Ledger | None = None,
    orgs: OrgRegistry | None = None,
    users: UserDirectory | None = None,
    read_back: MailboxReader | None = None,
    bus: Bus | None = None,
) -> Container:
    from shared.config.orgs import load_orgs
    from shared.config.settings import Settings

    settings = settings or Settings.from_env()
    telemetry_setup.configure(
        connection_string=settings.app_insights, authentication=settings.app_insights_auth, local=settings.telemetry
    )
    orgs = orgs if orgs is not None else load_orgs(settings.orgs)
    ledger = ledger if ledger is not None else open_ledger(settings.ledger, client_id=settings.azure_client_id)
    if users is None and settings.graph_url:
        users = user_directory(settings)
    bus = open_bus(settings) if bus is None else bus
    service = OrgGuard(ledger=ledger, orgs=orgs, mail=settings.mail, dispatch=Dispatch(bus.work, bus.events))
    if users is not None:
        service.users = users
    seed_policy(service, settings.policy)
    warm = getattr(service.users, "warm", None)
    if warm is not None and user_conditions(service.policy()):
        warm()  # msgraph loads on the directory's own thread now, not inside the first decision
    container = Container(settings, ledger, orgs, service, Intake(service, orgs, read_back), bus=bus)
    if read_back is None:
        container.intake.read_back = container.read_back
    return container


def open_bus(settings: Settings) -> Bus:
    """The queues ORGGUARD_BUS names (Service Bus, or the local SQLite queue) and the decision events
    ORGGUARD_DECISION_EVENTS asks for; nothing is connected until it is used."""
    bus = Bus()
    if settings.bus == "servicebus" or (settings.decision_events or "").startswith("servicebus:"):
        from shared.bus.servicebus import ServiceBus, connector

        bus.servicebus = ServiceBus(connector(settings.azure_client_id))
    if bus.servicebus is not None and settings.bus == "servicebus":
        assert settings.bus_namespace  # Settings.check_bus
        rejects = (settings.bus_namespace, settings.rejected_queue)
        bus.work = bus.servicebus.queue(
            "work", settings.bus_namespace, settings.work_queue, sessions=True,
            max_deliveries=WORK_MAX_DELIVERIES, rejects=rejects,
        )  # fmt: skip
        if settings.dataverse_namespace:
            bus.inbound = bus.servicebus.queue(
                "dataverse", settings.dataverse_namespace, settings.dataverse_queue, sessions=False,
                max_deliveries=DATAVERSE_MAX_DELIVERIES, rejects=rejects,
            )  # fmt: skip
    elif settings.bus:
        from shared.bus.local import LocalQueue

        bus.work = LocalQueue.from_url(settings.bus, "work", sessions=True, max_deliveries=WORK_MAX_DELIVERIES)
        bus.inbound = LocalQueue.from_url(
            settings.bus, "dataverse", sessions=False, max_deliveries=DATAVERSE_MAX_DELIVERIES
        )
    events = settings.decision_events or ""
    if events.startswith("servicebus:") and bus.servicebus is not None and settings.bus_namespace:
        bus.events = bus.servicebus.topic(settings.bus_namespace, events.removeprefix("servicebus:"))
    elif events.startswith("file:"):
        from shared.bus.decisions_file import DecisionFile

        bus.events = DecisionFile(events.removeprefix("file:").strip())
    return bus


def discovery_directory(base_url: str, *, client_id: str | None = None) -> EnvironmentDirectory:
    """The Global Discovery Service at ``base_url`` (``orgguard discover``); the caller closes it."""
    from shared.dataverse.discovery import connect_discovery

    return connect_discovery(base_url, client_id=client_id)


def graph_factory(graph_url: str, *, timeout: float, client_id: str | None = None) -> Callable[[], Graph]:
    """Builds a ``Graph`` (msgraph-sdk) for the event loop that calls it; imported only then.

    ``client_id``: the managed identity's (``Settings.azure_client_id``), None for the default chain's."""

    def connect() -> Graph:
        from shared.graph.client import Graph, credential_for

        return Graph(graph_url, credential=credential_for(graph_url, client_id), timeout=timeout)

    return connect


def user_directory(settings: Settings) -> UserDirectory:
    from shared.graph.directory import GraphDirectory

    assert settings.graph_url
    return GraphDirectory(
        graph_factory(settings.graph_url, timeout=settings.graph_timeout_s, client_id=settings.azure_client_id),
        timeout=settings.graph_timeout_s,
    )


def seed_policy(service: OrgGuard, path: str) -> None:
    """Start the ledger from the policy file (or the policy ORGGUARD_POLICY carries) when it holds none yet."""
    from shared.config.settings import inline_document

    version, _ = service.policy_text()
    if version != 0:
        return
    inline = inline_document(path)
    if inline is not None:
        _seed(service, inline, actor="setting:ORGGUARD_POLICY", source="the policy in the ORGGUARD_POLICY setting")
        log.info("policy loaded from the ORGGUARD_POLICY setting")
        return
    file = Path(path)
    if file.exists():
        _seed(service, file.read_text(encoding="utf-8"), actor=f"file:{file.name}", source=f"the policy file {file}")
        log.info("policy loaded from %s", file)


def _seed(service: OrgGuard, text: str, *, actor: str, source: str) -> None:
    try:
        service.save_policy(text, actor=actor)
    except PolicyError as exc:  # say where it came from (ORGGUARD_POLICY) at startup, not just what is wrong
        raise PolicyError(f"{source} (ORGGUARD_POLICY) is refused: {exc.detail}", errors=exc.errors) from None


_lock = threading.Lock()
_container: Container | None = None


class NotConfigured(DomainError, status=503, title="OrgGuard is not configured"):
    """OrgGuard cannot start: its settings, orgs file or policy file are refused (a server-side fault)."""


def container(settings: Callable[[], Settings] | None = None) -> Container:
    """The process-wide container, built on first use from ``settings()`` (the environment's by default);
    ``NotConfigured`` saying why it cannot be."""
    global _container
    with _lock:
        if _container is None:
            try:
                _container = build(settings() if settings is not None else None)
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
