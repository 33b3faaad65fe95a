"""Who is signed in to the board: the same bearer tokens (JWT) the APIs take (duban/auth.py), from the
`Authorization: Bearer` header or from the HttpOnly, SameSite=Strict cookie the sign-in form sets.
The board checks a token as every service does, then forwards it, so each API applies its own rules.

Forms that change something carry a CSRF value derived from the token (HMAC): a page of another site
can neither read the cookie nor the value, and SameSite=Strict keeps the cookie off its requests anyway."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, Request

from duban.auth import Principal, forbidden
from duban.problems import Problem

COOKIE = "duban_board_token"
CSRF_FIELD = "csrf"


def csrf_value(token: str) -> str:
    return hmac.new(b"duban-board-csrf", token.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Session:
    principal: Principal
    token: str
    from_cookie: bool

    @property
    def csrf(self) -> str:
        return csrf_value(self.token)

    @property
    def decides(self) -> bool:
        """The district office decides extensions and verifies completions."""
        return self.principal.role == "district-office"

    def check_csrf(self, sent: str | None) -> None:
        """A form posted with the cookie must carry the value this session's pages put in it."""
        if self.from_cookie and not (sent and hmac.compare_digest(sent, self.csrf)):
            raise forbidden("the form lacks this session's CSRF value; reload the page and send it again")


class SignInRequired(Exception):
    """No token, or one the board does not accept: a browser goes to the sign-in page, a client gets 401."""

    def __init__(self, request: Request, detail: str) -> None:
        super().__init__(detail)
        self.next = quote(request.url.path + (f"?{request.url.query}" if request.url.query else ""), safe="/?=&")
        self.detail = detail


async def signed_in(request: Request) -> Session:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        token, from_cookie = header[7:].strip(), False
    elif cookie := request.cookies.get(COOKIE):
        token, from_cookie = cookie, True
    else:
        raise SignInRequired(request, "sign in with a bearer token")
    try:
        principal = await request.app.state.verifier.verify(token)
    except Problem as problem:
        if problem.status != 401:
            raise
        raise SignInRequired(request, problem.detail) from None
    return Session(principal, token, from_cookie)


CurrentSession = Annotated[Session, Depends(signed_in)]
