"""ORGGUARD_ORGS and ORGGUARD_POLICY carry the documents themselves in Azure (infra/app/functions.bicep)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared import bootstrap
from shared.config.orgs import OrgsError, load_orgs
from shared.config.settings import Settings, inline_document
from shared.ledger.sqlite import SqliteLedger
from tests.factories import ORG_IDS

REPO = Path(__file__).resolve().parents[2]
FIRST_POLICY = (REPO / "infra" / "policy.yaml").read_text()


def bicep_orgs_document(*names: str) -> str:
    """What `string(orgsDocument)` in functions.bicep produces for infra/orgs.json entries."""
    orgs = [
        {
            "name": n,
            "id": ORG_IDS[n],
            "url": f"https://{n}.crm.dynamics.com",
            "webhook_key": "env:ORGGUARD_KEY_" + n.upper().replace("-", "_"),
        }
        for n in names
    ]
    return json.dumps({"orgs": orgs}, separators=(",", ":"))


@pytest.mark.parametrize(
    ("value", "inline"),
    [
        ("orgs.yaml", False),
        ("/home/site/wwwroot/policy.yaml", False),
        ('{"orgs":[]}', True),
        ("  [] ", True),
        ("version: 1\nmode: dry-run\n", True),
    ],
)
def test_a_setting_is_a_document_or_a_file_name(value: str, inline: bool) -> None:
    assert (inline_document(value) is not None) is inline


def test_the_orgs_document_the_templates_write_loads_with_keys_from_their_settings() -> None:
    env = {"ORGGUARD_KEY_CONTOSO_NA": "na-secret", "ORGGUARD_KEY_CONTOSO_JP": "jp-secret"}
    registry = load_orgs(bicep_orgs_document("contoso-na", "contoso-jp"), env)
    assert registry.names == ["contoso-na", "contoso-jp"]
    assert registry.key_for("contoso-jp") == "jp-secret"
    assert registry.get("contoso-na").url == "https://contoso-na.crm.dynamics.com"


def test_no_orgs_yet_is_an_empty_registry() -> None:
    assert len(load_orgs('{"orgs":[]}', {})) == 0


def test_a_key_setting_that_is_missing_names_the_setting() -> None:
    with pytest.raises(OrgsError, match="ORGGUARD_KEY_CONTOSO_NA"):
        load_orgs(bicep_orgs_document("contoso-na"), {})


@pytest.mark.parametrize("value", ['{"orgs": [', '{"orgs": "contoso-na"}', "[1, 2]\n"])
def test_a_broken_document_is_a_clear_error(value: str) -> None:
    with pytest.raises(OrgsError):
        load_orgs(value, {})


def test_the_container_starts_from_the_documents_in_the_settings(tmp_path: Path) -> None:
    env = {
        "ORGGUARD_LEDGER": f"sqlite:///{tmp_path / 'ledger.db'}",
        "ORGGUARD_ORGS": bicep_orgs_document("contoso-na", "contoso-jp"),
        "ORGGUARD_POLICY": FIRST_POLICY,
        "ORGGUARD_AUTH": "easyauth",
    }
    settings = Settings.from_env(env)
    orgs = load_orgs(settings.orgs, {"ORGGUARD_KEY_CONTOSO_NA": "a", "ORGGUARD_KEY_CONTOSO_JP": "b"})
    c = bootstrap.build(settings, ledger=SqliteLedger(tmp_path / "ledger.db"), orgs=orgs)
    try:
        version, text = c.service.policy_text()
        assert version == 1 and text == FIRST_POLICY
        assert c.service.policy().mode == "dry-run"
    finally:
        c.close()


def test_the_policy_setting_seeds_the_ledger_once(tmp_path: Path) -> None:
    """A redeploy with an edited infra/policy.yaml does not overwrite a policy changed through the API."""
    settings = Settings(ledger=f"sqlite:///{tmp_path / 'l.db'}", policy=FIRST_POLICY)
    orgs = load_orgs('{"orgs":[]}', {})
    first = bootstrap.build(settings, ledger=SqliteLedger(tmp_path / "l.db"), orgs=orgs)
    changed = FIRST_POLICY.replace("mode: dry-run", "mode: enforce")
    first.service.save_policy(changed, actor="admin")
    first.close()
    again = bootstrap.build(
        Settings(ledger=settings.ledger, policy=FIRST_POLICY.replace("P3D", "P5D")),
        ledger=SqliteLedger(tmp_path / "l.db"),
        orgs=orgs,
    )
    try:
        assert again.service.policy_text() == (2, changed)
    finally:
        again.close()
