"""Fixtures every suite may use."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.azurite import Azurite


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The connection string of an in-memory Azurite Table service, started once per session (per xdist worker).

    Give each test its own table prefix (``TableLedger(prefix=...)``, ``;TablePrefix=...``) to isolate it.
    """
    server = Azurite(tmp_path_factory.mktemp("azurite"))
    server.start()
    try:
        yield server.connection_string
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _fresh_log_rates() -> None:
    """Rate-limited loggers remember what they said; each test starts from silence."""
    from shared.telemetry.lograte import forget_all

    forget_all()
