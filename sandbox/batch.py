"""`$batch`: multipart/mixed in, multipart/mixed out, change sets atomic, as the Web API does it.

Each inner request goes through the same :class:`~sandbox.webapi.WebApi` as a plain one, so it
is gated and audited the same way; the `$batch` itself counts once against the number of
requests, and all its operations add to the execution time (`sandbox.throttle`). A change set
shares one unit of work: if any of its requests fails, none of them stays applied and the
response holds only the failure.

Without `Prefer: odata.continue-on-error` "the batch fails on the first request in the batch.
The batch error represents the error of the first failing request": the outer status is that
request's, the body the responses up to it; with the preference the batch answers 200
(powerapps-docs `developer/data-platform/webapi/execute-batch-operations-using-web-api.md`,
"Handling errors").

Bypass headers (`sandbox.bypass`) on the `$batch` request apply to every request in it unless
a request carries its own (how Dataverse combines them is not documented).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import parse_qsl, urlsplit

from sandbox import bypass
from sandbox.odata import QUERY_ERROR, ODataError
from sandbox.state import OrgState, UnitOfWork
from sandbox.webapi import ApiRequest, ApiResponse, WebApi

MAX_REQUESTS = 1000
_BOUNDARY = re.compile(r'boundary\s*=\s*"?([^";]+)"?', re.IGNORECASE)
_REQUEST_LINE = re.compile(r"^(GET|POST|PATCH|PUT|DELETE)\s+(\S+)(?:\s+HTTP/\d\.\d)?$", re.IGNORECASE)
_SERVICE_PATH = re.compile(r"/api/data/v\d+\.\d+/(.*)$")


@dataclass
class Part:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    content_id: str | None


@dataclass
class ChangeSet:
    parts: list[Part] = field(default_factory=list)


@dataclass
class Run:
    """One `$batch` as it goes: headers its requests inherit, operations run, the status that stopped it."""

    inherited: dict[str, str]
    operations: int = 0
    failed: int | None = None


def boundary(content_type: str) -> str:
    match = _BOUNDARY.search(content_type or "")
    if match is None or not content_type.lower().startswith("multipart/mixed"):
        raise ODataError(400, "A $batch request must be multipart/mixed with a boundary.", QUERY_ERROR)
    return match.group(1).strip()


def _split(text: str, delimiter: str) -> list[str]:
    """The body parts between `--delimiter` lines, without the line break that belongs to the delimiter."""
    parts: list[str] = []
    current: list[str] = []
    started = False
    for line in text.splitlines(keepends=True):
        bare = line.rstrip("\r\n").rstrip()
        if bare in (f"--{delimiter}", f"--{delimiter}--"):
            if started:
                parts.append("".join(current).removesuffix("\n").removesuffix("\r"))
            current, started = [], True
            if bare.endswith("--") and bare == f"--{delimiter}--":
                return parts
            continue
        if started:
            current.append(line)
    if started:
        raise ODataError(400, f"The batch is missing its closing delimiter '--{delimiter}--'.", QUERY_ERROR)
    return parts


def _headers(text: str) -> tuple[dict[str, str], str]:
    """Header lines up to the first blank line, and what follows it."""
    if text.startswith(("\r\n", "\n")):
        return {}, text.split("\n", 1)[1]
    match = re.search(r"\r?\n\r?\n", text)
    head, rest = (text[: match.start()], text[match.end() :]) if match else (text, "")
    headers: dict[str, str] = {}
    for line in head.splitlines():
        name, colon, value = line.partition(":")
        if colon:
            headers[name.strip().lower()] = value.strip()
    return headers, rest


def _part(text: str) -> Part:
    outer, inner = _headers(text.lstrip("\r\n"))
    if not outer.get("content-type", "").lower().startswith("application/http"):
        raise ODataError(400, "Each batch part must be Content-Type: application/http.", QUERY_ERROR)
    lines = inner.lstrip("\r\n").split("\n", 1)
    match = _REQUEST_LINE.match(lines[0].strip())
    if match is None:
        raise ODataError(400, f"Invalid request line in a batch part: '{lines[0].strip()}'.", QUERY_ERROR)
    headers, body = _headers(lines[1] if len(lines) > 1 else "")
    return Part(match.group(1).upper(), match.group(2), headers, body.strip().encode(), outer.get("content-id"))


def parse(content_type: str, body: bytes) -> list[Part | ChangeSet]:
    items: list[Part | ChangeSet] = []
    for text in _split(body.decode("utf-8"), boundary(content_type)):
        headers, rest = _headers(text.lstrip("\r\n"))
        kind = headers.get("content-type", "")
        if kind.lower().startswith("multipart/mixed"):
            changes = ChangeSet([_part(inner) for inner in _split(rest, boundary(kind))])
            if any(part.method == "GET" for part in changes.parts):
                raise ODataError(400, "A change set cannot contain GET requests.", QUERY_ERROR)
            items.append(changes)
        else:
            items.append(_part(text))
    return items


def _inner(part: Part, root: str, created: dict[str, str], inherited: dict[str, str]) -> ApiRequest:
    url = part.url
    if url.startswith("$"):
        reference, _, rest = url[1:].partition("/")
        if reference not in created:
            raise ODataError(400, f"The Content-ID reference '${reference}' is not defined earlier in the change set.")
        url = created[reference] + (f"/{rest}" if rest else "")
    split = urlsplit(url)
    match = _SERVICE_PATH.search(split.path)
    path = match.group(1) if match else split.path.lstrip("/")
    query = dict(parse_qsl(split.query, keep_blank_values=True))
    return ApiRequest(part.method, path, query, {**inherited, **part.headers}, part.body, root)


def _render(response: ApiResponse, content_id: str | None) -> str:
    head = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if content_id is not None:
        head.append(f"Content-ID: {content_id}")
    status = f"HTTP/1.1 {response.status} {HTTPStatus(response.status).phrase}"
    lines = [*head, "", status, *(f"{name}: {value}" for name, value in response.headers.items()), ""]
    return "\r\n".join(lines) + "\r\n" + response.body.decode() + "\r\n"


class Batch:
    def __init__(self, api: WebApi) -> None:
        self.api = api

    async def execute(self, org: OrgState, user_id: str, request: ApiRequest) -> ApiResponse:
        items = parse(request.headers.get("content-type", ""), request.body)
        total = sum(len(item.parts) if isinstance(item, ChangeSet) else 1 for item in items)
        if total > MAX_REQUESTS:
            raise ODataError(400, f"The batch holds {total} requests; the limit is {MAX_REQUESTS}.", "0x8005f103")
        keep_going = request.prefers("odata.continue-on-error")
        inherited = {name: value for name, value in request.headers.items() if name in bypass.HEADERS}
        delimiter = f"batchresponse_{uuid.uuid4()}"
        chunks: list[str] = []
        run = Run(inherited)
        for item in items:
            failed = await (
                self._changeset(org, user_id, request, item, chunks, delimiter, run)
                if isinstance(item, ChangeSet)
                else self._single(org, user_id, request, item, chunks, delimiter, run)
            )
            if failed is not None and not keep_going:
                run.failed = failed
                break
        chunks.append(f"--{delimiter}--\r\n")
        headers = {"Content-Type": f"multipart/mixed; boundary={delimiter}", "OData-Version": "4.0"}
        if keep_going:
            headers["Preference-Applied"] = "odata.continue-on-error"
        return ApiResponse(run.failed or 200, headers, "".join(chunks).encode(), operations=max(1, run.operations))

    async def _single(
        self,
        org: OrgState,
        user_id: str,
        request: ApiRequest,
        part: Part,
        chunks: list[str],
        delimiter: str,
        run: Run,
    ) -> int | None:
        """Answer one request outside a change set; its status when it failed."""
        try:
            run.operations += 1
            response = await self.api.handle(org, user_id, _inner(part, request.root, {}, run.inherited), inner=True)
        except ODataError as error:
            response = ApiResponse.error(error)
        chunks.append(f"--{delimiter}\r\n{_render(response, part.content_id)}")
        return response.status if response.status >= 400 else None

    async def _changeset(
        self,
        org: OrgState,
        user_id: str,
        request: ApiRequest,
        changes: ChangeSet,
        chunks: list[str],
        delimiter: str,
        run: Run,
    ) -> int | None:
        """Answer a change set, all or nothing; the failing request's status when one failed."""
        unit = UnitOfWork()
        created: dict[str, str] = {}
        answered: list[tuple[Part, ApiResponse]] = []
        for part in changes.parts:
            try:
                run.operations += 1
                one = _inner(part, request.root, created, run.inherited)
                response = await self.api.handle(org, user_id, one, unit, inner=True)
            except ODataError as error:
                response = ApiResponse.error(error)
            except Exception:
                unit.rollback()
                raise
            if response.status >= 400:
                unit.rollback()
                chunks.append(f"--{delimiter}\r\n{_render(response, part.content_id)}")
                return response.status
            if part.content_id is not None and "OData-EntityId" in response.headers:
                created[part.content_id] = response.headers["OData-EntityId"]
            answered.append((part, response))
        unit.commit()
        inner = f"changesetresponse_{uuid.uuid4()}"
        body = "".join(f"--{inner}\r\n{_render(response, part.content_id)}" for part, response in answered)
        chunks.append(f"--{delimiter}\r\nContent-Type: multipart/mixed; boundary={inner}\r\n\r\n{body}--{inner}--\r\n")
        return None
