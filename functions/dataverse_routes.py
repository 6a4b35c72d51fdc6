"""Dataverse's webhooks: the synchronous gate and the asynchronous event intake."""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from typing import Any

from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.responses import JSONResponse

from functions.deadlines import decide_by, decides_at_once
from functions.deps import container, limited_body, webhook_settings
from functions.direct_route import DirectRoute
from functions.problems import problem
from shared import bootstrap, telemetry
from shared.bootstrap import NotConfigured
from shared.domain.model import Origin
from shared.ledger.deadline import Deadline
from shared.ledger.port import LedgerError
from shared.service.orgguard import Outcome
from shared.service.views import outcome_view
from shared.telemetry.lograte import rate_limited

log = rate_limited(logging.getLogger("orgguard.gate"))
router = APIRouter(prefix="/api/dataverse", tags=["dataverse"])

KEY_HEADER = "x-orgguard-key"
SIZE_EXCEEDED = "x-ms-dynamics-msg-size-exceeded"


def _size_exceeded(request: Request) -> bool:
    return request.headers.get(SIZE_EXCEEDED, "").strip().lower() in ("true", "1", "yes")


async def _receive(request: Request, origin: Origin, read: list[bytes] | None = None) -> Outcome:
    """Decide the posted claim by the webhook deadline (``DeadlineExceeded`` when it could not be).

    ``read`` receives the body once it is read (the gate remembers a save it let through undecided)."""
    deadline = Deadline(webhook_settings().gate_deadline_s)
    body = await limited_body(request)
    if read is not None:
        read.append(body)
    key, size_exceeded = request.headers.get(KEY_HEADER), _size_exceeded(request)
    built = bootstrap.built()  # the first request builds the container on a thread: its ledger may be what is stuck
    return await decide_by(
        deadline,
        lambda: container().intake.receive_webhook(body, key=key, origin=origin, size_exceeded=size_exceeded),
        at_once=built is not None and decides_at_once(built.ledger),
    )


def _remember_undecided(body: bytes, key: str | None) -> None:
    """The gate let this save through without deciding: the event that follows will say so (``gate_degraded``)."""
    built = bootstrap.built()
    if built is not None:
        asyncio.get_running_loop().run_in_executor(None, partial(built.intake.note_undecided, body, key=key))


async def gate(request: Request) -> JSONResponse:
    """Dataverse's synchronous pre-operation webhook: 200 lets the save happen, 409 cancels it."""
    watch = telemetry.Stopwatch()
    read: list[bytes] = []
    try:
        outcome = await _receive(request, Origin.GATE, read)
    except (LedgerError, NotConfigured) as exc:  # the ledger, a read-back, the deadline, the set-up: on_error
        on_error = webhook_settings().gate_on_error
        telemetry.count(telemetry.GATE_DEGRADED, effect=on_error)
        if on_error == "allow" and read:
            _remember_undecided(read[0], request.headers.get(KEY_HEADER))
        answer = _undecided(on_error, exc)
        telemetry.count(telemetry.GATE_TIME, watch.ms, effect=on_error, degraded=True, answer=answer.status_code)
        return answer
    view = outcome_view(outcome)
    if outcome.decision.stops_claim:
        answer = problem(409, "Claim stopped by OrgGuard", outcome.decision.explanation, **view)
    else:
        answer = JSONResponse(view)
    telemetry.count(telemetry.GATE_TIME, watch.ms, effect=outcome.effect, degraded=False, answer=answer.status_code)
    return answer


router.add_api_route(  # a DirectRoute: it takes the request and answers it itself, no dependency solving
    "/gate",
    gate,
    methods=["POST"],
    response_class=JSONResponse,
    responses={409: {"description": "the claim is stopped (block or hold)"}},
    route_class_override=DirectRoute,
)


def _undecided(on_error: str, exc: Exception) -> JSONResponse:
    log.error("gate could not decide (%s): %s", on_error, exc)
    detail = f"OrgGuard could not decide ({exc}); gate.on_error is {on_error}"
    if on_error == "allow":
        return JSONResponse({"effect": "allow", "case": None, "degraded": True, "detail": detail})
    return problem(409, "Claim stopped: OrgGuard could not decide", detail, effect="block", case=None, degraded=True)


@router.post("/events", status_code=202)
async def events(request: Request, background: BackgroundTasks) -> JSONResponse:
    """Dataverse's asynchronous webhook: the claim already happened; decide, answer, then repair."""
    outcome = await _receive(request, Origin.WEBHOOK)
    if outcome.case_id and outcome.decision.acts and not outcome.duplicate and container().work is None:
        background.add_task(container().run_actions)  # with a work queue, the decision's commit queued the work
    doc: dict[str, Any] = {**outcome_view(outcome), "event": outcome.event, "duplicate": outcome.duplicate}
    return JSONResponse(doc, status_code=202)
