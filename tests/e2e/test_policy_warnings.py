"""A policy that reads the user without a Graph to ask, or names people to tell without a mail sender, is
saved (it is valid) but the answer says what it will not do: on ``PUT /api/policy``, ``policy validate`` and
``policy explain``."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from functions.console import app
from tests.factories import ADMIN_TOKEN, PRIMARY_BY_USAGE_LOCATION, container
from tests.hosting import api_client, installed

DESIGN_POLICY = "version: 3\n" + PRIMARY_BY_USAGE_LOCATION

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
runner = CliRunner()
GRAPH = "http://127.0.0.1:9/graph/v1.0"


@pytest.fixture
def api(tmp_path):
    c = container(tmp_path)
    with api_client(c) as client:
        yield client, c


def test_put_policy_warns_about_user_conditions_without_graph_and_saves_it(api) -> None:
    client, c = api
    answer = client.put("/api/policy", content=DESIGN_POLICY.encode(), headers=ADMIN)
    assert answer.status_code == 200
    (warning,) = answer.json()["warnings"]
    assert "user.usageLocation" in warning and "no Graph is configured" in warning
    assert client.get("/api/policy", headers=ADMIN).json()["warnings"] == [warning]
    assert c.service.policy().version == 3 and c.service.policy_text()[0] == 2  # saved: a warning is no error


def test_put_policy_warns_about_notify_without_a_sender_and_about_unknown_notify_keys(api) -> None:
    client, _ = api
    text = "version: 1\nnotify: {operations: [ops@contoso.com], teams: true}\n"
    warnings = client.put("/api/policy", content=text.encode(), headers=ADMIN).json()["warnings"]
    assert any("notify.teams" in w for w in warnings) and any("ORGGUARD_MAIL_FROM" in w for w in warnings)
    plain = client.put("/api/policy", content=b"version: 2\n", headers=ADMIN).json()
    assert plain["warnings"] == []


def test_policy_validate_prints_the_warning_and_still_succeeds(tmp_path, monkeypatch) -> None:
    file = tmp_path / "policy.yaml"
    file.write_text(DESIGN_POLICY)
    monkeypatch.delenv("ORGGUARD_GRAPH_URL", raising=False)
    # validate checks org names against the registered orgs, as PUT /api/policy does
    with installed(container(tmp_path)):
        shown = runner.invoke(app, ["policy", "validate", str(file)])
        assert shown.exit_code == 0, shown.output
        assert "warning" in shown.stderr and "ORGGUARD_GRAPH_URL" in shown.stderr
        as_json = json.loads(runner.invoke(app, ["policy", "validate", str(file), "--json"]).stdout)
        assert as_json["ok"] is True and len(as_json["warnings"]) == 1
        monkeypatch.setenv("ORGGUARD_GRAPH_URL", GRAPH)
        assert json.loads(runner.invoke(app, ["policy", "validate", str(file), "--json"]).stdout)["warnings"] == []


def test_policy_explain_warns_and_traces_user_conditions_as_unknown(tmp_path) -> None:
    with installed(container(tmp_path, DESIGN_POLICY)):
        shown = runner.invoke(
            app, ["policy", "explain", "--mailbox", "aiko.tanaka@contoso.com", "--claimant", "contoso-jp",
                  "--owner", "contoso-na", "--json"],
        )  # fmt: skip
    assert shown.exit_code == 0, shown.output
    doc = json.loads(shown.stdout)
    assert any("no Graph is configured" in w for w in doc["warnings"])
