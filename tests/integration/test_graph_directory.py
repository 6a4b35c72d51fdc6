"""The user directory on the real msgraph-sdk against the sandbox's Graph: answers, caching, and every fault.

Each fault has one defined outcome: the lookup raises ``UserUnknown`` within the
time limit (an outage, or a defined "no such user" / "two users"), and after an
outage Graph is not asked again until its ``Retry-After`` or the cool-down passed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from sandbox.server import running
from shared.bootstrap import graph_factory
from shared.domain.model import MailboxKey
from shared.domain.policy import UserUnknown
from shared.graph.directory import GraphDirectory
from tests.factories import AIKO

pytestmark = pytest.mark.sandbox


@pytest.fixture(scope="module")
def sandbox_url() -> Iterator[str]:
    with running(mailboxes=30) as url:
        yield url


@pytest.fixture
def sandbox(sandbox_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sandbox_url, timeout=30) as client:
        client.post("/_sandbox/reset").raise_for_status()
        yield client


@pytest.fixture
def directory(sandbox_url: str, sandbox: httpx.Client) -> Iterator[GraphDirectory]:
    found = GraphDirectory(graph_factory(f"{sandbox_url}/graph/v1.0", timeout=1.0), timeout=1.0)
    yield found
    found.close()


def fail(sandbox: httpx.Client, **fault: object) -> None:
    sandbox.put("/_sandbox/settings", json={"graph_fail": fault}).raise_for_status()


def asked(sandbox: httpx.Client) -> int:
    return int(sandbox.get("/_sandbox/graph").json()["http"])


def test_aiko_is_found_with_her_attributes_and_nested_groups(directory: GraphDirectory) -> None:
    user = directory.attributes(AIKO)
    assert (user["usageLocation"], user["country"], user["officeLocation"]) == ("JP", "Japan", "Tokyo")
    member_of = user["memberOf"]
    assert isinstance(member_of, list) and {"Contoso JP", "Sales", "All Employees"} <= set(member_of)


def test_a_proxy_address_finds_the_same_user(directory: GraphDirectory) -> None:
    alias = directory.attributes(MailboxKey.parse("aiko.tanaka@contoso.onmicrosoft.com"), groups=False)
    assert alias["usageLocation"] == "JP" and "memberOf" not in alias


def test_answers_come_from_the_cache_the_second_time(directory: GraphDirectory, sandbox: httpx.Client) -> None:
    directory.attributes(AIKO)
    before = asked(sandbox)
    directory.attributes(AIKO)
    directory.attributes(AIKO, groups=False)  # a cached answer with groups serves one without
    assert asked(sandbox) == before


def test_an_unknown_address_is_unknown_and_remembered(directory: GraphDirectory, sandbox: httpx.Client) -> None:
    nobody = MailboxKey.parse("nobody@contoso.com")
    with pytest.raises(UserUnknown) as first:
        directory.attributes(nobody)
    assert not first.value.outage and "no user" in first.value.reason
    before = asked(sandbox)
    with pytest.raises(UserUnknown):
        directory.attributes(nobody)
    assert asked(sandbox) == before  # negative caching


def test_an_address_two_users_share_names_nobody(directory: GraphDirectory, sandbox: httpx.Client) -> None:
    for name in ("Shared One", "Shared Two"):
        spec = {"displayName": name, "mail": f"{name.split()[1].lower()}@contoso.com", "usageLocation": "US",
                "proxyAddresses": ["smtp:helpdesk@contoso.com"]}  # fmt: skip
        sandbox.post("/_sandbox/graph/users", json=spec).raise_for_status()
    with pytest.raises(UserUnknown) as raised:
        directory.attributes(MailboxKey.parse("helpdesk@contoso.com"))
    assert not raised.value.outage and "2 users" in raised.value.reason


@pytest.mark.parametrize(
    ("fault", "words"),
    [
        ({"status": 503}, "503"),
        ({"status": 429, "retry_after": 30}, "429"),
        ({"status": 403}, "403"),
        ({"status": 200, "malformed": True}, "could not be read"),
        ({"status": 200, "delay_ms": 2500}, "did not answer within"),
    ],
    ids=["503", "429", "403", "malformed-json", "timeout"],
)
def test_graph_failing_is_an_outage_within_the_time_limit(
    directory: GraphDirectory, sandbox: httpx.Client, fault: dict, words: str
) -> None:
    directory.attributes(MailboxKey.parse("orgguard@contoso.com"), groups=False)  # msgraph loaded: time the rest
    fail(sandbox, **fault, count=1, match="users")
    started = time.monotonic()
    with pytest.raises(UserUnknown) as raised:
        directory.attributes(AIKO)
    assert time.monotonic() - started < 2.0  # never longer than the 1 s limit (plus the client's own overhead)
    assert raised.value.outage and words in raised.value.reason
    assert "Microsoft Graph was unavailable" in raised.value.reason


def test_after_an_outage_graph_is_left_alone_until_retry_after(
    directory: GraphDirectory, sandbox: httpx.Client
) -> None:
    clock = [1000.0]
    directory.clock = lambda: clock[0]
    fail(sandbox, status=429, retry_after=20, count=50)  # a 429 storm
    with pytest.raises(UserUnknown):
        directory.attributes(AIKO)
    before = asked(sandbox)
    for _ in range(10):  # a burst of decisions during the storm: none asks Graph, none waits
        with pytest.raises(UserUnknown) as raised:
            directory.attributes(AIKO)
        assert raised.value.outage and "not asked again" in raised.value.reason
    assert asked(sandbox) == before
    fail(sandbox, count=0)  # the storm is over
    clock[0] += 21
    assert directory.attributes(AIKO)["usageLocation"] == "JP"


def test_prefetch_resolves_many_users_in_batches(directory: GraphDirectory, sandbox: httpx.Client) -> None:
    rows = httpx.get(f"{sandbox.base_url}/graph/v1.0/users", params={"$top": "60"},
                     headers={"Authorization": "Bearer t"}).json()["value"]  # fmt: skip
    keys = [MailboxKey.parse(r["mail"]) for r in rows[:45]]
    sandbox.delete("/_sandbox/graph/requests")
    directory.prefetch(keys)
    counters = sandbox.get("/_sandbox/graph").json()
    # 45 users: 3 batches of lookups + 3 batches of memberships, instead of 90 requests
    assert counters["http"] == 6 and counters["batches"] == 6 and counters["inner"] == 90
    before = asked(sandbox)
    assert all(directory.attributes(k)["usageLocation"] for k in keys)
    assert asked(sandbox) == before


def test_a_failing_batch_leaves_the_keys_to_later_lookups(directory: GraphDirectory, sandbox: httpx.Client) -> None:
    keys = [AIKO, MailboxKey.parse("orgguard@contoso.com")]
    fail(sandbox, status=503, count=1, match="$batch")
    directory.prefetch(keys)  # never raises: a sweep goes on
    assert directory.attributes(AIKO)["usageLocation"] == "JP"
