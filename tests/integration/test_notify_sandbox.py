"""Notifications end to end over real HTTP, on both ledgers: the sandbox's org calls OrgGuard's gate,
OrgGuard decides and mails through the real msgraph-sdk to the sandbox's Graph, and what was sent is read
back from ``/_sandbox/mail``, as a person would see it.

Nothing is applied without Graph's 202; clean failures wait and go out once; a lost answer is never
resent by itself; a large group goes out in parts and nobody gets a part twice.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest

from functions.local_host import create_local_app
from sandbox.server import running
from shared import bootstrap
from shared.config.settings import Settings
from shared.domain.model import ActionKind, ActionStatus, Case, CaseQuery, CaseState, NoticeKind
from shared.ledger import open_ledger
from tests.factories import AIKO, PRIMARY_BY_USAGE_LOCATION, claim, registry
from tests.serving import serve

pytestmark = pytest.mark.sandbox
API = "/api/data/v9.2"
PUBLIC = "https://orgguard.contoso.test"
SENDER = "orgguard@contoso.com"
LEDGERS = ("sqlite", pytest.param("tables", marks=pytest.mark.azurite))

HOLD_AND_TELL = """
version: 1
default: hold
rules: []
approval:
  approvers: [group:OrgGuard Approvers]
  expires_after: P3D
"""

BY_LOCATION = (
    "version: 1\ndefault: hold\napproval: {approvers: [group:OrgGuard Approvers]}\n" + PRIMARY_BY_USAGE_LOCATION
)


@pytest.fixture(scope="module")
def sandbox_url() -> Iterator[str]:
    with running(mailboxes=20, overlap=0.3, loopback_webhooks=True) as url:
        yield url


@dataclass
class World:
    sandbox: httpx.Client
    url: str
    c: bootstrap.Container

    def admin(self, org: str, token: str) -> httpx.Client:
        return httpx.Client(base_url=f"{self.url}/orgs/{org}{API}", headers={"Authorization": f"Bearer {token}"},
                            timeout=30)  # fmt: skip

    def test_and_enable(self, org: str, token: str, *, checkbox: bool = False) -> httpx.Response:
        with self.admin(org, token) as client:
            rows = client.get(
                "mailboxes", params={"$select": "mailboxid", "$filter": f"contains(emailaddress,'{AIKO}')"}
            )
            (row,) = rows.json()["value"]
            body: dict[str, object] = {"testemailconfigurationscheduled": True}
            if checkbox:
                body["orgmarkedasprimaryforexchangesync"] = True
            return client.patch(f"mailboxes({row['mailboxid']})", json=body, headers={"If-Match": "*"})

    def user_id(self, org: str, token: str) -> str:
        with self.admin(org, token) as client:
            return str(client.get("WhoAmI").json()["UserId"])

    def mail(self) -> list[dict]:
        return list(self.sandbox.get("/_sandbox/mail").json()["mail"])

    def fail(self, *faults: dict) -> None:
        self.sandbox.put("/_sandbox/settings", json={"graph_fail": list(faults)}).raise_for_status()

    def run(self, rounds: int = 1) -> None:
        for _ in range(rounds):
            asyncio.run(self.c.run_actions())

    def later(self, minutes: float) -> None:
        """Let time pass for OrgGuard (backoffs, Retry-After) without waiting for it."""
        now = self.c.service.clock()
        self.c.service.clock = lambda: now + timedelta(minutes=minutes)

    def case(self) -> Case:
        (case,) = self.c.ledger.cases(CaseQuery()).items
        return case

    def notices(self, kind: NoticeKind) -> list:
        return [a for a in self.case().actions if a.notice and a.notice.kind is kind]


@pytest.fixture(params=LEDGERS)
def world(request: pytest.FixtureRequest, tmp_path, sandbox_url: str) -> Iterator[World]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/l.db"
    else:
        url = f"tables:{request.getfixturevalue('azurite').rstrip(';')};TablePrefix=n{uuid.uuid4().hex[:12]}"
    settings = Settings(ledger=url, orgs="-", policy=str(tmp_path / "none"), admin_token="t",
                        graph_url=f"{sandbox_url}/graph/v1.0", mail_from=SENDER, public_url=PUBLIC,
                        graph_timeout_s=2.0)  # fmt: skip
    with httpx.Client(base_url=sandbox_url, timeout=30) as sandbox:
        sandbox.post("/_sandbox/reset").raise_for_status()
        c = bootstrap.build(settings, ledger=open_ledger(url), orgs=registry(sandbox_url))
        c.mail_timeout_s = 2.0
        c.service.save_policy(HOLD_AND_TELL, actor="test")
        bootstrap.install(c)
        with serve(create_local_app(c, background=False)) as orgguard_url:
            asyncio.run(c.register(c.orgs.names, orgguard_url))
            yield World(sandbox, sandbox_url, c)
        bootstrap.install(None)
        drop = getattr(c.ledger, "drop_tables", None)
        if drop is not None:
            drop()
        c.close()


def approvers(w: World) -> set[str]:
    """The members of the sandbox's approvers group, as Graph lists them (lower-cased)."""
    with httpx.Client(base_url=f"{w.url}/graph/v1.0", headers={"Authorization": "Bearer t"}) as graph:
        (group,) = graph.get("groups", params={"$filter": "displayName eq 'OrgGuard Approvers'"}).json()["value"]
        members = graph.get(f"groups/{group['id']}/transitiveMembers", params={"$top": "999"}).json()["value"]
    return {m["mail"].lower() for m in members}


def recipients(message: dict, field: str) -> set[str]:
    return {r["emailAddress"]["address"].lower() for r in message.get(field) or []}


def test_a_held_claim_mails_the_stopped_admin_and_the_approvers(world: World) -> None:
    assert world.test_and_enable("contoso-na", "na-admin").status_code == 204
    stopped = world.test_and_enable("contoso-jp", "jp-admin")
    assert stopped.status_code >= 400  # the gate's 409 cancelled the save
    case = world.case()
    assert case.state is CaseState.HELD
    assert {a.notice.kind for a in case.actions if a.notice} == {NoticeKind.STOPPED, NoticeKind.APPROVAL}
    assert world.mail() == []  # recorded with the decision, sent by the outbox

    world.run()
    mails = {m["message"]["subject"]: m for m in world.mail()}
    assert len(mails) == 2
    admin = next(m["message"] for s, m in mails.items() if "waits for an approver" in s)
    assert recipients(admin, "toRecipients") == {"jp-admin@contoso.co.jp"}  # systemuser.internalemailaddress
    assert f"{PUBLIC}/#/cases/{case.id}" in admin["textBody"] and case.id in admin["body"]["content"]
    asking = next(m["message"] for s, m in mails.items() if s.startswith("Approval needed"))
    assert recipients(asking, "toRecipients") == {SENDER}
    assert recipients(asking, "bccRecipients") == approvers(world) != set()
    assert '<html lang="en">' in asking["body"]["content"] and "orgguard cases approve" in asking["textBody"]
    assert all(m["from"] == SENDER for m in world.mail())
    stored = world.case()
    assert stored.state is CaseState.HELD  # sending the notices does not settle the case
    assert all(a.status is ActionStatus.APPLIED for a in stored.actions)

    world.run(3)  # nothing is sent twice
    assert len(world.mail()) == 2

    world.c.service.approve(case.id, actor="approver", reason="Aiko moved to Tokyo")
    world.run(3)
    told = [m["message"] for m in world.mail() if "was approved" in m["message"]["subject"]]
    assert len(told) == 1 and recipients(told[0], "toRecipients") == {"jp-admin@contoso.co.jp"}
    assert "Aiko moved to Tokyo" in told[0]["textBody"]


def test_graph_failing_defers_notices_which_go_out_once_when_it_is_back(world: World) -> None:
    world.c.service.handle_claim(claim("contoso-na", op="na"))
    user = world.user_id("contoso-jp", "jp-admin")
    world.fail({"status": 503, "count": 2, "match": "sendMail"}, {"status": 429, "count": 2, "match": "sendMail",
                                                                   "retry_after": 120})  # fmt: skip
    world.c.service.handle_claim(claim("contoso-jp", op="jp", user_id=user))
    world.run()
    assert world.mail() == []
    for action in world.case().actions:
        assert action.status is ActionStatus.PENDING and action.attempts == 1 and "503" in (action.last_error or "")
    world.later(5)
    world.run()  # the 429s: Retry-After 120 s is honoured
    deferred = world.case().actions
    assert all(a.status is ActionStatus.PENDING and "429" in (a.last_error or "") for a in deferred)
    assert all(a.next_attempt_at and a.next_attempt_at >= world.c.service.clock() + timedelta(seconds=119)
               for a in deferred)  # fmt: skip
    world.run()  # not due yet: nothing is sent
    assert world.mail() == []
    world.later(10)
    world.run(2)
    assert len(world.mail()) == 2
    assert all(a.status is ActionStatus.APPLIED and a.attempts == 3 for a in world.case().actions)


def test_a_refused_send_fails_visibly_and_a_retry_sends_it_once(world: World) -> None:
    world.c.service.handle_claim(claim("contoso-na", op="na"))
    world.fail({"status": 403, "count": 1, "match": "sendMail"})
    world.c.service.handle_claim(claim("contoso-jp", op="jp"))  # no user: only the approvers are told
    world.run()
    (notice,) = world.notices(NoticeKind.APPROVAL)
    assert notice.status is ActionStatus.FAILED and "Mail.Send" in (notice.last_error or "")
    assert world.case().state is CaseState.HELD and world.mail() == []
    world.c.service.retry_action(notice.id, actor="operator")
    world.run(2)
    assert len(world.mail()) == 1
    assert world.notices(NoticeKind.APPROVAL)[0].status is ActionStatus.APPLIED


def test_a_lost_answer_is_not_resent_by_itself(world: World) -> None:
    world.c.service.handle_claim(claim("contoso-na", op="na"))
    world.fail({"status": 202, "count": 1, "match": "sendMail", "delay_ms": 3000})  # answered after the 2 s limit
    world.c.service.handle_claim(claim("contoso-jp", op="jp"))
    world.run()
    (notice,) = world.notices(NoticeKind.APPROVAL)
    assert notice.status is ActionStatus.FAILED
    assert "may have been sent" in (notice.last_error or "") and f"<{notice.id}.0@contoso.com>" in notice.last_error
    world.later(60)
    world.run(3)
    assert world.notices(NoticeKind.APPROVAL)[0].status is ActionStatus.FAILED  # still not resent


def test_a_group_of_thousands_is_paged_and_mailed_in_parts_nobody_twice(world: World) -> None:
    world.sandbox.post("/_sandbox/graph/groups/Everyone Approves/members", json={"count": 1200}).raise_for_status()
    world.c.service.save_policy(HOLD_AND_TELL.replace("OrgGuard Approvers", "Everyone Approves"), actor="test")
    world.c.service.handle_claim(claim("contoso-na", op="na"))
    world.fail({"status": 503, "count": 1, "match": "sendMail", "skip": 1})  # the second part fails
    world.c.service.handle_claim(claim("contoso-jp", op="jp"))
    world.run()
    (notice,) = world.notices(NoticeKind.APPROVAL)
    assert notice.status is ActionStatus.PENDING and notice.notice is not None and len(notice.notice.sent) == 500
    world.later(10)
    world.run()
    assert world.notices(NoticeKind.APPROVAL)[0].status is ActionStatus.APPLIED
    parts = [m["message"] for m in world.mail()]
    assert [len(p["bccRecipients"]) for p in parts] == [500, 500, 200]
    reached = [a for p in parts for a in recipients(p, "bccRecipients")]
    assert len(reached) == len(set(reached)) == 1200
    ids = [p["internetMessageId"] for p in parts]
    assert len(set(ids)) == 3 and all(i.startswith(f"<{notice.id}.") for i in ids)


def test_a_group_that_does_not_exist_fails_the_notice_and_says_so(world: World) -> None:
    world.c.service.save_policy(HOLD_AND_TELL.replace("OrgGuard Approvers", "No Such Group"), actor="test")
    world.c.service.handle_claim(claim("contoso-na", op="na"))
    world.c.service.handle_claim(claim("contoso-jp", op="jp"))
    world.run()
    (notice,) = world.notices(NoticeKind.APPROVAL)
    assert notice.status is ActionStatus.FAILED and "group:No Such Group (no group has that name)" in notice.last_error


def test_graph_down_still_decides_and_the_case_is_decided_again_when_it_is_back(world: World) -> None:
    world.c.service.save_policy(BY_LOCATION, actor="test")
    world.c.service.handle_claim(claim("contoso-na", op="na"))
    world.fail({"status": 503, "count": 1000, "match": "$filter", "retry_after": 1})
    outcome = world.c.service.handle_claim(claim("contoso-jp", op="jp"))
    assert outcome.decision.effect.value == "hold"  # the designation could not match: the default holds it
    assert "Microsoft Graph was unavailable" in outcome.decision.explanation
    case = world.case()
    assert case.state is CaseState.HELD and "user.usageLocation" not in case.decision.explanation
    world.fail()
    time.sleep(1.2)  # past Graph's Retry-After: the directory asks again
    again = world.c.service.reevaluate(case.id, actor="approver")
    assert again.state is CaseState.DECIDED and again.decision.rule == "designated-primary"
    assert world.c.ledger.mailbox(AIKO).ownership.owner == "contoso-jp"  # type: ignore[union-attr]
    assert {a.kind for a in again.actions if a.writes} == {ActionKind.DEMOTE, ActionKind.PROMOTE}


def test_nothing_is_sent_before_the_decision_is_recorded_or_without_mail_settings(world: World, tmp_path) -> None:
    quiet = bootstrap.build(
        Settings(ledger=f"sqlite:///{tmp_path}/q.db", orgs="-", policy="none"), orgs=registry(world.url)
    )
    quiet.service.save_policy(HOLD_AND_TELL, actor="test")
    quiet.service.handle_claim(claim("contoso-na", op="na"))
    quiet.service.handle_claim(claim("contoso-jp", op="jp", user_id=str(uuid.uuid4())))
    (case,) = quiet.ledger.cases(CaseQuery()).items
    assert case.actions == ()  # no Graph and no sender: no notify actions to leave pending forever
    assert quiet.service.policy_warnings() == []
    quiet.close()


def test_approvers_are_reminded_once_and_told_when_it_expired(world: World) -> None:
    world.c.service.handle_claim(claim("contoso-na", op="na"))
    user = world.user_id("contoso-jp", "jp-admin")
    world.c.service.handle_claim(claim("contoso-jp", op="jp", user_id=user))
    world.run()
    assert world.c.service.remind_held() == []  # three days left: too early
    world.later(60 * 48 + 1)  # a day before expiry
    assert len(world.c.service.remind_held()) == 1
    assert world.c.service.remind_held() == []  # a second housekeeping round adds nothing
    world.run()
    (reminder,) = world.notices(NoticeKind.REMINDER)
    assert reminder.status is ActionStatus.APPLIED
    world.later(60 * 72 + 1)
    (expired,) = world.c.service.expire_held()
    assert expired.state is CaseState.EXPIRED
    world.run()
    (told,) = world.notices(NoticeKind.EXPIRED)
    assert told.status is ActionStatus.APPLIED and told.notice is not None
    assert f"admin:contoso-jp/{user}" in told.notice.to and "group:OrgGuard Approvers" in told.notice.to
    subjects = [m["message"]["subject"] for m in world.mail()]
    assert sum(s.startswith("Reminder: case") for s in subjects) == 1
    (word,) = [
        m["message"] for m in world.mail() if "expired: the mailbox stays with contoso-na" in m["message"]["subject"]
    ]
    assert recipients(word, "bccRecipients") == approvers(world) | {"jp-admin@contoso.co.jp"}  # one message to all


def test_the_operations_digest_lists_failed_actions_once_per_period(world: World) -> None:
    ops = HOLD_AND_TELL + "notify: {operations: [ops@contoso.com], digest_every: P1D}\n"
    world.c.service.save_policy(ops.replace("OrgGuard Approvers", "No Such Group"), actor="test")
    world.c.service.handle_claim(claim("contoso-na", op="na"))
    world.c.service.handle_claim(claim("contoso-jp", op="jp"))
    world.run()  # the approval notice fails (no such group); the digest goes out in the same round
    digests = [m["message"] for m in world.mail() if m["message"]["subject"].startswith("OrgGuard: 1 action failed")]
    assert len(digests) == 1 and recipients(digests[0], "toRecipients") == {"ops@contoso.com"}
    assert "a***@contoso.com" in digests[0]["textBody"] and AIKO.address not in digests[0]["textBody"]
    world.run(2)
    assert len([m for m in world.mail() if m["message"]["subject"].startswith("OrgGuard:")]) == 1  # not again today
