"""Deterministic, realistic seed data: the same arguments give the same world, byte for byte.

Every org gets about `mailboxes` user mailbox rows, plus a few queue mailboxes (`sandbox.queues`).
A fraction `overlap` of each org's rows belong to people who also have a mailbox in one or two
other orgs (the situation OrgGuard exists for); addresses are written with mixed case and
stray whitespace the way admins type them; some rows have ACT method None, some are inactive,
and Exchange remembers the org that last won each address. Aiko Tanaka is always there, as the fixtures describe her.
"""

from __future__ import annotations

import gc
import random
from dataclasses import dataclass
from functools import cache

from sandbox.model import Mailbox, SystemUser, mailbox_key
from sandbox.queues import seed_queues
from sandbox.state import GraphUser, OrgState, SandboxState, SeedParams, alert, new_org, stable_id

FIXED_ORGS = (
    ("contoso-na", "3f0e6c1a-5b7d-4e2a-9c11-2a6f0b8d4e01", "5d4c3b2a-1f0e-4d9c-8b7a-6f5e4d3c2b1a", "NA"),
    ("contoso-jp", "8a2d4f60-1c3b-4f7e-b5a9-7d0c9e2f6a12", "1b2c3d4e-5f60-4718-8293-a4b5c6d7e8f9", "JP"),
    ("contoso-eu", "c47b9e23-6d5a-4b18-8e3f-5f1a2c7d9b34", "7e6f5a4b-3c2d-4e1f-9a0b-8c7d6e5f4a3b", "EU"),
)
MAIL_DOMAINS = {"NA": "contoso.com", "JP": "contoso.co.jp", "EU": "contoso.eu"}
OFFICES = {"US": "Seattle", "CA": "Toronto", "JP": "Tokyo", "DE": "Munich", "FR": "Paris", "NL": "Amsterdam",
           "IT": "Milan"}  # fmt: skip
SENDER = "orgguard@contoso.com"  # the mailbox OrgGuard sends notifications from (ORGGUARD_MAIL_FROM)
AIKO_ADDRESS = "Aiko.Tanaka@Contoso.com"
AIKO_JP_MAILBOX = "f1e2d3c4-b5a6-4978-8a9b-0c1d2e3f4a5b"
AIKO_JP_USER = "9a8b7c6d-5e4f-4a3b-2c1d-0e9f8a7b6c5d"
SEEDED_ON = "2025-10-01T08:00:00Z"
TESTED_ON = "2025-11-20T09:30:00Z"

NAMES = {
    "NA": (
        ("James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda", "David", "Susan", "Kevin"),
        ("Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Wilson", "Moore", "Clark"),
        ("contoso.com", "contoso.com", "contoso.com", "fabrikam.com"),
        (("US", "United States"), ("US", "United States"), ("CA", "Canada")),
    ),
    "JP": (
        ("Hiroshi", "Yuki", "Takeshi", "Sakura", "Kenji", "Haruka", "Daiki", "Yui", "Sota", "Mei", "Ren"),
        ("Sato", "Suzuki", "Takahashi", "Watanabe", "Ito", "Yamamoto", "Nakamura", "Kobayashi", "Kato", "Yoshida"),
        ("contoso.co.jp", "contoso.co.jp", "contoso.com"),
        (("JP", "Japan"),),
    ),
    "EU": (
        ("Lukas", "Emma", "Matteo", "Sofia", "Louis", "Chloe", "Jan", "Anna", "Lars", "Ingrid", "Pablo"),
        ("Müller", "Schmidt", "Rossi", "Dubois", "Martin", "Jansen", "Nielsen", "Novak", "Garcia", "Weber"),
        ("contoso.eu", "contoso.de", "contoso.com"),
        (("DE", "Germany"), ("FR", "France"), ("NL", "Netherlands"), ("IT", "Italy")),
    ),
}
DEPARTMENTS = ("Sales", "Marketing", "Engineering", "Finance", "Support", "Human Resources", "Legal")
TITLES = ("Account Manager", "Engineer", "Analyst", "Consultant", "Director", "Specialist")
APPROVERS = "OrgGuard Approvers"


@dataclass
class Person:
    first: str
    last: str
    address: str  # canonical spelling
    region: str
    orgs: list[int]


def seed(
    state: SandboxState | None = None,
    mailboxes: int = 60,
    overlap: float = 0.3,
    seed: int = 7,
    orgs: int = 3,
) -> SandboxState:
    """Fill `state` (or a new one) with orgs, users, mailboxes, Exchange and Graph; keep its settings."""
    if mailboxes < 1 or not 0.0 <= overlap <= 1.0 or orgs < 1:
        raise ValueError("mailboxes >= 1, 0 <= overlap <= 1 and orgs >= 1 are required")
    state = state if state is not None else SandboxState()
    rng = random.Random(seed)
    org_states = _orgs(orgs)
    state.orgs = {org.name: org for org in org_states}
    state.exchange, state.graph_users, state.graph_by_address, state.mail, state.events = {}, {}, {}, [], []
    state.groups, state.graph_faults = {}, []
    state.seeded_with = SeedParams(mailboxes=mailboxes, overlap=overlap, seed=seed, orgs=orgs)
    regions = [FIXED_ORGS[i][3] if i < len(FIXED_ORGS) else "NA" for i in range(len(org_states))]
    for org, region in zip(org_states, regions, strict=True):
        org.systemusers.add(_system_user(org))
        org.mail_domain = MAIL_DOMAINS[region]
    _groups(state)
    state.add_graph_user(_sender())
    for region in dict.fromkeys(regions):
        state.add_graph_user(_approver(state, region))
    collecting = gc.isenabled()
    gc.disable()  # hundreds of thousands of long-lived objects: collections only cost time here
    try:
        for person in _people(rng, regions, mailboxes, overlap):
            _place(rng, state, org_states, person)
        seed_queues(state, org_states, regions, SEEDED_ON, TESTED_ON)
    finally:
        # The world lives as long as the sandbox: out of the collector's sight, a collection while it serves
        # (one comes every few thousand allocations) no longer walks millions of seeded objects each time.
        gc.freeze()
        if collecting:
            gc.enable()
    return state


def _orgs(count: int) -> list[OrgState]:
    result = []
    for index in range(count):
        if index < len(FIXED_ORGS):
            name, org_id, unit, _ = FIXED_ORGS[index]
        else:
            name = f"contoso-org{index + 1}"
            org_id, unit = stable_id("org", name), stable_id("businessunit", name)
        result.append(new_org(name, org_id, unit))
    return result


_VERSION_MASK = ~((0xF000 << 64) | (0xC000 << 48))
_VERSION_BITS = (0x4000 << 64) | (0x8000 << 48)


def _guid(rng: random.Random) -> str:
    """A version-4 GUID from the seeded generator (uuid.UUID is too slow for 200k rows)."""
    h = f"{(rng.getrandbits(128) & _VERSION_MASK) | _VERSION_BITS:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _people(rng: random.Random, regions: list[str], per_org: int, overlap: float) -> list[Person]:
    count = len(regions)
    taken: dict[str, int] = {mailbox_key(AIKO_ADDRESS): 1}
    load = [0] * count
    people = [Person("Aiko", "Tanaka", AIKO_ADDRESS, "JP", [0, 1] if count > 1 else [0])]
    for index in people[0].orgs:
        load[index] += 1
    if count > 1:
        mean_orgs = 2.2 if count > 2 else 2.0
        for _ in range(round(overlap * per_org * count / mean_orgs)):
            size = 3 if count > 2 and rng.random() < 0.2 else 2
            open_orgs = [index for index in range(count) if load[index] < per_org]
            if len(open_orgs) < 2:
                break
            chosen = rng.sample(open_orgs, min(size, len(open_orgs)))
            people.append(_person(rng, regions[chosen[0]], chosen, taken))
            for index in chosen:
                load[index] += 1
    for index in range(count):
        for _ in range(per_org - load[index]):
            people.append(_person(rng, regions[index], [index], taken))
    return people


def _person(rng: random.Random, region: str, orgs: list[int], taken: dict[str, int]) -> Person:
    """A new person with an address nobody else has (first.last, then first.last2, ...)."""
    firsts, lasts, domains, _ = NAMES[region]
    first, last, domain = rng.choice(firsts), rng.choice(lasts), rng.choice(domains)
    base = mailbox_key(f"{first}.{last}@{domain}")
    number = taken.get(base, 0) + 1
    taken[base] = number
    local = f"{first}.{last}" if number == 1 else f"{first}.{last}{number}"
    address = f"{local}@{domain.capitalize()}" if rng.random() < 0.5 else f"{local}@{domain}"
    return Person(first, last, address, region, orgs)


def _spelling(rng: random.Random, address: str) -> str:
    """How an admin typed the address into this org."""
    roll = rng.random()
    if roll < 0.35:
        return address
    if roll < 0.65:
        return address.lower()
    if roll < 0.75:
        local, _, domain = address.partition("@")
        return f"{local}@{domain.upper()}"
    if roll < 0.85:
        return address.upper()
    if roll < 0.92:
        return f"{address} "
    return f" {address.lower()}"


def _place(rng: random.Random, state: SandboxState, orgs: list[OrgState], person: Person) -> None:
    aiko = person.address == AIKO_ADDRESS
    shared = len(person.orgs) > 1
    key = mailbox_key(person.address)
    rows: list[tuple[OrgState, Mailbox]] = []
    for index in person.orgs:
        org = orgs[index]
        user_id = AIKO_JP_USER if aiko and org.name == "contoso-jp" else _guid(rng)
        mailbox_id = AIKO_JP_MAILBOX if aiko and org.name == "contoso-jp" else _guid(rng)
        roll = rng.random()
        act = 1 if aiko or roll < (0.7 if shared else 0.8) else (2 if roll < 0.93 else 0)
        active = aiko or rng.random() >= 0.05
        org.systemusers.add(
            SystemUser(
                systemuserid=user_id,
                fullname=f"{person.first} {person.last}",
                internalemailaddress=person.address.lower(),
                domainname=person.address.lower(),
                azureactivedirectoryobjectid=None,
                _businessunitid_value=org.business_unit_id,
                isdisabled=not active,
                accessmode=0,
                versionnumber=org.version(),
            )
        )
        mailbox = Mailbox(
            mailboxid=mailbox_id,
            name=f"{person.first} {person.last}",
            emailaddress=person.address if aiko else _spelling(rng, person.address),
            _regardingobjectid_value=user_id,
            actdeliverymethod=act,
            incomingemaildeliverymethod=2,
            outgoingemaildeliverymethod=2,
            actstatus=0,
            incomingemailstatus=1,
            outgoingemailstatus=1,
            mailboxstatus=1,
            orgmarkedasprimaryforexchangesync=False,
            isactsyncorgflagset=False,
            testemailconfigurationscheduled=False,
            enabledforact=act == 1,
            emailrouteraccessapproval=1,
            statecode=0 if active else 1,
            statuscode=1 if active else 2,
            testmailboxaccesscompletedon=None,
            testemailconfigurationretrycount=0,
            postponetestemailconfigurationuntil=None,
            modifiedon=SEEDED_ON,
            _modifiedby_value=_system_user_id(org),
            versionnumber=org.version(),
        )
        org.mailboxes.add(mailbox)
        rows.append((org, mailbox))
    _exchange(rng, state, key, rows, aiko)
    _graph_user(rng, state, person, key)


def _exchange(
    rng: random.Random, state: SandboxState, key: str, rows: list[tuple[OrgState, Mailbox]], aiko: bool
) -> None:
    """Exchange holds the org that last won the address; the others fail or have not run."""
    candidates = [(org, row) for org, row in rows if row.actdeliverymethod == 1 and row.statecode == 0]
    if aiko:
        winner = next(pair for pair in rows if pair[0].name == "contoso-na")
    elif candidates and rng.random() < 0.9:
        winner = rng.choice(candidates)
    else:
        state.exchange[key] = None
        return
    state.exchange[key] = winner[0].name
    org, row = winner
    row.actstatus, row.isactsyncorgflagset = 1, True
    row.testmailboxaccesscompletedon, row.testemailconfigurationretrycount = TESTED_ON, 1
    row.orgmarkedasprimaryforexchangesync = not aiko and rng.random() < 0.1
    for org, row in candidates:
        if org is winner[0] or aiko:
            continue
        if rng.random() < 0.5:
            row.actstatus, row.mailboxstatus = 2, 2
            row.testmailboxaccesscompletedon, row.testemailconfigurationretrycount = TESTED_ON, 1
            org.tables["tracelogs"].add(alert(org, row, _guid(rng), TESTED_ON))


def _graph_user(rng: random.Random, state: SandboxState, person: Person, key: str) -> None:
    _, _, _, places = NAMES[person.region]
    usage, country = places[0] if person.first == "Aiko" else rng.choice(places)
    department = "Sales" if person.first == "Aiko" else rng.choice(DEPARTMENTS)
    groups = [f"Contoso {person.region}", department]  # "All Employees" holds these two groups (nesting)
    if rng.random() < 0.03:
        groups.append(APPROVERS)
    local, _, domain = key.partition("@")
    state.add_graph_user(
        GraphUser.at(
            person.address,
            f"{person.first} {person.last}",
            user_id=_guid(rng),
            place=(usage, country),
            department=department,
            title=rng.choice(TITLES),
            groups=tuple(state.group(name).id for name in groups),
            office=OFFICES.get(usage, ""),
            proxies=(f"SMTP:{person.address}", f"smtp:{local}@{domain.split('.')[0]}.onmicrosoft.com"),
        )
    )


def _groups(state: SandboxState) -> None:
    """The directory's groups: "All Employees" holds each region and department group (nested membership)."""
    everyone = state.group("All Employees")
    for name in [f"Contoso {region}" for region in NAMES] + list(DEPARTMENTS):
        state.group(name, (everyone.id,))
    state.group(APPROVERS)


def _approver(state: SandboxState, region: str) -> GraphUser:
    """Each region's CRM admin approves OrgGuard's held cases (so the approvers group is never empty)."""
    address = f"crm-admin@{MAIL_DOMAINS[region]}"
    usage = NAMES[region][3][0]
    return GraphUser.at(
        address,
        f"Contoso {region} CRM admin",
        user_id=stable_id("graph-user", address),
        place=usage,
        department="IT",
        title="CRM administrator",
        groups=(state.group(f"Contoso {region}").id, state.group(APPROVERS).id),
        office=OFFICES.get(usage[0], ""),
    )


def _sender() -> GraphUser:
    user_id = stable_id("graph-user", SENDER)
    return GraphUser.at(SENDER, "OrgGuard", user_id=user_id, department="IT", title="Service mailbox")


@cache
def _system_id(org_id: str) -> str:
    return stable_id(org_id, "SYSTEM")


def _system_user_id(org: OrgState) -> str:
    return _system_id(org.id)


def _system_user(org: OrgState) -> SystemUser:
    return SystemUser(
        systemuserid=_system_user_id(org),
        fullname="SYSTEM",
        internalemailaddress=None,
        domainname="",
        azureactivedirectoryobjectid=None,
        _businessunitid_value=org.business_unit_id,
        isdisabled=False,
        accessmode=0,
        versionnumber=org.version(),
    )


def system_user_id(org: OrgState) -> str:
    """The id Dataverse's own writes carry (Test & Enable disabling another org's row)."""
    return _system_user_id(org)
