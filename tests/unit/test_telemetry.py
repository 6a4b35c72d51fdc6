"""Telemetry pieces that need no exporter: what may be recorded, scrubbing, and Entra ingestion settings."""

from __future__ import annotations

import pytest

from shared import telemetry
from shared.telemetry import setup


def test_only_allowed_attributes_pass_and_values_become_plain():
    got = telemetry.attributes({"effect": "block", "org": "contoso-jp", "mailbox": "aiko@contoso.com", "case": None})
    assert got == {"orgguard.effect": "block", "orgguard.org": "contoso-jp"}


@pytest.mark.parametrize(
    ("text", "clean"),
    [
        ("no decision for Aiko.Tanaka@Contoso.com today", "no decision for A***@Contoso.com today"),
        ("Authorization: Bearer eyJ0eXAiOi.abc-def", "Authorization: Bearer ***"),
        ("mailto:ops@contoso.co.jp,", "mailto:o***@contoso.co.jp,"),
        ("nothing to hide", "nothing to hide"),
    ],
)
def test_scrub_reduces_addresses_and_removes_bearer_tokens(text, clean):
    assert telemetry.scrub(text) == clean


@pytest.mark.parametrize(
    ("auth", "client"),
    [
        ("ClientId=1234;Authorization=AAD", "1234"),
        ("Authorization=AAD", ""),
        ("authorization=aad;ClientId=x", None),  # keys are case-sensitive as Microsoft writes them
        (None, None),
        ("", None),
    ],
)
def test_entra_ingestion_names_the_managed_identity(auth, client):
    assert setup.ingestion_client_id(auth) == client
