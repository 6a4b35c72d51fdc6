"""The ``$batch`` wire format (OData 4.0 multipart/mixed, as the Dataverse Web API takes it).

Encoding the request body, parsing the multipart answer (change sets flattened,
LF-only line ends tolerated) and matching the answers to the operations, one
result per operation in order. No I/O: ``client.DataverseClient`` sends and receives.
"""

from __future__ import annotations

import email.message
import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from shared.dataverse.port import BatchOperation, BatchResult, DataverseError, error_from

CRLF = "\r\n"


def encode_batch(operations: Sequence[BatchOperation], *, api_root: str, boundary: str, atomic: bool) -> bytes:
    """The multipart/mixed body; with ``atomic`` every operation sits in one change set with a Content-ID."""
    lines: list[str] = []
    if atomic:
        changeset = f"changeset_{uuid.uuid4()}"
        lines += [f"--{boundary}", f'Content-Type: multipart/mixed; boundary="{changeset}"', ""]
        for number, op in enumerate(operations, start=1):
            lines += [f"--{changeset}", *_encode_operation(op, api_root=api_root, content_id=number)]
        lines += [f"--{changeset}--", ""]
    else:
        for op in operations:
            lines += [f"--{boundary}", *_encode_operation(op, api_root=api_root, content_id=None)]
    lines += [f"--{boundary}--", ""]
    return CRLF.join(lines).encode("utf-8")


def _encode_operation(op: BatchOperation, *, api_root: str, content_id: int | None) -> list[str]:
    method = op.method.upper()
    url = op.url if op.url.startswith(("http://", "https://")) else api_root + op.url.lstrip("/")
    part = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if content_id is not None:
        part.append(f"Content-ID: {content_id}")
    part += ["", f"{method} {url} HTTP/1.1"]
    if op.etag or method == "PATCH":
        part.append(f"If-Match: {op.etag or '*'}")
    if op.body is not None:
        part += ["Content-Type: application/json; type=entry", "", json.dumps(dict(op.body), separators=(",", ":"))]
    else:
        part += [""]
    part.append("")
    return part


@dataclass(frozen=True)
class _PartResponse:
    status: int
    headers: httpx.Headers
    body: bytes
    content_id: str | None


def parse_batch_response(content_type: str, body: bytes) -> list[_PartResponse]:
    """Every application/http response in a $batch answer, change sets flattened, in order."""
    responses: list[_PartResponse] = []
    for part_headers, part_body in _split_multipart(body, _boundary(content_type)):
        part_type = part_headers.get("content-type", "")
        if part_type.lower().startswith("multipart/"):
            responses += parse_batch_response(part_type, part_body)
        else:
            responses.append(_parse_http_response(part_body, part_headers.get("content-id")))
    return responses


def match_batch_results(count: int, responses: Sequence[_PartResponse], *, atomic: bool) -> list[BatchResult]:
    """One result per operation: a failed change set fails all of it; unreached operations get status None."""
    results = [_result(r) for r in responses]
    if atomic and len(results) == 1 and count > 1 and not results[0].ok:
        failed = results[0]
        return [failed] * count
    if atomic and len(results) == count and all(r.content_id for r in responses):
        by_id = {r.content_id: result for r, result in zip(responses, results, strict=True)}
        results = [by_id.get(str(number), not_processed(1)[0]) for number in range(1, count + 1)]
    return results[:count] + not_processed(count - len(results))


def not_processed(count: int) -> list[BatchResult]:
    """Results for operations Dataverse never reached (it stopped at an earlier error)."""
    error = DataverseError("not processed: the batch stopped at an earlier error", code="not_processed")
    return [BatchResult(status=None, error=error) for _ in range(max(0, count))]


def _result(response: _PartResponse) -> BatchResult:
    error = None
    if response.status >= 400:
        error = error_from(response.status, response.body)
    body: dict[str, Any] | None = None
    if response.body.strip():
        try:
            decoded = json.loads(response.body)
            body = decoded if isinstance(decoded, dict) else {"value": decoded}
        except ValueError:
            body = None
    return BatchResult(status=response.status, body=body, error=error, headers=response.headers)


def _boundary(content_type: str) -> str:
    message = email.message.Message()
    message["Content-Type"] = content_type
    boundary = message.get_param("boundary")
    if not isinstance(boundary, str) or not boundary:
        raise DataverseError("a multipart answer without a boundary")
    return boundary


def _split_multipart(body: bytes, boundary: str) -> list[tuple[httpx.Headers, bytes]]:
    """Parts of a multipart body; tolerant of LF-only line ends, which some servers write."""
    delimiter = b"--" + boundary.encode("ascii")
    parts: list[tuple[httpx.Headers, bytes]] = []
    for segment in body.split(delimiter)[1:]:
        if segment.startswith(b"--"):
            break
        segment = segment.split(b"\n", 1)[1] if b"\n" in segment else b""  # rest of the delimiter line
        segment = segment[:-2] if segment.endswith(b"\r\n") else segment.removesuffix(b"\n")
        head, payload = _split_head(segment)
        parts.append((_parse_headers(head), payload))
    return parts


def _split_head(segment: bytes) -> tuple[bytes, bytes]:
    match = re.search(rb"\r?\n\r?\n", segment)
    if match is None:
        return segment, b""
    return segment[: match.start()], segment[match.end() :]


def _parse_headers(head: bytes) -> httpx.Headers:
    headers = httpx.Headers()
    for line in head.decode("utf-8", "replace").splitlines():
        name, sep, value = line.partition(":")
        if sep and name.strip():
            headers[name.strip()] = value.strip()
    return headers


def _parse_http_response(raw: bytes, content_id: str | None) -> _PartResponse:
    head, payload = _split_head(raw.lstrip(b"\r\n"))
    status_line, _, header_block = head.partition(b"\n")
    fields = status_line.decode("ascii", "replace").split(maxsplit=2)
    if len(fields) < 2 or not fields[0].startswith("HTTP/") or not fields[1].isdigit():
        raise DataverseError("a $batch part is not an HTTP response")
    return _PartResponse(
        status=int(fields[1]),
        headers=_parse_headers(header_block),
        body=payload.strip(),
        content_id=content_id.strip() if content_id else None,
    )
