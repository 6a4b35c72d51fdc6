"""The simulated orgs for the suites that drive them: one sandbox per module, reset around each test.

A module says how its world is seeded with ``SANDBOX_SEED`` (``mailboxes``,
``overlap``): the migration suite wants thousands of mailboxes, the CLI suite a
few hundred, and a sandbox of that size is seeded once per module, not per test.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from sandbox.server import running
from tests.jobs_support import reset_sandbox


@pytest.fixture(scope="module")
def base_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """The module's sandbox on a free port, seeded as its ``SANDBOX_SEED`` says."""
    with running(port=0, **request.module.SANDBOX_SEED) as url:
        yield url


@pytest.fixture
def sandbox(base_url: str) -> Iterator[httpx.Client]:
    """A client on the module's sandbox, put back to its seeded state before and after the test."""
    yield from reset_sandbox(base_url)
