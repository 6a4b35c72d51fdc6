"""The operator's port over the admin API (``--url``, ``ORGGUARD_URL``): the server works, with the caller's role.

The bearer token sent, the first that applies:

1. ``ORGGUARD_ADMIN_TOKEN``: the local host's admin token (role Admin);
2. ``ORGGUARD_API_SCOPE`` (e.g. ``api://<app id>/.default``): an Entra access token for
   that scope from azure-identity's ``DefaultAzureCredential`` (``az login``, a managed
   identity, environment credentials). App Service Authentication validates it and
   passes the operator's app role on, so a Reader cannot approve;
3. ``.orgguard/admin-token`` as ``make run`` writes it, for a loopback URL only, so the
   local token is never sent anywhere else.

Every answer is the API's JSON; every error one ``ApiError`` line with the status.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote, urlsplit

from shared.cli.operations import CaseFilter, Doc, MigrationOrder, PageSeen, Verdict
from shared.config.settings import OperatorSettings
from shared.config.urls import is_loopback_host
from shared.domain.jobs import JobKind, JobState
from shared.domain.model import DomainError

if TYPE_CHECKING:
    import httpx

TOKEN_FILE = Path(".orgguard") / "admin-token"
REFRESH_BEFORE_S = 120  # ask for a new Entra token this long before the old one expires


class BadUsage(DomainError):
    """The command line itself cannot work (exit 2)."""


class ApiError(DomainError):
    """An answer from OrgGuard's API that is not a success: one line with its status."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(f"{status} {title}: {detail}")
        self.status = status
        self.title = title


class Unreachable(DomainError, status=503, title="OrgGuard unreachable"):
    """OrgGuard's API did not answer (not running, wrong URL, or too slow)."""


class NoCredentials(DomainError, status=401, title="No credentials"):
    """No admin token or Entra sign-in to send with the request."""


def check_url(url: str) -> str:
    """OrgGuard's base URL: https, or plain http on loopback only (a bearer token must not cross a network in clear)."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadUsage(f"{url!r} is not an http(s) URL, e.g. https://orgguard.azurewebsites.net", field="url")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise BadUsage(f"{url} must be https (plain http only on loopback)", field="url")
    return url.strip().rstrip("/")


# --- credentials ---------------------------------------------------------------------------


class TokenCredential(Protocol):
    """What azure-identity's credentials offer (``azure.core.credentials.TokenCredential``)."""

    def get_token(self, *scopes: str) -> Any: ...


class Bearer(Protocol):
    origin: str  # where the token comes from, for messages (never the token itself)

    def token(self) -> str: ...


@dataclass
class StaticToken:
    value: str
    origin: str

    def token(self) -> str:
        return self.value


@dataclass
class EntraToken:
    """An Entra access token for ``scope``, fetched on first use and again shortly before it expires."""

    scope: str
    credential: TokenCredential
    origin: str = ""
    _cached: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.origin = self.origin or f"Entra ID ({self.scope})"

    def token(self) -> str:
        from azure.core.exceptions import ClientAuthenticationError

        if self._cached is None or self._cached.expires_on - REFRESH_BEFORE_S < time.time():
            try:
                self._cached = self.credential.get_token(self.scope)
            except ClientAuthenticationError as exc:
                first = (str(exc).strip().splitlines() or ["no credential"])[0]
                raise NoCredentials(
                    f"could not get an Entra token for {self.scope}: {first} (sign in with `az login`, "
                    "or set AZURE_CLIENT_ID for a managed identity)"
                ) from None
        return str(self._cached.token)


def entra_credential() -> TokenCredential:
    """azure-identity's default chain (imported here: it costs half a second and only ``--url`` needs it)."""
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()


def credentials_for(url: str, shell: OperatorSettings | None = None, token_file: Path = TOKEN_FILE) -> Bearer:
    s = shell or OperatorSettings.from_env()
    if s.admin_token:
        return StaticToken(s.admin_token, "ORGGUARD_ADMIN_TOKEN")
    if s.api_scope:
        return EntraToken(s.api_scope, entra_credential())
    host = urlsplit(url).hostname or ""
    if is_loopback_host(host) and token_file.exists():
        return StaticToken(token_file.read_text(encoding="utf-8").strip(), str(token_file))
    raise NoCredentials(
        f"no credentials for {url}: set ORGGUARD_API_SCOPE=api://<app id>/.default for an Entra token, "
        "or ORGGUARD_ADMIN_TOKEN for the local host's token"
    )


# --- the port over HTTP ----------------------------------------------------------------------


def _problem(response: httpx.Response) -> ApiError:
    try:
        doc = response.json()
    except ValueError:
        doc = None
    if isinstance(doc, dict) and ("title" in doc or "detail" in doc):
        return ApiError(response.status_code, str(doc.get("title") or ""), str(doc.get("detail") or ""))
    text = " ".join(response.text.split())[:200] or "(no body)"
    return ApiError(response.status_code, response.reason_phrase, text)


class ApiOperations:
    """``shared.cli.operations.Operations`` through OrgGuard's admin API."""

    poll = 0.5

    def __init__(self, url: str, bearer: Bearer, *, timeout: float = 30.0, transport: Any = None) -> None:
        import httpx

        self.url = check_url(url)
        self.where = f"OrgGuard at {self.url}"
        self.bearer = bearer
        self.timeout = timeout
        self._http = httpx.Client(base_url=self.url, timeout=timeout, follow_redirects=False, transport=transport)

    def _call(
        self, method: str, path: str, *, body: Doc | None = None, params: Doc | None = None, text: str | None = None
    ) -> Any:
        """One request (``body`` as JSON, or ``text`` as it is: a policy), its JSON answer or one ``ApiError``."""
        import httpx

        headers = {"Authorization": f"Bearer {self.bearer.token()}", "Accept": "application/json"}
        query = {k: v for k, v in (params or {}).items() if v is not None}
        content = text.encode("utf-8") if text is not None else None
        try:
            response = self._http.request(method, path, json=body, content=content, params=query, headers=headers)
        except httpx.TimeoutException:
            raise Unreachable(f"{self.where} did not answer within {self.timeout:g} s") from None
        except httpx.TransportError as exc:
            raise Unreachable(f"cannot reach {self.where}: {exc or type(exc).__name__}") from None
        if response.is_redirect:
            where = response.headers.get("location", "elsewhere")
            raise ApiError(
                response.status_code,
                "Sign-in required",
                f"{self.where} redirected to {where}; send a token (ORGGUARD_API_SCOPE for Entra ID)",
            )
        if response.status_code >= 400:
            raise _problem(response)
        try:
            return response.json()
        except ValueError:
            kind = response.headers.get("content-type", "no content type")
            raise ApiError(
                response.status_code, "Not OrgGuard's API", f"{self.where} answered {kind}, not JSON"
            ) from None

    # --- cases ----------------------------------------------------------------------------

    def cases(self, query: CaseFilter) -> Doc:
        params = {
            "state": query.state,
            "org": query.org,
            "mailbox": query.mailbox,
            "limit": query.limit,
            "cursor": query.cursor,
        }
        doc: Doc = self._call("GET", "/api/cases", params=params)
        return doc

    def case(self, case_id: str) -> Doc:
        doc: Doc = self._call("GET", f"/api/cases/{_seg(case_id)}")
        return doc

    def decide(self, case_id: str, verdict: Verdict, reason: str) -> Doc:
        doc: Doc = self._call("POST", f"/api/cases/{_seg(case_id)}/{verdict}", body={"reason": reason})
        return doc

    def retry_action(self, action_id: str) -> Doc:
        doc: Doc = self._call("POST", f"/api/actions/{_seg(action_id)}/retry")
        return doc

    def mailbox(self, address: str) -> Doc:
        doc: Doc = self._call("GET", f"/api/mailboxes/{_seg(address)}")
        return doc

    # --- jobs -----------------------------------------------------------------------------

    def jobs(self, kind: JobKind, limit: int = 500) -> list[Doc]:
        items: list[Doc] = self._call("GET", f"/api/{kind.value}s", params={"limit": limit})["items"]
        return items

    def job(self, kind: JobKind, job_id: str) -> Doc:
        doc: Doc = self._call("GET", f"/api/{kind.value}s/{_seg(job_id)}")
        return doc

    def set_state(self, job_id: str, state: JobState) -> Doc:
        verb = {JobState.PAUSED: "pause", JobState.CANCELLED: "cancel", JobState.RUNNING: "resume"}[state]
        doc: Doc = self._call("POST", f"/api/migrations/{_seg(job_id)}/{verb}")
        return doc

    def start_sweep(self, orgs: list[str], apply: bool, *, on_page: PageSeen) -> Doc:
        doc: Doc = self._call("POST", "/api/sweeps", body={"orgs": orgs, "apply": apply})
        return doc

    def start_migration(self, order: MigrationOrder) -> Doc:
        doc: Doc = self._call("POST", "/api/migrations", body=order.body())
        return doc

    def resume_migration(self, job_id: str) -> Doc:
        return self.set_state(job_id, JobState.RUNNING)

    def apply_plan(self, job_id: str) -> Doc:
        doc: Doc = self._call("POST", f"/api/migrations/{_seg(job_id)}/apply")
        return doc

    def settled(self, doc: Doc) -> bool:
        return bool(doc["state"] != JobState.RUNNING.value)

    def interrupt(self, kind: JobKind, job_id: str, *, hard: bool = False) -> bool:
        if kind is not JobKind.MIGRATION:
            return False  # a sweep has no pause: it goes on in OrgGuard
        try:
            self.set_state(job_id, JobState.PAUSED)
        except ApiError as exc:
            if exc.status != 409:  # 409: it finished meanwhile
                raise
        return True

    def report(self, kind: JobKind, job_id: str) -> Doc:
        return self.job(kind, job_id)

    def close(self) -> None:
        self._http.close()


def _seg(value: str) -> str:
    """One path segment (a case id, an address): nothing in it may reach another route."""
    return quote(value, safe="@")
