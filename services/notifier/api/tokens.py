"""``/tokens`` (admin): list, create and revoke API tokens; ``/me``: who a token is."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query
from pydantic import BaseModel, Field

from newswatch.notifier.api.context import Admin, Caller, Context, duration
from newswatch.notifier.tokens import Role
from newswatch.shared.config import ID_PATTERN, EmailText

router = APIRouter(tags=["tokens"])


class TokenIn(BaseModel):
    owner: str = Field(pattern=ID_PATTERN, description="who the token acts as")
    name: str = Field(default="", max_length=128, description="a label, e.g. the client it is for")
    role: Role = "subscriber"
    expires_in: str | None = Field(default=None, description="e.g. 90d; absent: never expires")
    email: EmailText | None = Field(
        default=None, description="the holder's address: the web app may mail it a sign-in link"
    )


@router.get("/me")
def me(who: Caller) -> dict[str, Any]:
    """The caller: owner, role and token id."""
    return {"owner": who.owner, "role": who.role, "token_id": who.token_id, "expires_at": who.expires_at}


@router.get("/tokens")
def list_tokens(
    who: Admin, ctx: Context, owner: Annotated[str | None, Query(pattern=ID_PATTERN)] = None
) -> list[dict[str, Any]]:
    """Every token (never the token itself: only its id), oldest first."""
    return [t.as_dict() for t in ctx.db.tokens.list(owner)]


@router.post("/tokens", status_code=201)
def create_token(body: TokenIn, who: Admin, ctx: Context) -> dict[str, Any]:
    """A new token; the answer carries it, once (only its hash is kept)."""
    expires = time.time() + duration(body.expires_in, ["body", "expires_in"]) if body.expires_in else None
    token, info = ctx.db.tokens.create(body.owner, body.name, body.role, expires, body.email)
    return {**info.as_dict(), "token": token}


@router.delete("/tokens/{token_id}", status_code=204)
def revoke_token(token_id: Annotated[str, Path(pattern=r"^[0-9a-f]{12}$")], who: Admin, ctx: Context) -> None:
    """Revokes a token by its id; its sessions in the web app end with it."""
    if not ctx.db.tokens.revoke(token_id):
        raise HTTPException(404, f"no token {token_id!r} (or it was revoked already)")
