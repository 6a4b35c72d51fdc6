"""The Function App is told where Microsoft Graph is, which mailbox sends notices, and the page's address."""

from __future__ import annotations

import json

from tests.infra.test_bicep import INFRA, app_settings, module_params, param_default


def test_graph_mail_and_page_settings_reach_the_app() -> None:
    settings = app_settings()
    from_params = {
        "ORGGUARD_GRAPH_URL": "graphUrl",
        "ORGGUARD_MAIL_FROM": "mailFrom",
        "ORGGUARD_PUBLIC_URL": "publicUrl",
    }
    assert {name: settings[name] for name in from_params} == from_params
    for param in from_params.values():
        assert module_params("functions")[param] == param  # main.bicep hands each on under its own name
    assert param_default("main.bicep", "graphUrl") == "https://graph.microsoft.com/v1.0"  # no trailing slash
    assert param_default("main.bicep", "mailFrom") == ""


def test_every_environment_names_its_sender_mailbox() -> None:
    for path in sorted(INFRA.glob("main.parameters.*.json")):
        parameters = json.loads(path.read_text(encoding="utf-8"))["parameters"]
        assert "@" in parameters["mailFrom"]["value"], path.name
        assert not parameters["graphUrl"]["value"].endswith("/"), path.name
