"""Graph, sender and page settings: what is accepted, and a clear error for everything else."""

from __future__ import annotations

from shared.config.settings import Settings


def test_graph_settings_are_read_and_normalized() -> None:
    s = Settings.from_env(
        {
            "ORGGUARD_GRAPH_URL": "https://graph.microsoft.com/v1.0/",
            "ORGGUARD_MAIL_FROM": " OrgGuard@Contoso.com ",
            "ORGGUARD_PUBLIC_URL": "https://orgguard.contoso.com",
            "ORGGUARD_GRAPH_TIMEOUT_S": "1.5",
        }
    )
    assert s.graph_url == "https://graph.microsoft.com/v1.0"  # msgraph-sdk's base_url takes no trailing slash
    assert (s.mail_from, s.public_url, s.graph_timeout_s, s.mail) == (
        "orgguard@contoso.com",
        "https://orgguard.contoso.com",
        1.5,
        True,
    )


def test_without_graph_or_sender_nothing_is_mailed() -> None:
    assert Settings.from_env({}).graph_url is None and not Settings.from_env({}).mail
    assert not Settings.from_env({"ORGGUARD_MAIL_FROM": "orgguard@contoso.com"}).mail
    assert Settings.from_env({"ORGGUARD_GRAPH_URL": "http://127.0.0.1:8072/graph/v1.0"}).graph_url
