"""Request-scoped lookups: the caller's identity and the process's services."""

import hmac
from typing import Annotated, cast
from uuid import UUID

from fastapi import Depends, Header, Request

from api.container import Services
from api.problems import unauthenticated


def get_services(request: Request) -> Services:
    return cast('Services', request.state.services)


ServicesDep = Annotated[Services, Depends(get_services)]


def current_user_id(
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
    """The caller's user id; the gateway's shared secret first, when one is configured."""
    token = services.settings.gateway_token
    if token is not None:
        expected = f'Bearer {token.get_secret_value()}'.encode()
        given = (authorization or '').encode()
        if not hmac.compare_digest(given, expected):
            raise unauthenticated('A valid gateway token is required.')
    if not x_user_id:
        raise unauthenticated('The X-User-Id header is required.')
    try:
        return UUID(x_user_id)
    except ValueError:
        raise unauthenticated('X-User-Id must be a UUID.') from None


UserIdDep = Annotated[UUID, Depends(current_user_id)]
