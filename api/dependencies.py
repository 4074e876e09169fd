"""Request-scoped lookups: the caller's identity and the process's services."""

from typing import Annotated, cast
from uuid import UUID

from fastapi import Depends, Header, Request

from api.container import Services
from api.gateway import CHECKED_USER_ID, authenticate_headers


def services_of(request: Request) -> Services:
    """The process's services, for routes that take the `Request` (no dependency to solve)."""
    return cast('Services', request.state.services)


# `async def`, not `def`: FastAPI runs a plain function dependency in a worker thread,
# a round trip per request that costs more than the lookup (ADR 019)
async def get_services(request: Request) -> Services:
    return services_of(request)


ServicesDep = Annotated[Services, Depends(get_services)]


async def current_user_id(
    request: Request,
    x_user_id: Annotated[
        str | None,
        Header(description='The caller, as asserted by the trusted gateway (a UUID)'),
    ] = None,
    authorization: Annotated[
        str | None,
        Header(description='`Bearer <token>` when the service has a gateway token'),
    ] = None,
) -> UUID:
    """The caller's user id, as api/gateway.py checked it before the route ran.

    The headers are declared for the OpenAPI document; the check itself ran once, in
    `IdentityFirst`, which keeps its outcome in the scope (ADR 019).
    """
    del x_user_id, authorization  # read from the request by `caller_id`
    return caller_id(request)


UserIdDep = Annotated[UUID, Depends(current_user_id)]


def caller_id(request: Request) -> UUID:
    """`current_user_id` without a dependency for FastAPI to solve, for the hot routes.

    A route that uses it declares `api.openapi_docs.GATEWAY_HEADERS` in `openapi_extra`,
    so that its document shows the headers the dependency would have declared (ADR 019).
    """
    checked = request.scope.get(CHECKED_USER_ID)
    if isinstance(checked, UUID):
        return checked
    return authenticate_headers(services_of(request).settings.gateway_token, request.headers)
