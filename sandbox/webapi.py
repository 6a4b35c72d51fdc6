"""One org's Web API (`/api/data/v9.2/`), independent of the HTTP framework so `$batch` reuses it."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from sandbox.bypass import NOTHING, Bypass, requested
from sandbox.model import (
    MAILBOX,
    REGISTRATION_SETS,
    SERVICEENDPOINT,
    TABLES,
    DictRecord,
    Kind,
    Mailbox,
    Record,
    TableSpec,
    lookup_target,
)
from sandbox.odata import (
    NOT_FOUND,
    QUERY_ERROR,
    VERSION_MISMATCH,
    ODataError,
    no_property,
    paging_cookie,
    parse_filter,
    parse_select,
    read_cookie,
)
from sandbox.pipeline import Pipeline
from sandbox.registration import prepare
from sandbox.state import OrgState, SandboxState, Table, UnitOfWork, now_iso
from sandbox.validation import GUID, writable_values

MAX_PAGE = 5000
JSON_TYPE = "application/json; odata.metadata=minimal"
_PATH = re.compile(r"^(?P<name>[A-Za-z_$][\w$.]*)(?:\((?P<key>[^)]*)\))?(?:/(?P<prop>\w+))?/?$")
_MAXPAGESIZE = re.compile(r"odata\.maxpagesize\s*=\s*(\d+)")
_ANNOTATIONS = re.compile(r'odata\.include-annotations\s*=\s*"?([^";]*)"?')
_OPTIONS = {"$select", "$filter", "$top", "$count", "$skiptoken"}
LOOKUP_NAME = "Microsoft.Dynamics.CRM.lookuplogicalname"
FORMATTED = "OData.Community.Display.V1.FormattedValue"


@dataclass
class ApiRequest:
    method: str
    path: str  # below the service root, e.g. "mailboxes(…)"
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes
    root: str  # absolute service root, ending in "/"

    def prefers(self, token: str) -> bool:
        return token in self.headers.get("prefer", "")

    def annotations(self) -> frozenset[str]:
        """The lookup annotations `Prefer: odata.include-annotations` asks for (select-columns.md, "Lookup
        property data"): `<lookup>@Microsoft.Dynamics.CRM.lookuplogicalname` names the related table,
        `<lookup>@OData.Community.Display.V1.FormattedValue` its primary name; `*` asks for all."""
        match = _ANNOTATIONS.search(self.headers.get("prefer", ""))
        patterns = [] if match is None else [part.strip() for part in match.group(1).split(",") if part.strip()]
        return frozenset(
            name
            for name in (LOOKUP_NAME, FORMATTED)
            for pattern in patterns
            if pattern in ("*", name) or (pattern.endswith(".*") and name.startswith(pattern[:-1]))
        )


@dataclass
class ApiResponse:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    operations: int = 1  # how many operations it answers (a $batch: all it ran), for execution time

    @classmethod
    def json(cls, status: int, payload: Any, headers: dict[str, str] | None = None) -> ApiResponse:
        body = json.dumps(payload, ensure_ascii=False).encode()
        return cls(status, {"Content-Type": JSON_TYPE, "OData-Version": "4.0", **(headers or {})}, body)

    @classmethod
    def error(cls, error: ODataError) -> ApiResponse:
        return cls.json(error.status, error.body(), error.headers)


def etag(row: Record) -> str:
    return f'W/"{row.get("versionnumber")}"'


def render(
    spec: TableSpec, row: Record, select: list[str], org: OrgState | None = None, wanted: frozenset[str] = frozenset()
) -> dict[str, Any]:
    out: dict[str, Any] = {"@odata.etag": etag(row)}
    for column in select:
        value = None if spec is SERVICEENDPOINT and column == "authvalue" else row.get(column)
        if wanted and org is not None and value is not None and spec.columns[column].kind is Kind.LOOKUP:
            target = lookup_target(spec.columns[column], row.get)
            if FORMATTED in wanted:
                out[f"{column}@{FORMATTED}"] = org.name_of(target, str(value))
            if LOOKUP_NAME in wanted:
                out[f"{column}@{LOOKUP_NAME}"] = target
        out[column] = value
    out.setdefault(spec.primary_key, row.get(spec.primary_key))
    return out


def _preference_applied(request: ApiRequest, page_size: int | None) -> dict[str, str]:
    applied = [] if page_size is None else [f"odata.maxpagesize={page_size}"]
    match = _ANNOTATIONS.search(request.headers.get("prefer", ""))
    if match is not None:
        applied.append(f'odata.include-annotations="{match.group(1)}"')
    return {"Preference-Applied": ", ".join(applied)} if applied else {}


class WebApi:
    def __init__(self, state: SandboxState, pipeline: Pipeline) -> None:
        self.state = state
        self.pipeline = pipeline

    async def handle(
        self, org: OrgState, user_id: str, request: ApiRequest, unit: UnitOfWork | None = None, inner: bool = False
    ) -> ApiResponse:
        """Answer one request. Writes go into `unit` (a change set's) or into one of their own."""
        own = unit is None
        unit = UnitOfWork() if unit is None else unit
        org.counters.operation(request.method, inner)
        try:
            bypass = requested(self.state, org, user_id, request.headers)
            response = await self._route(org, user_id, request, unit, bypass)
        except ODataError as error:
            if own:
                unit.rollback()
            return ApiResponse.error(error)
        except Exception:
            if own:
                unit.rollback()
            raise
        if own:
            unit.commit()
        return response

    async def _route(
        self, org: OrgState, user_id: str, request: ApiRequest, unit: UnitOfWork, bypass: Bypass = NOTHING
    ) -> ApiResponse:
        match = _PATH.match(request.path)
        if match is None:
            raise ODataError(404, f"Resource not found for the segment '{request.path}'.", QUERY_ERROR)
        name, key, prop = match.group("name"), match.group("key"), match.group("prop")
        method = request.method.upper()
        if name == "WhoAmI" and method == "GET" and not key and prop is None:
            return self._whoami(org, user_id, request)
        spec = TABLES.get(name)
        if spec is None:
            raise ODataError(404, f"Resource not found for the segment '{name}'.", QUERY_ERROR)
        table = org.tables[name]
        if key is None:
            if method == "GET":
                return self._collection(org, spec, table, request)
            if method == "POST":
                return self._create(org, spec, table, request, unit)
            raise ODataError(405, f"The {method} method is not allowed on '{name}'.", QUERY_ERROR)
        row_id = self._key(key)
        if method == "GET":
            return self._single(org, spec, table, row_id, prop, request)
        if prop is not None:
            raise ODataError(405, f"The sandbox does not {method} single properties.", QUERY_ERROR)
        if method == "PATCH":
            return await self._patch(org, user_id, spec, table, row_id, request, unit, bypass)
        if method == "DELETE":
            return self._delete(org, spec, table, row_id, request, unit)
        raise ODataError(405, f"The {method} method is not allowed on '{name}({key})'.", QUERY_ERROR)

    @staticmethod
    def _key(key: str) -> str:
        key = key.strip()
        if not GUID.match(key):
            raise ODataError(400, f"The key '{key}' is not a GUID; alternate keys are not supported here.", QUERY_ERROR)
        return key.lower()

    def _whoami(self, org: OrgState, user_id: str, request: ApiRequest) -> ApiResponse:
        return ApiResponse.json(
            200,
            {
                "@odata.context": f"{request.root}$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse",
                "BusinessUnitId": org.business_unit_id,
                "UserId": user_id,
                "OrganizationId": org.id,
            },
        )

    # reads

    def _collection(self, org: OrgState, spec: TableSpec, table: Table, request: ApiRequest) -> ApiResponse:
        unknown = sorted(name for name in request.query if name.startswith("$") and name not in _OPTIONS)
        if unknown:
            raise ODataError(400, f"The query option '{unknown[0]}' is not supported by the sandbox.", QUERY_ERROR)
        select = parse_select(spec, request.query.get("$select"))
        condition = parse_filter(spec, request.query["$filter"]) if "$filter" in request.query else None
        size, applied = self._page_size(request)
        top = self._top(request)
        if applied is not None:  # "If you include both, $top is ignored." (webapi/query/page-results.md)
            top = None
        if top is not None:
            size = min(size, top)
        page, start = read_cookie(request.query["$skiptoken"]) if "$skiptoken" in request.query else (1, 0)
        rows: list[Record] = []
        resume: int | None = None
        pinned = condition.pins if condition is not None else None
        if pinned is not None and spec is not MAILBOX and any(kind == "address" for kind, _ in pinned):
            pinned = None  # only mailboxes are indexed by address
        ids = list(dict.fromkeys(i for pin in sorted(pinned) for i in self._pinned_ids(table, pin))) if pinned else []
        if condition is not None and pinned is not None and (len(pinned) == 1 or len(ids) <= size):
            found = (table.get(row_id) for row_id in ids)
            rows = [row for row in found if row is not None and condition.predicate(row)][:size]
        else:
            for position, row in table.scan(start):
                if condition is not None and not condition.predicate(row):
                    continue
                if len(rows) == size:
                    resume = position - 1
                    break
                rows.append(row)
        payload: dict[str, Any] = {"@odata.context": self._context(request, spec, select)}
        if request.query.get("$count") == "true":
            payload["@odata.count"] = sum(
                1 for _, row in table.scan(0) if condition is None or condition.predicate(row)
            )
        wanted = request.annotations()
        payload["value"] = [render(spec, row, select, org, wanted) for row in rows]
        if resume is not None and top is None:
            payload["@odata.nextLink"] = self._next_link(request, spec, page, resume)
        return ApiResponse.json(200, payload, _preference_applied(request, applied))

    @staticmethod
    def _pinned_ids(table: Table, pin: tuple[str, str]) -> list[str]:
        """The rows one pin names: an address through the mailboxes' address index, an id by the primary key."""
        kind, value = pin
        if kind == "address":
            return table.by_key.get(value, [])
        return [value] if table.get(value) is not None else []

    @staticmethod
    def _page_size(request: ApiRequest) -> tuple[int, int | None]:
        match = _MAXPAGESIZE.search(request.headers.get("prefer", ""))
        if match is None:
            return MAX_PAGE, None
        size = int(match.group(1))
        if not 1 <= size <= MAX_PAGE:
            raise ODataError(400, f"odata.maxpagesize must be between 1 and {MAX_PAGE}.", QUERY_ERROR)
        return size, size

    @staticmethod
    def _top(request: ApiRequest) -> int | None:
        text = request.query.get("$top")
        if text is None:
            return None
        if not text.isdigit() or int(text) < 1:
            raise ODataError(400, f"Invalid value '{text}' for $top.", QUERY_ERROR)
        return int(text)

    @staticmethod
    def _context(request: ApiRequest, spec: TableSpec, select: list[str] | None) -> str:
        if select is None or "$select" not in request.query:
            return f"{request.root}$metadata#{spec.entity_set}"
        return f"{request.root}$metadata#{spec.entity_set}({','.join(select)})"

    @staticmethod
    def _next_link(request: ApiRequest, spec: TableSpec, page: int, resume: int) -> str:
        kept = [(name, value) for name, value in request.query.items() if name != "$skiptoken"]
        kept.append(("$skiptoken", paging_cookie(page, resume)))
        query = "&".join(f"{name}={quote(value, safe=',()$')}" for name, value in kept)
        return f"{request.root}{spec.entity_set}?{query}"

    def _single(
        self, org: OrgState, spec: TableSpec, table: Table, row_id: str, prop: str | None, request: ApiRequest
    ) -> ApiResponse:
        row = self._find(spec, table, row_id)
        if prop is not None:
            if prop not in spec.columns:
                raise no_property(spec, prop)
            return ApiResponse.json(
                200,
                {
                    "@odata.context": f"{request.root}$metadata#{spec.entity_set}({row_id})/{prop}",
                    "value": row.get(prop),
                },
            )
        select = parse_select(spec, request.query.get("$select"))
        body = render(spec, row, select, org, request.annotations())
        payload = {"@odata.context": f"{self._context(request, spec, select)}/$entity", **body}
        return ApiResponse.json(200, payload, {"ETag": etag(row), **_preference_applied(request, None)})

    @staticmethod
    def _find(spec: TableSpec, table: Table, row_id: str) -> Record:
        row = table.get(row_id)
        if row is None:
            raise ODataError(404, f"{spec.logical_name} With Id = {row_id} Does Not Exist", NOT_FOUND)
        return row

    # writes

    @staticmethod
    def _body(request: ApiRequest) -> dict[str, Any]:
        try:
            body = json.loads(request.body or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ODataError(400, f"The request body is not valid JSON: {error}.", QUERY_ERROR) from error
        if not isinstance(body, dict):
            raise ODataError(400, "The request body must be a JSON object.", QUERY_ERROR)
        return body

    @staticmethod
    def _check_version(row: Record | None, request: ApiRequest, spec: TableSpec, row_id: str) -> None:
        if_match = request.headers.get("if-match")
        if row is None:
            if if_match is not None:
                raise ODataError(404, f"{spec.logical_name} With Id = {row_id} Does Not Exist", NOT_FOUND)
            return
        if request.headers.get("if-none-match", "").strip() == "*":
            raise ODataError(412, f"A record with id {row_id} already exists.", VERSION_MISMATCH)
        if if_match is None or if_match.strip() == "*":
            return
        wanted = {tag.strip() for tag in if_match.split(",")}
        if etag(row) not in wanted and etag(row).removeprefix("W/") not in wanted:
            raise ODataError(
                412,
                "The version of the existing record doesn't match the RowVersion property provided.",
                VERSION_MISMATCH,
            )

    def _entity_id(self, request: ApiRequest, spec: TableSpec, row_id: str) -> dict[str, str]:
        return {"OData-EntityId": f"{request.root}{spec.entity_set}({row_id})", "OData-Version": "4.0"}

    async def _patch(
        self,
        org: OrgState,
        user_id: str,
        spec: TableSpec,
        table: Table,
        row_id: str,
        request: ApiRequest,
        unit: UnitOfWork,
        bypass: Bypass,
    ) -> ApiResponse:
        body = self._body(request)
        row = table.get(row_id)
        self._check_version(row, request, spec, row_id)
        if row is None:
            return self._create(org, spec, table, request, unit, row_id=row_id)
        if spec is MAILBOX:
            changes = writable_values(spec, body)
            assert isinstance(row, Mailbox)
            await self.pipeline.update(org, user_id, row, changes, unit, bypass)
        else:
            if spec.entity_set not in REGISTRATION_SETS:
                raise ODataError(405, f"The sandbox does not update '{spec.entity_set}'.", QUERY_ERROR)
            merged = {column: row.get(column) for column in spec.columns}
            changes = prepare(org, spec, body, merged, self._loopback(org))
            for column, value in changes.items():
                unit.write(org, table, row, column, value)
            unit.write(org, table, row, "versionnumber", org.version())
        return self._written(request, spec, row, 204)

    def _loopback(self, org: OrgState) -> bool:
        return bool(self.state.setting(org, "loopback_webhooks"))

    def _written(self, request: ApiRequest, spec: TableSpec, row: Record, status: int) -> ApiResponse:
        headers = self._entity_id(request, spec, str(row.get(spec.primary_key)))
        if request.prefers("return=representation"):
            select = parse_select(spec, request.query.get("$select"))
            payload = {"@odata.context": f"{self._context(request, spec, select)}/$entity", **render(spec, row, select)}
            return ApiResponse.json(200 if status == 204 else status, payload, {**headers, "ETag": etag(row)})
        return ApiResponse(204, headers)

    def _create(
        self,
        org: OrgState,
        spec: TableSpec,
        table: Table,
        request: ApiRequest,
        unit: UnitOfWork,
        row_id: str | None = None,
    ) -> ApiResponse:
        body = self._body(request)
        if spec is MAILBOX and row_id is not None:
            row: Record = self._new_mailbox(org, row_id, writable_values(spec, body))
        elif spec.creatable:
            values = prepare(org, spec, body, None, self._loopback(org))
            new_id = str(values.get(spec.primary_key) or row_id or uuid.uuid4()).lower()
            if table.get(new_id) is not None:
                raise ODataError(400, "Cannot insert duplicate key.", "0x80040237")
            values[spec.primary_key] = new_id
            values["versionnumber"] = org.version()
            row = DictRecord(spec, values)
        else:
            raise ODataError(405, f"The sandbox does not create rows in '{spec.entity_set}'.", QUERY_ERROR)
        unit.add(table, row)
        return self._written(request, spec, row, 201)

    @staticmethod
    def _new_mailbox(org: OrgState, row_id: str, values: dict[str, object]) -> Mailbox:
        """PATCH without If-Match on a missing id creates the row (an upsert), as Dataverse does."""
        row = Mailbox(
            mailboxid=row_id,
            name=str(values.pop("name", "") or ""),
            emailaddress=str(values.pop("emailaddress", "") or ""),
            _regardingobjectid_value=None,
            actdeliverymethod=2,
            modifiedon=now_iso(),
            versionnumber=org.version(),
            regardingobjecttypecode=None,
        )
        for column, value in values.items():
            row.set(column, value)
        return row

    def _delete(
        self, org: OrgState, spec: TableSpec, table: Table, row_id: str, request: ApiRequest, unit: UnitOfWork
    ) -> ApiResponse:
        if not spec.deletable:
            raise ODataError(405, f"The sandbox does not delete rows in '{spec.entity_set}'.", QUERY_ERROR)
        row = self._find(spec, table, row_id)
        self._check_version(row, request, spec, row_id)
        if spec.entity_set == "serviceendpoints":
            steps = org.tables["sdkmessageprocessingsteps"].rows.values()
            if any(step.get("_eventhandler_value") == row_id for step in steps):
                raise ODataError(
                    400,
                    "The object you tried to delete is associated with another object and cannot be deleted.",
                    "0x8004f01f",
                )
        if spec.entity_set == "sdkmessageprocessingsteps":
            images = org.tables["sdkmessageprocessingstepimages"]
            for image_id, image in list(images.rows.items()):
                if image.get("_sdkmessageprocessingstepid_value") == row_id:
                    _remove(unit, images, image_id, image)
        _remove(unit, table, row_id, row)
        return ApiResponse(204, {"OData-Version": "4.0"})


def _remove(unit: UnitOfWork, table: Table, row_id: str, row: Record) -> None:
    table.remove(row_id)
    unit.on_rollback(lambda: table.rows.__setitem__(row_id, row))
