"""A mailbox as the page shows it: its story from the ledger, and each org's row read live."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from starlette.concurrency import run_in_threadpool

from functions.deps import container, role
from shared.domain.auth import Principal, Role
from shared.domain.model import MailboxKey

router = APIRouter(prefix="/api", tags=["admin"])

Reader = Annotated[Principal, Depends(role(Role.READER))]


@router.get("/mailboxes/{address}/timeline")
async def mailbox_timeline(address: str, _: Reader) -> dict[str, Any]:
    """Claims, case steps, actions and owner changes, oldest first, and who owned the mailbox when."""
    from shared.service.timeline import timeline_doc

    key = MailboxKey.parse(address)
    return timeline_doc(await run_in_threadpool(container().service.mailbox, key))


@router.get("/mailboxes/{address}/orgs")
async def mailbox_in_orgs(address: str, _: Reader) -> dict[str, Any]:
    """Each registered org's row for the address, read now; an org that cannot be read says why."""
    key = MailboxKey.parse(address)
    rows = await container().org_rows(key)
    return {"mailbox": key.address, "orgs": [r.doc() for r in rows]}
