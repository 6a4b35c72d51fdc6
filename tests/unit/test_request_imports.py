"""An HTTP request searches for no module: every call to an org, to Graph or to the sandbox goes through httpcore,
which imports ``sniffio`` on each lock and event it makes (four a request); with sniffio missing, each was a failed
import that searched ``sys.path`` again (about 40 µs of CPU, so ~160 µs a request). requirements.txt pins it."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec
from types import ModuleType

import httpx

from sandbox.server import running


class Searches(MetaPathFinder):
    """Notes every module the import system goes looking for (and finds nothing itself)."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        self.names.append(fullname)
        return None


def test_requests_after_the_first_import_nothing() -> None:
    with running(mailboxes=10, overlap=0.5) as base:

        async def requests() -> list[str]:
            async with httpx.AsyncClient() as client:
                (await client.get(f"{base}/_sandbox/orgs")).raise_for_status()  # whatever a first request loads
                searches = Searches()
                sys.meta_path.insert(0, searches)
                try:
                    for _ in range(5):
                        (await client.get(f"{base}/_sandbox/orgs")).raise_for_status()
                finally:
                    sys.meta_path.remove(searches)
                return searches.names

        assert asyncio.run(requests()) == []
