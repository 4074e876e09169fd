"""Request-scoped lookups: the caller's identity and the process's services."""

from typing import Annotated, cast
from uuid import UUID

from fastapi import Depends, Header, Request

from api.container import Services
from api.gateway import authenticate


# `async def`, not `def`: FastAPI runs a plain function dependency in a worker thread,
# a round trip per request that costs more than the lookup (ADR 019)
async def get_services(request: Request) -> Services:
    return cast('Services', request.state.services)


ServicesDep = Annotated[Services, Depends(get_services)]


async def current_user_id(
    services: ServicesDep,
    x_user_id: Annotated[
        str | None,
        Header(description='The caller, as asserted by the trusted gateway (a UUID)'),
    ] = None,
    authorization: Annotated[
        str | None,
        Header(description='`Bearer <token>` when the service has a gateway token'),
    ] = None,
) -> UUID:
    """The caller's user id (api/gateway.py also checks it before the route runs)."""
    return authenticate(services.settings.gateway_token, authorization, x_user_id)


UserIdDep = Annotated[UUID, Depends(current_user_id)]
