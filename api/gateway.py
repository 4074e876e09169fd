"""The caller's identity: the gateway's shared secret and `X-User-Id`, checked first.

`authenticate` is the one check. The `current_user_id` dependency uses it to get the
caller; `IdentityFirst` runs it on every `/v1` request before routing and body parsing,
so that an unauthenticated request is `401` even when its path, query or body is
malformed (FastAPI parses a JSON body before it resolves dependencies).
"""

import hmac
import re
from http import HTTPStatus
from uuid import UUID

from fastapi import FastAPI, Request
from pydantic import SecretStr
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from api.problems import ApiProblem, problem_response, unauthenticated
from api.routing import app_path

API_PREFIX = '/v1'
# the scope key under which `IdentityFirst` leaves the caller it checked, for the routes
CHECKED_USER_ID = 'chat_storage.user_id'


# the form `str(UUID)` writes, in either case: `{…}`, `urn:uuid:…` or 32 bare hex digits
# would be the same user under other spellings
_USER_ID = re.compile('[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}')


def authenticate(token: SecretStr | None, authorization: str | None, x_user_id: str | None) -> UUID:
    """The caller's user id; the gateway's shared secret first, when one is configured."""
    if token is not None:
        # the scheme is case-insensitive (RFC 9110, 11.1); the token is compared in
        # constant time
        scheme, _, credentials = (authorization or '').partition(' ')
        given = credentials.strip().encode()
        matches = hmac.compare_digest(given, token.get_secret_value().encode())
        if not (matches and scheme.lower() == 'bearer'):
            raise unauthenticated('A valid gateway token is required.')
    if not x_user_id:
        raise unauthenticated('The X-User-Id header is required.')
    if not _USER_ID.fullmatch(x_user_id):
        raise unauthenticated('X-User-Id must be one UUID (8-4-4-4-12 hex digits).')
    return UUID(x_user_id)


def authenticate_headers(token: SecretStr | None, headers: Headers) -> UUID:
    """`authenticate` on a request's headers. Two `X-User-Id` headers (a gateway that
    appends its own to the client's) name no one: joined, they are not one UUID; two
    `Authorization` headers, joined, are not the token."""
    return authenticate(token, _joined(headers, 'authorization'), _joined(headers, 'x-user-id'))


def _joined(headers: Headers, name: str) -> str | None:
    """Every value of a header, joined as RFC 9110 (5.3) combines repeated fields."""
    return ','.join(headers.getlist(name)) or None


class IdentityFirst:
    """ASGI middleware: a `/v1` request without a valid identity ends here with `401`."""

    def __init__(self, app: ASGIApp, *, token: SecretStr | None) -> None:
        self.app = app
        self._token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = app_path(scope)
        if scope['type'] == 'http' and (path == API_PREFIX or path.startswith(API_PREFIX + '/')):
            try:
                scope[CHECKED_USER_ID] = authenticate_headers(self._token, Headers(scope=scope))
            except ApiProblem as problem:
                response = problem_response(
                    Request(scope),
                    status=problem.status,
                    code=problem.code,
                    title=HTTPStatus(problem.status).phrase,
                    detail=problem.detail,
                    headers=problem.headers,
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def install_identity_first(app: FastAPI, token: SecretStr | None) -> None:
    app.add_middleware(IdentityFirst, token=token)
