"""The page in headless Chromium, against a real local host: OrgGuard with its background executor on a free
port, the sandbox's orgs registered to call its gate, a SQLite ledger of its own per test.

Chromium is Debian's (``/usr/bin/chromium``), driven by Playwright with ``executable_path``: no browser is ever
downloaded. A missing Chromium fails the suite loudly (``make test`` installs it). Every test leaves screenshots
under ``tests/artifacts/browser/``.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from functions.local_host import create_local_app
from sandbox.server import running
from shared import bootstrap
from shared.config.settings import Settings
from shared.domain.model import CaseQuery, CaseState, MailboxKey
from shared.ledger.sqlite import SqliteLedger
from tests.factories import ADMIN_TOKEN, HOLDING_POLICY, registry
from tests.serving import serve

CHROMIUM = os.environ.get("ORGGUARD_CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "browser"
API = "/api/data/v9.2"


def run_async(work: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """Run a coroutine to completion in a thread of its own (Playwright's sync API owns this thread's loop)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(work())).result()


# Module scope: Playwright's sync API keeps an event loop running in this thread while the browser lives, and
# the suites after this one call asyncio.run in it.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        # launch() starts Chromium with a fresh, empty user-data dir of its own each run.
        launched = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            yield launched
        finally:
            launched.close()


@dataclass
class Host:
    """OrgGuard and its sandbox orgs, running; the page's URL, and the ways a test sets the scene."""

    url: str
    sandbox_url: str
    c: bootstrap.Container
    sandbox: httpx.Client
    shots: list[Path] = field(default_factory=list)

    def org_admin(self, org: str) -> httpx.Client:
        return httpx.Client(
            base_url=f"{self.sandbox_url}/orgs/{org}{API}", headers={"Authorization": f"Bearer admin-of-{org}"}
        )

    def rows(self, org: str) -> dict[str, str]:
        """Active rows of ``org`` set to server-side sync (those Test & Enable claims): address -> mailboxid."""
        out: dict[str, str] = {}
        with self.org_admin(org) as client:
            url: str | None = (
                "mailboxes?$select=mailboxid,emailaddress&$filter=statecode eq 0 and actdeliverymethod eq 1"
            )
            while url:
                page = client.get(url, headers={"Prefer": "odata.maxpagesize=500"}).json()
                for row in page["value"]:
                    out[MailboxKey.parse(row["emailaddress"]).address] = row["mailboxid"]
                url = page.get("@odata.nextLink")
        return out

    def test_and_enable(self, org: str, mailbox_id: str) -> httpx.Response:
        """An org admin runs Test & Enable: the org calls OrgGuard's gate first."""
        with self.org_admin(org) as client:
            return client.patch(
                f"mailboxes({mailbox_id})",
                json={"testemailconfigurationscheduled": True},
                headers={"If-Match": "*"},
            )

    def contest(self, count: int, owner: str = "contoso-na", claimant: str = "contoso-jp") -> list[str]:
        """``count`` mailboxes that ``owner`` enabled first and ``claimant`` then claimed: held cases."""
        owners, claimants = self.rows(owner), self.rows(claimant)
        shared = sorted(set(owners) & set(claimants))
        assert len(shared) >= count, f"the sandbox has only {len(shared)} mailboxes in both orgs"
        chosen = shared[:count]
        for address in chosen:
            assert self.test_and_enable(owner, owners[address]).status_code == 204
        for address in chosen:
            answer = self.test_and_enable(claimant, claimants[address])
            assert answer.status_code >= 400, answer.text  # the gate held the claim: the save was cancelled
        return chosen

    def rows_with(self, org: str, address: str) -> dict[str, Any]:
        """The active row of ``address`` in ``org`` with the ACT columns, as the org holds it now."""
        wanted = MailboxKey.parse(address)
        select = "mailboxid,emailaddress,actdeliverymethod,orgmarkedasprimaryforexchangesync,statecode"
        with self.org_admin(org) as client:
            rows = client.get(
                f"mailboxes?$select={select}&$filter=statecode eq 0", headers={"Prefer": "odata.maxpagesize=5000"}
            )
        (row,) = [r for r in rows.json()["value"] if MailboxKey.parse(r["emailaddress"]) == wanted]
        return dict(row)

    def fault(self, org: str, spec: dict[str, Any] | None) -> None:
        """Make ``org``'s Web API fail as ``spec`` says (None: stop failing)."""
        self.sandbox.put("/_sandbox/settings", json={"org": org, "fail": spec}).raise_for_status()

    def exchange(self, address: str) -> str | None:
        org: str | None = self.sandbox.get(f"/_sandbox/exchange/{address}").json()["org"]
        return org

    def held(self) -> list[Any]:
        return list(self.c.ledger.cases(CaseQuery(state=CaseState.HELD, limit=500)).items)

    def contest_one(self) -> tuple[str, Any]:
        """One mailbox contested (``contest(1)``), and the case it is held in."""
        (address,) = self.contest(1)
        (case,) = self.held()
        return address, case

    def wait(self, check: Callable[[], bool], what: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.1)


@pytest.fixture
def make_host(tmp_path: Path) -> Iterator[Callable[..., Host]]:
    """Start the host (once per test); ``auth="easyauth"`` puts it behind App Service Authentication's headers."""
    stack: list[Any] = []

    # 80 rows per org, all shared: 24 people have a server-side sync mailbox in both contoso-na and contoso-jp.
    def start(
        *,
        auth: str = "token",
        mailboxes: int = 80,
        overlap: float = 1.0,
        policy: str = HOLDING_POLICY,
        bus: bool = False,
    ) -> Host:
        sandbox_cm = running(mailboxes=mailboxes, overlap=overlap, loopback_webhooks=True)  # as `serve --sandbox`
        sandbox_url = sandbox_cm.__enter__()
        stack.append(sandbox_cm)
        settings = Settings(
            ledger=f"sqlite:///{tmp_path}/ledger.db",
            orgs="-",
            policy=str(tmp_path / "none"),
            admin_token=ADMIN_TOKEN,
            auth=auth,  # type: ignore[arg-type]
            bus=f"sqlite:///{tmp_path}/bus.db" if bus else None,  # the local work queue, as `orgguard serve` runs
        )
        c = bootstrap.build(settings, ledger=SqliteLedger(tmp_path / "ledger.db"), orgs=registry(sandbox_url))
        c.service.save_policy(policy, actor="test")
        bootstrap.install(c)
        stack.append(c)
        server_cm = serve(create_local_app(c, background=True))
        url = server_cm.__enter__()
        stack.append(server_cm)
        run_async(lambda: c.register(c.orgs.names, url))
        sandbox = httpx.Client(base_url=sandbox_url, timeout=30)
        stack.append(sandbox)
        return Host(url, sandbox_url, c, sandbox)

    yield start
    for item in reversed(stack):
        if isinstance(item, bootstrap.Container):
            bootstrap.install(None)
            item.close()
        elif isinstance(item, httpx.Client):
            item.close()
        else:
            item.__exit__(None, None, None)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    report = yield
    if report.when == "call":
        item.stash[FAILED] = report.failed
    return report


FAILED = pytest.StashKey[bool]()


@pytest.fixture
def open_page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    """A new page in a context of its own (its own sessionStorage, headers, time zone, viewport).

    Any uncaught error in the page's scripts fails the test; a failed test leaves a screenshot of each page.
    """
    contexts: list[Any] = []
    errors: list[str] = []

    def new(**options: Any) -> Any:
        options.setdefault("timezone_id", "Asia/Tokyo")
        options.setdefault("locale", "en-US")
        context = browser.new_context(**options)
        context.set_default_timeout(15_000)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", csp_violations)
        return page

    def csp_violations(message: Any) -> None:
        """The page's Content-Security-Policy allows its own files only: a violation is a bug in the page."""
        if message.type == "error" and "Content Security Policy" in message.text:
            errors.append(message.text)

    yield new
    if request.node.stash.get(FAILED, False):
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        test = re.sub(r"[^\w.-]+", "_", request.node.name)
        for n, context in enumerate(contexts):
            for m, page in enumerate(context.pages):
                page.screenshot(path=str(ARTIFACTS / f"{test}-failed-{n}{m}.png"), full_page=True)
    for context in contexts:
        context.close()
    assert not errors, f"the page's scripts failed: {errors}"


@pytest.fixture
def shoot(request: pytest.FixtureRequest) -> Callable[[Any, str], Path]:
    """Save a full-page screenshot under tests/artifacts/browser/<test>-<step>.png."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    test = re.sub(r"[^\w.-]+", "_", request.node.name)
    for old in ARTIFACTS.glob(f"{test}-*.png"):
        old.unlink()

    def take(page: Any, step: str) -> Path:
        path = ARTIFACTS / f"{test}-{step}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take
