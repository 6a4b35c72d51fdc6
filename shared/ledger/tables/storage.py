"""``TableStore``, the base of every concern: one prefix's tables, created lazily, queried, and closed."""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final, Self, TypeVar

from azure.core.exceptions import AzureError, HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableClient, TableEntity, TableServiceClient

from shared.domain.model import DomainError
from shared.ledger.port import LedgerError
from shared.ledger.tables.account import DEFAULT_PREFIX, default_credential, is_cosmos, parse_target
from shared.ledger.tables.backlog import Backlog
from shared.ledger.tables.keys import MARKERS, literal
from shared.ledger.tables.timeouts import with_deadline

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

    from shared.ledger.cursors import CursorCodec

T = TypeVar("T")

TABLE_NAMES: Final = ("mailboxes", "events", "cases", "actions", "audit", "policies", "jobs")
WRITE_TRIES: Final = 60  # a conditional write that keeps losing races gives up after this many tries
_PREFIX = re.compile(r"[A-Za-z][A-Za-z0-9]{0,39}")


def pause(attempt: int) -> None:
    """A short jittered wait before trying a write again that lost a race (growing with ``attempt``)."""
    time.sleep(random.uniform(0, min(0.25, 0.004 * 2 ** min(attempt, 8))))


def brief(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


# How often an instance scans every mailbox partition for journals their writer left unmarked (killed between its
# transaction and its marker, a window of milliseconds): on Table Storage the scan reads the whole table.
SCAN_EVERY = timedelta(minutes=10)


class TableStore:
    """One prefix's tables in one account; safe across threads."""

    def __init__(
        self,
        service: TableServiceClient,
        *,
        prefix: str = DEFAULT_PREFIX,
        takeover_after: timedelta = timedelta(seconds=15),
        scan_every: timedelta = SCAN_EVERY,
        sorted_results: bool | None = None,
    ) -> None:
        if not _PREFIX.fullmatch(prefix):
            raise LedgerError(f"the table prefix {prefix!r} must be a letter then up to 39 letters or digits")
        self.prefix = prefix
        self.takeover_after = takeover_after
        self.scan_every = scan_every
        self._service = service
        self._sorted = not is_cosmos(service.url) if sorted_results is None else sorted_results
        self._tables = {name: service.get_table_client(prefix + name) for name in TABLE_NAMES}
        self._ready = False
        self._lock = threading.Lock()
        self._head: tuple[int, str, str] | None = None  # audit head as last seen: seq, hash, etag
        self._pool: ThreadPoolExecutor | None = None
        self._backlog = Backlog()  # journals rolled forward after the decision returned (``backlog.py``)
        self._cursors: CursorCodec | None = None

    # --- construction ------------------------------------------------------------------

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> Self:
        """``tables:`` + a connection string (Azurite, keys) or an account URL (Entra ID)."""
        target = parse_target(url)
        client_id = kwargs.pop("client_id", None)
        if target.account_url:
            return cls.from_account_url(target.account_url, prefix=target.prefix, client_id=client_id, **kwargs)
        assert target.connection_string is not None
        return cls.from_connection_string(target.connection_string, prefix=target.prefix, **kwargs)

    @classmethod
    def from_connection_string(
        cls,
        connection_string: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        client_options: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> Self:
        """``client_options`` go to the SDK client (``retry_total``, ``connection_timeout``, ...)."""
        try:
            service = TableServiceClient.from_connection_string(connection_string, **with_deadline(client_options))
        except ValueError as exc:
            raise LedgerError(f"the Table Storage connection string is not usable: {exc}") from None
        return cls(service, prefix=prefix, **kwargs)

    @classmethod
    def from_account_url(
        cls,
        account_url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        credential: TokenCredential | None = None,
        client_id: str | None = None,
        client_options: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> Self:
        """Entra ID: ``credential``, or the managed identity ``client_id`` / DefaultAzureCredential."""
        if not account_url.lower().startswith("https://"):
            raise LedgerError("an account URL with Entra ID needs https:// (use a connection string for Azurite)")
        service = TableServiceClient(
            endpoint=account_url,
            credential=credential or default_credential(client_id),
            **with_deadline(client_options),
        )
        return cls(service, prefix=prefix, **kwargs)

    def table(self, name: str) -> TableClient:
        """The client of one of this ledger's tables (tests and operators tamper and inspect through it)."""
        return self._tables[name]

    @contextmanager
    def _storage(self, what: str) -> Iterator[None]:
        try:
            self._ensure()
            yield
        except (LedgerError, DomainError):
            raise
        except AzureError as exc:
            raise LedgerError(f"the Table Storage ledger could not {what}: {brief(exc)}") from exc

    def _ensure(self) -> None:
        """Create the tables once per process (lazily: a storage outage must not stop the app loading)."""
        if self._ready:
            return
        with self._lock:
            if self._ready:
                return
            for client in self._tables.values():
                try:
                    client.create_table()
                except ResourceExistsError:
                    pass
                except HttpResponseError as exc:
                    if exc.status_code != 403:
                        raise
                    try:  # created by the infrastructure; this identity may only use it
                        self._first(client, "PartitionKey eq 'probe'")
                    except ResourceNotFoundError:
                        raise LedgerError(
                            f"table {client.table_name} does not exist and this identity may not create it: "
                            "create the ledger's tables with the infrastructure"
                        ) from None
            self._ready = True

    # --- queries -----------------------------------------------------------------------

    def _rows(
        self, table: str, query: str, *, page: int = 200, select: list[str] | None = None
    ) -> Iterator[TableEntity]:
        """Rows in key order (sorted here when the service does not sort, as Cosmos DB); ``select``: only those
        properties (and the keys)."""
        keys = ["PartitionKey", "RowKey"] if select else []
        found = self._tables[table].query_entities(query, results_per_page=page, select=(select or []) + keys or None)
        if self._sorted:
            yield from found
        else:
            yield from sorted(found, key=lambda e: (e["PartitionKey"], e["RowKey"]))

    def _first(self, client: TableClient, query: str) -> TableEntity | None:
        for row in client.query_entities(query, results_per_page=1):
            return row
        return None

    def _get(self, table: str, pk: str, rk: str) -> TableEntity | None:
        try:
            return self._tables[table].get_entity(pk, rk)
        except ResourceNotFoundError:
            return None

    def _parallel(self, fn: Callable[[T], Any], items: Sequence[T]) -> list[Any]:
        if len(items) <= 1:
            return [fn(item) for item in items]
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="orgguard-ledger")
            pool = self._pool
        return list(pool.map(fn, items))

    # --- life cycle --------------------------------------------------------------------

    def ping(self) -> None:
        with self._storage("reach the storage account"):
            self._first(self._tables["mailboxes"], f"PartitionKey eq {literal(MARKERS)}")

    def settle_backlog(self) -> None:
        """Wait for the derived work this instance's decisions left (``backlog.py``): tests and benchmarks."""
        self._backlog.settle()

    def _catch_up(self) -> None:
        """Before a read through an index: committed work still in flight finished (``Journals._catch_up``)."""

    def close(self) -> None:
        self._backlog.close()
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        self._service.close()

    def drop_tables(self) -> None:
        """Delete this prefix's tables (tests, and retiring an environment); the data is gone."""
        for client in self._tables.values():
            with suppress(ResourceNotFoundError):
                self._service.delete_table(client.table_name)
        self._ready = False
