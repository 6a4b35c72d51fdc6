"""Queue mailboxes: a few per org, some of them shared between orgs like people's.

A mailbox belongs to a user or to a queue: `regardingobjectid` targets queue or systemuser
(mailbox table reference, RegardingObjectId "Targets: queue,systemuser", and
RegardingObjectTypeCode). A shared support address configured in two orgs is contested just as
a person's is, so the seed has one: `support@contoso.com` in contoso-na (which Exchange holds)
and contoso-eu (failing with the alert). Deterministic: no random draws, so it changes nothing
else the seed makes.
"""

from __future__ import annotations

from sandbox.model import QUEUE, DictRecord, Mailbox, mailbox_key
from sandbox.state import OrgState, SandboxState, alert, stable_id

QUEUES = {
    "NA": (("Customer Support", "support@contoso.com"), ("Sales Inquiries", "sales@contoso.com")),
    "JP": (("Customer Support Japan", "support@contoso.co.jp"), ("Sales Inquiries Japan", "Sales@Contoso.co.jp")),
    "EU": (("Customer Support", "Support@Contoso.com"), ("Billing", "billing@contoso.eu")),
}


def seed_queues(state: SandboxState, orgs: list[OrgState], regions: list[str], seeded_on: str, tested_on: str) -> None:
    """Each org's region's queues with their mailboxes; the first org with an address holds it in Exchange."""
    for org, region in zip(orgs, regions, strict=True):
        system = stable_id(org.id, "SYSTEM")
        for name, address in QUEUES.get(region, QUEUES["NA"]):
            queue_id, mailbox_id = stable_id(org.id, "queue", address), stable_id(org.id, "queue-mailbox", address)
            org.tables["queues"].add(
                DictRecord(
                    QUEUE,
                    {
                        "queueid": queue_id,
                        "name": name,
                        "emailaddress": address,
                        "_defaultmailbox_value": mailbox_id,
                        "statecode": 0,
                        "versionnumber": org.version(),
                    },
                )
            )
            key = mailbox_key(address)
            holder = state.exchange.setdefault(key, org.name)
            row = Mailbox(
                mailboxid=mailbox_id,
                name=name,
                emailaddress=address,
                _regardingobjectid_value=queue_id,
                regardingobjecttypecode="queue",
                actdeliverymethod=1,
                actstatus=1 if holder == org.name else 2,
                incomingemailstatus=1,
                outgoingemailstatus=1,
                mailboxstatus=1 if holder == org.name else 2,
                isactsyncorgflagset=holder == org.name,
                testmailboxaccesscompletedon=tested_on,
                testemailconfigurationretrycount=1,
                modifiedon=seeded_on,
                _modifiedby_value=system,
                versionnumber=org.version(),
            )
            org.mailboxes.add(row)
            if holder != org.name:
                org.tables["tracelogs"].add(alert(org, row, stable_id(org.id, "alert", address), tested_on))
