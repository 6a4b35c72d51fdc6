"""The user behind a mailbox, from Microsoft Graph, for a synchronous decision that must not wait.

The policy engine and the service layer are synchronous (SQLite, the Table
Storage SDK); msgraph-sdk is async only. ``GraphDirectory`` owns one event loop
on a thread of its own, builds its ``Graph`` there (the msgraph import happens
on that thread, off the caller's), and answers ``attributes`` from a bounded
cache or by running one lookup on that loop with a strict time limit.

The rule when Graph cannot answer (documented in the README): the lookup raises
``UserUnknown`` with ``outage=True`` and the decision goes on without the user:
every ``user.*`` condition is unknown, so its rule or designation does not
match, and the explanation says Graph was unavailable. After an outage the
directory does not ask Graph again until ``Retry-After`` (or a short cool-down)
has passed, so a storm of claims is not slowed down one timeout at a time.
Unknown users and addresses that map to several users are cached (for
``miss_ttl``) like answers; outages are not.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from shared.domain.model import MailboxKey
from shared.domain.policy import UserUnknown

if TYPE_CHECKING:
    from shared.graph.client import DirectoryUser, Graph
    from shared.graph.port import GraphError

log = logging.getLogger("orgguard.directory")
T = TypeVar("T")

COOL_DOWN_S = 15.0  # no Graph call for this long after an outage without Retry-After
MAX_COOL_DOWN_S = 300.0


@dataclass(frozen=True)
class _Entry:
    until: float
    facts: Mapping[str, object] | None  # None: ``unknown`` says why
    unknown: str | None
    groups: bool  # whether ``facts`` holds memberOf


class GraphDirectory:
    """``UserDirectory`` on Microsoft Graph: cached, batched for sweeps, never blocking a decision for long."""

    configured = True

    def __init__(
        self,
        connect: Callable[[], Graph],
        *,
        timeout: float = 3.0,
        ttl: float = 900.0,
        miss_ttl: float = 300.0,
        size: int = 10_000,
        start_s: float = 20.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._connect = connect
        self.timeout = timeout
        self.ttl, self.miss_ttl, self.size = ttl, miss_ttl, size
        self.start_s = start_s  # the first use waits this long for msgraph to load (once per process)
        self.clock = clock
        self._cache: OrderedDict[MailboxKey, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._graph: concurrent.futures.Future[Graph] | None = None
        self._down_until = 0.0
        self._down_why = ""

    # --- the port ------------------------------------------------------------------------

    def attributes(self, key: MailboxKey, *, groups: bool = True) -> Mapping[str, object]:
        """The user's attributes (and memberOf when ``groups``); ``UserUnknown`` when Graph cannot say now."""
        cached = self._cached(key, groups)
        if cached is not None:
            return _answer(cached)
        self._check_up()
        try:
            entry = self._run(self._lookup(key, groups), self.timeout)
        except _Outage as outage:
            raise self._went_down(outage.error) from None
        self._remember(key, entry)
        return _answer(entry)

    def prefetch(self, keys: Sequence[MailboxKey], *, groups: bool = True) -> None:
        """Resolve every key not cached yet in as few requests as Graph allows (``$batch``); never raises."""
        wanted = list(dict.fromkeys(k for k in keys if self._cached(k, groups) is None))
        if not wanted or self.clock() < self._down_until:
            return
        try:
            entries = self._run(self._lookup_many(wanted, groups), self.timeout + 0.5 * len(wanted))
        except (_Outage, UserUnknown) as exc:
            log.warning("Graph prefetch of %d users failed: %s", len(wanted), exc)
            return
        for key, entry in entries.items():
            self._remember(key, entry)

    def warm(self) -> None:
        """Start the loop and load msgraph in the background (a policy reads the user: the first gate waits less)."""
        self._graph_future()

    @property
    def requests(self) -> int:
        """HTTP requests sent to Graph so far (a ``$batch`` counts once)."""
        future = self._graph
        return future.result().requests if future is not None and future.done() and not future.exception() else 0

    def close(self) -> None:
        loop, thread, future = self._loop, self._thread, self._graph
        if loop is None or thread is None:
            return
        if future is not None and future.done() and not future.exception():
            with contextlib.suppress(Exception):  # closing is best effort: it must not stop the host stopping
                asyncio.run_coroutine_threadsafe(future.result().aclose(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        self._loop = self._thread = self._graph = None

    # --- lookups (on the directory's loop) -------------------------------------------------

    async def _lookup(self, key: MailboxKey, groups: bool) -> _Entry:
        graph = await asyncio.wrap_future(self._graph_future())
        from shared.graph.port import GraphError

        try:
            users = await graph.users_at(key)
            if len(users) == 1 and groups:
                users = [_with_groups(users[0], await graph.groups_of(users[0].id))]
        except GraphError as exc:
            if exc.status == 404:  # the user went away between the two requests
                return self._miss("Microsoft Graph has no user with this address")
            raise _Outage(exc) from None
        return self._entry(users, groups)

    async def _lookup_many(self, keys: Sequence[MailboxKey], groups: bool) -> dict[MailboxKey, _Entry]:
        graph = await asyncio.wrap_future(self._graph_future())
        from shared.graph.port import GraphError

        found = await graph.users_at_many(keys)
        if groups:
            single = {k: v[0] for k, v in found.items() if isinstance(v, list) and len(v) == 1}
            memberships = await graph.groups_of_many([u.id for u in single.values()])
            for key, user in single.items():
                member = memberships.get(user.id)
                found[key] = member if isinstance(member, GraphError) else [_with_groups(user, member or ())]
        return {k: self._entry(v, groups) for k, v in found.items() if not isinstance(v, GraphError)}

    def _entry(self, users: list[DirectoryUser], groups: bool) -> _Entry:
        if not users:
            return self._miss("Microsoft Graph has no user with this address")
        if len(users) > 1:
            return self._miss(f"{len(users)} users in Microsoft Graph have this address, so it names nobody")
        return _Entry(self.clock() + self.ttl, users[0].facts(), None, groups)

    def _miss(self, why: str) -> _Entry:
        return _Entry(self.clock() + self.miss_ttl, None, why, True)

    # --- the loop and the cache ------------------------------------------------------------

    def _graph_future(self) -> concurrent.futures.Future[Graph]:
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(target=self._loop.run_forever, name="orgguard-graph", daemon=True)
                self._thread.start()
            if self._graph is None or (self._graph.done() and self._graph.exception() is not None):
                self._graph = asyncio.run_coroutine_threadsafe(self._build(), self._loop)
            return self._graph

    async def _build(self) -> Graph:
        graph = self._connect()
        graph.prepare()
        return graph

    def _run(self, work: Coroutine[Any, Any, T], timeout: float) -> T:
        """Run ``work`` on the directory's loop; an outage (``_Outage``) when it fails or takes longer than allowed."""
        future = self._graph_future()
        if not future.done():  # the first use in this process: msgraph is still loading
            try:
                future.result(self.start_s)
            except concurrent.futures.TimeoutError:
                work.close()
                raise _Outage(_graph_error(f"the Graph client did not start within {self.start_s:g} s")) from None
            except Exception as exc:  # the client could not be built (bad settings, no credential)
                work.close()
                raise _Outage(_graph_error(f"the Graph client failed ({type(exc).__name__}: {exc})")) from None
        assert self._loop is not None
        running = asyncio.run_coroutine_threadsafe(work, self._loop)
        try:
            return running.result(timeout)
        except concurrent.futures.TimeoutError:
            running.cancel()
            raise _Outage(_graph_error(f"Microsoft Graph did not answer within {timeout:g} s")) from None
        except _Outage:
            raise
        except Exception as exc:  # a bug or an SDK failure not mapped to GraphError: still no blocked decision
            raise _Outage(_graph_error(f"the Graph lookup failed ({type(exc).__name__}: {exc})")) from None

    def _cached(self, key: MailboxKey, groups: bool) -> _Entry | None:
        with self._lock:
            entry = self._cache.get(key)
            if entry is None or entry.until <= self.clock() or (groups and not entry.groups):
                return None
            self._cache.move_to_end(key)
            return entry

    def _remember(self, key: MailboxKey, entry: _Entry) -> None:
        with self._lock:
            self._cache[key] = entry
            self._cache.move_to_end(key)
            while len(self._cache) > self.size:
                self._cache.popitem(last=False)

    def _check_up(self) -> None:
        if self.clock() < self._down_until:
            wait = self._down_until - self.clock()
            raise UserUnknown(f"{self._down_why} (not asked again for {wait:.0f} s)", outage=True)

    def _went_down(self, error: GraphError) -> UserUnknown:
        pause = error.retry_after if error.retry_after is not None else COOL_DOWN_S
        if error.status in (401, 403):
            pause = max(pause, 60.0)  # a permission is missing: asking again soon will not help
        self._down_until = self.clock() + min(pause, MAX_COOL_DOWN_S)
        self._down_why = f"Microsoft Graph was unavailable ({error}); decide the case again once Graph answers"
        log.warning("Graph unavailable: %s", error)
        return UserUnknown(self._down_why, outage=True)


class _Outage(Exception):
    def __init__(self, error: GraphError) -> None:
        super().__init__(str(error))
        self.error = error


def _graph_error(message: str) -> GraphError:
    from shared.graph.port import GraphError

    return GraphError(message)


def _with_groups(user: DirectoryUser, groups: tuple[tuple[str, str], ...]) -> DirectoryUser:
    from dataclasses import replace

    return replace(user, groups=groups)


def _answer(entry: _Entry) -> Mapping[str, object]:
    if entry.facts is None:
        raise UserUnknown(entry.unknown or "Microsoft Graph has no user with this address", outage=False)
    return entry.facts
