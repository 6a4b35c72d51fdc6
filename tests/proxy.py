"""A real HTTP/1.1 proxy on a socket, for the faults only a wire can make.

It sits between OrgGuard and a server (the sandbox, Azurite) and can

* ``stall()``: hold every request from now on without forwarding it, as an
  unreachable account or a hung org would, until ``resume()``;
* ``drop_answers(match, count)``: forward a matching request, let the server
  finish it (its answer has started to arrive, so it committed), then hang up
  on the client without passing the answer on: the lost answer after a commit;
* ``hold(match, count)`` and ``deliver_held()``: keep a matching request (the
  client waits and gives up), then deliver it to the server late, as a
  congested network can: a request that arrives after its sender moved on.

It speaks just enough HTTP/1.1 for that: request and response heads, bodies
by ``Content-Length`` or chunked, keep-alive, one upstream connection per
client connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

Match = Callable[[str], bool]  # gets the whole request (head and body), decoded as Latin-1


@dataclass
class _Drop:
    match: Match
    count: int


@dataclass
class HttpProxy:
    upstream_host: str
    upstream_port: int
    dropped: list[str] = field(default_factory=list)  # request lines whose answers were dropped
    seen: list[str] = field(default_factory=list)  # every request line forwarded
    _drops: list[_Drop] = field(default_factory=list)
    _holds: list[_Drop] = field(default_factory=list)
    _held: list[bytes] = field(default_factory=list)
    _released: asyncio.Event | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _loop: asyncio.AbstractEventLoop | None = None
    _flowing: asyncio.Event | None = None
    port: int = 0

    # --- control (from the test's thread) ------------------------------------------------

    def drop_answers(self, match: Match, count: int = 1) -> None:
        with self._lock:
            self._drops.append(_Drop(match, count))

    def hold(self, match: Match, count: int = 1) -> None:
        with self._lock:
            self._holds.append(_Drop(match, count))

    def deliver_held(self) -> list[str]:
        """Send every held request to the server now; the status lines it answered, in order."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(self._deliver_held(), self._loop).result(30)

    async def _deliver_held(self) -> list[str]:
        answers = []
        for request in self._held:
            up_reader, up_writer = await asyncio.open_connection(self.upstream_host, self.upstream_port)
            up_writer.write(request)
            await up_writer.drain()
            response = await _message(up_reader, is_request=False)
            answers.append((response or b"").split(b"\r\n", 1)[0].decode("latin-1"))
            up_writer.close()
        self._held.clear()
        self._release().set()
        return answers

    def _release(self) -> asyncio.Event:
        if self._released is None:
            self._released = asyncio.Event()
        return self._released

    def stall(self) -> None:
        self._call(lambda: self._flow().clear())

    def resume(self) -> None:
        self._call(lambda: self._flow().set())

    def _call(self, fn: Callable[[], None]) -> None:
        assert self._loop is not None
        done = threading.Event()

        def run() -> None:
            fn()
            done.set()

        self._loop.call_soon_threadsafe(run)
        done.wait(5)

    def _flow(self) -> asyncio.Event:
        if self._flowing is None:
            self._flowing = asyncio.Event()
            self._flowing.set()
        return self._flowing

    def _should_drop(self, line: str, rules: list[_Drop] | None = None) -> bool:
        with self._lock:
            for drop in self._drops if rules is None else rules:
                if drop.count > 0 and drop.match(line):
                    drop.count -= 1
                    return True
        return False

    # --- the wire ------------------------------------------------------------------------

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            while True:
                request = await _message(reader, is_request=True)
                if request is None:
                    return
                line = request.split(b"\r\n", 1)[0].decode("latin-1")
                text = request.decode("latin-1")
                if not await self._flowing_for(reader):
                    return  # the client gave up on a stalled request: it is never delivered
                if self._should_drop(text, self._holds):
                    self._held.append(request)
                    await self._release().wait()  # the client waits for an answer that never comes
                    return
                if upstream is None:
                    upstream = await asyncio.open_connection(self.upstream_host, self.upstream_port)
                up_reader, up_writer = upstream
                up_writer.write(request)
                await up_writer.drain()
                self.seen.append(line)
                if self._should_drop(text):
                    await up_reader.read(1)  # the server has answered: it is done with the request
                    self.dropped.append(line)
                    return  # hang up on the client without the answer
                response = await _message(up_reader, is_request=False, head_request=line.startswith("HEAD "))
                if response is None:
                    return
                writer.write(response)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            return
        finally:
            with contextlib.suppress(Exception):
                writer.close()
            if upstream is not None:
                with contextlib.suppress(Exception):
                    upstream[1].close()

    async def _flowing_for(self, reader: asyncio.StreamReader) -> bool:
        """Wait while stalled; False when the client hung up meanwhile."""
        flow = self._flow()
        if flow.is_set():
            return True
        waiting = asyncio.ensure_future(flow.wait())
        hangup = asyncio.ensure_future(reader.read(1))
        done, _ = await asyncio.wait({waiting, hangup}, return_when=asyncio.FIRST_COMPLETED)
        if hangup in done:
            waiting.cancel()
            return False
        hangup.cancel()
        return True

    async def _serve(self, started: threading.Event) -> None:
        self._flow()
        server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        started.set()
        async with server:
            await server.serve_forever()


_CHUNK_SIZE = re.compile(rb"^([0-9a-fA-F]+)")


async def _message(reader: asyncio.StreamReader, *, is_request: bool, head_request: bool = False) -> bytes | None:
    """One whole HTTP message (head and body) as bytes, or None when the peer closed between messages."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise
    headers = {}
    for raw in head.split(b"\r\n")[1:]:
        name, sep, value = raw.partition(b":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    status = b""
    if not is_request:
        status = head.split(b" ", 2)[1]
    if head_request or status in (b"204", b"304") or status.startswith(b"1"):
        return head
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        body = b""
        while True:
            size_line = await reader.readuntil(b"\r\n")
            body += size_line
            size = int(_CHUNK_SIZE.match(size_line).group(1), 16)  # type: ignore[union-attr]
            if size == 0:
                body += await reader.readuntil(b"\r\n")  # no trailers from these servers
                return head + body
            body += await reader.readexactly(size + 2)
    length = int(headers.get(b"content-length", b"0") or 0)
    if length == 0 and not is_request and b"content-length" not in headers:
        return head + await reader.read()  # the body runs to the end of the connection
    return head + await reader.readexactly(length)


@contextmanager
def proxy_to(base_url: str) -> Iterator[tuple[HttpProxy, str]]:
    """A proxy in front of ``base_url`` (``http://host:port``); yields it and its own base URL."""
    host, _, port = base_url.removeprefix("http://").rstrip("/").partition(":")
    proxy = HttpProxy(host, int(port))
    loop = asyncio.new_event_loop()
    proxy._loop = loop
    started = threading.Event()
    task: asyncio.Task[None] | None = None

    def run() -> None:
        nonlocal task
        asyncio.set_event_loop(loop)
        task = loop.create_task(proxy._serve(started))
        with contextlib.suppress(asyncio.CancelledError):
            loop.run_until_complete(task)
        connections = asyncio.all_tasks(loop)
        for connection in connections:
            connection.cancel()
        loop.run_until_complete(asyncio.gather(*connections, return_exceptions=True))

    thread = threading.Thread(target=run, name="http-proxy", daemon=True)
    thread.start()
    assert started.wait(10), "the proxy did not start"
    try:
        yield proxy, f"http://127.0.0.1:{proxy.port}"
    finally:
        proxy.resume()
        loop.call_soon_threadsafe(lambda: task.cancel() if task else None)
        thread.join(timeout=10)
        loop.close()
