"""The API as most end-to-end tests meet it: a blocking policy, and contoso-na already owning Aiko's mailbox."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.factories import claim, container
from tests.hosting import api_client


@pytest.fixture
def api(tmp_path) -> Iterator[tuple[httpx.Client, Any]]:
    """(client, container): OrgGuard's HTTP API on a free port over a fresh ledger in which NA owns Aiko's mailbox."""
    c = container(tmp_path)
    c.service.handle_claim(claim("contoso-na", op="seed-owner"))
    with api_client(c) as client:
        yield client, c
