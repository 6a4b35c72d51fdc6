"""Builders shared by the suites: the sandbox's three orgs, policies, fixtures, containers."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from shared import bootstrap
from shared.config.orgs import parse_orgs
from shared.config.settings import Settings
from shared.domain.exemptions import Exemption, Scope, new_exemption
from shared.domain.model import Claim, ClaimKind, MailboxKey, Origin
from shared.domain.orgs import OrgRegistry
from shared.ledger.memory import MemoryLedger
from shared.ledger.sqlite import SqliteLedger

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"  # copies of the example payloads the specs ship

ORG_IDS = {
    "contoso-na": "3f0e6c1a-5b7d-4e2a-9c11-2a6f0b8d4e01",
    "contoso-jp": "8a2d4f60-1c3b-4f7e-b5a9-7d0c9e2f6a12",
    "contoso-eu": "c47b9e23-6d5a-4b18-8e3f-5f1a2c7d9b34",
}
KEYS = {name: f"key-{name}-0123456789" for name in ORG_IDS}
ADMIN_TOKEN = "test-admin-token-abcdef"
AIKO = MailboxKey("aiko.tanaka@contoso.com")
AIKO_JP_MAILBOX = "f1e2d3c4-b5a6-4978-8a9b-0c1d2e3f4a5b"

BLOCKING_POLICY = """
version: 1
mode: enforce
default: block
rules: []
"""

OVERRIDING_POLICY = """
version: 1
mode: enforce
default: override
rules: []
"""

# contoso-jp is the designated primary for users in Japan: a rule that needs Graph to read the user
PRIMARY_BY_USAGE_LOCATION = """\
primary:
  - when: {user.usageLocation: [JP]}
    org: contoso-jp
rules:
  - id: designated-primary
    effect: prefer-primary
"""

# contoso.co.jp mailboxes belong to contoso-jp; any other competing claim is blocked (sweeps repair toward it)
JP_DOMAIN_POLICY = """
version: 1
mode: enforce
default: block
primary:
  - when: {mailbox.domain: [contoso.co.jp]}
    org: contoso-jp
rules:
  - id: designated-primary
    effect: prefer-primary
"""

HOLDING_POLICY = """
version: 1
mode: enforce
default: hold
rules: []
approval:
  approvers: [group:OrgGuard Approvers]
  expires_after: P3D
  on_expiry: block
"""


def orgs_doc(base_url: str, *, keys: dict[str, str] | None = None) -> dict[str, Any]:
    """The sandbox's three orgs at ``base_url`` with the test keys, as an orgs file holds them; ``keys`` replaces
    some of their webhook keys."""
    key = {**KEYS, **(keys or {})}
    return {
        "orgs": [{"name": n, "id": i, "url": f"{base_url}/orgs/{n}", "webhook_key": key[n]} for n, i in ORG_IDS.items()]
    }


def registry(base_url: str = "http://127.0.0.1:8072", *, keys: dict[str, str] | None = None) -> OrgRegistry:
    """The sandbox's orgs at ``base_url`` (the default is never listened on: unit tests only name the orgs)."""
    return parse_orgs(orgs_doc(base_url, keys=keys), env={})


def orgs_file(directory: Path, base_url: str) -> Path:
    """``directory``/orgs.yaml naming the sandbox's orgs at ``base_url``: what ``ORGGUARD_ORGS`` points a process at."""
    path = directory / "orgs.yaml"
    path.write_text(yaml.safe_dump(orgs_doc(base_url), sort_keys=False), encoding="utf-8")
    return path


def fixture(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    return doc


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def container(
    tmp_path: Path,
    policy: str = BLOCKING_POLICY,
    *,
    in_memory: bool = False,
    orgs: OrgRegistry | None = None,
    **kwargs: Any,
) -> bootstrap.Container:
    """A container over a fresh ledger: SQLite under ``tmp_path``, or in memory for fast service tests; ``orgs``
    (the sandbox's, say) or the test orgs on a local port; ``kwargs``: more settings (``bus``, ``auth`` ...)."""
    settings = Settings(
        ledger="memory:" if in_memory else f"sqlite:///{tmp_path / 'ledger.db'}",
        orgs="unused",
        policy=str(tmp_path / "none"),
        admin_token=ADMIN_TOKEN,
        **kwargs,
    )
    ledger = MemoryLedger() if in_memory else SqliteLedger(tmp_path / "ledger.db")
    c = bootstrap.build(settings, ledger=ledger, orgs=orgs or registry())
    c.service.save_policy(policy, actor="test")
    return c


def claim(
    org: str,
    *,
    key: MailboxKey = AIKO,
    origin: Origin = Origin.GATE,
    op: str = "op-1",
    mailbox_id: str | None = None,
    kind: ClaimKind = ClaimKind.TEST_ENABLE,
    user_id: str | None = None,
) -> Claim:
    return Claim(
        key=key,
        org=org,
        mailbox_id=mailbox_id or mailbox_guid(org, key),
        kind=kind,
        origin=origin,
        source_ids={"org": ORG_IDS[org], "operation": op},
        user_id=user_id,
    )


def mailbox_guid(org: str, key: MailboxKey = AIKO) -> str:
    """A stable mailbox row id for ``key`` in ``org`` (each org has its own row)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{org}/{key.address}"))


def ledger_snapshot(c: bootstrap.Container) -> tuple[int, int, int]:
    """What a bad input must not change: audit entries, cases, and Aiko's mailbox version."""
    from shared.domain.model import CaseQuery

    return (
        c.ledger.verify_audit().entries,
        len(c.ledger.cases(CaseQuery(limit=500)).items),
        c.ledger.mailbox(AIKO).version,
    )


def easyauth_principal(name: str, *roles: str) -> str:
    """An ``X-MS-CLIENT-PRINCIPAL`` header as App Service Authentication builds it (base64 JSON, app roles)."""
    import base64

    claims = [{"typ": "name", "val": name}, *({"typ": "roles", "val": r} for r in roles)]
    doc = {"auth_typ": "aad", "claims": claims, "name_typ": "name", "role_typ": "roles"}
    return base64.b64encode(json.dumps(doc).encode()).decode()


EXEMPTIONS_NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)  # when the exemption tests' Admins ask


def exemption(scope: Scope = Scope.MAILBOX, value: object = "aiko.tanaka@contoso.com", **kw: Any) -> Exemption:
    """An exemption as an Admin asks for it (``new_exemption``, every check included) among three registered orgs;
    ``kw`` sets its reason, ticket, expiry, actor or time of asking."""
    return new_exemption(
        scope,
        value,
        reason=kw.get("reason", "moving to Tokyo"),
        ticket=kw.get("ticket", "CHG-1001"),
        expires=kw.get("expires", "2026-11-30"),
        actor=kw.get("actor", "admin@contoso.com"),
        now=kw.get("now", EXEMPTIONS_NOW),
        known_orgs=("contoso-na", "contoso-jp", "contoso-eu"),
    )
