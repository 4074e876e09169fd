"""Which driver errors answer 503 (retry is safe) rather than 500."""

import socket

import asyncpg
import pytest

from domain.error import ServiceUnavailableError
from repository.sql.errors import is_unavailable, refused_reason, unavailable_on_connection_errors


@pytest.mark.parametrize(
    ('error', 'unavailable'),
    [
        # a pooled connection the server closed (a restart, an idle kill)
        (asyncpg.InterfaceError('connection is closed'), True),
        (asyncpg.ConnectionDoesNotExistError('connection was closed'), True),
        (asyncpg.CannotConnectNowError('the database system is starting up'), True),
        # the server's FATAL reached an idle connection ahead of the connection's end
        (
            asyncpg.InternalClientError(
                'cannot switch to state 12; another operation (2) is in progress'
            ),
            True,
        ),
        (
            asyncpg.InternalClientError(
                'cannot switch to state 15; protocol is in the "failed" state'
            ),
            True,
        ),
        (asyncpg.InternalClientError('not connected'), True),
        # asyncpg's own bugs, and its outdated statement cache, are not an outage
        (asyncpg.InternalClientError('_on_result: waiter is None'), False),
        (asyncpg.exceptions.OutdatedSchemaCacheError('cached statement plan is invalid'), False),
        # misuse is a bug, not an outage
        (asyncpg.InterfaceError('the server expects 2 arguments, 1 was passed'), False),
        (asyncpg.UniqueViolationError('duplicate key'), False),
        (ValueError('connection is closed'), False),
    ],
)
def test_connection_errors_are_unavailable_and_misuse_is_not(
    error: BaseException, *, unavailable: bool
) -> None:
    assert is_unavailable(error) is unavailable


# --- the reason an operator reads (never a causeless ServiceUnavailableError) ------------


@pytest.mark.parametrize(
    ('error', 'reason'),
    [
        (
            ConnectionRefusedError(111, "Connect call failed ('10.0.0.5', 5432)"),
            'connection refused',
        ),
        (
            socket.gaierror(-2, 'Name or service not known'),
            'host name not resolved (Name or service not known)',
        ),
        (TimeoutError(), 'timed out'),
        (OSError(113, 'No route to host'), 'No route to host'),
        (
            asyncpg.CannotConnectNowError('the database system is starting up'),
            'the database system is starting up',
        ),
    ],
)
def test_an_unavailable_store_keeps_a_reason_and_drops_the_cause(
    error: BaseException, reason: str
) -> None:
    with pytest.raises(ServiceUnavailableError) as raised, unavailable_on_connection_errors():
        raise error

    assert raised.value.reason == reason
    assert raised.value.__cause__ is None
    assert raised.value.__suppress_context__


def test_a_refused_log_in_has_the_servers_reason_and_other_errors_none() -> None:
    refused = asyncpg.InvalidCatalogNameError('database "chat" does not exist')

    assert refused_reason(refused) == 'database "chat" does not exist'
    assert refused_reason(asyncpg.UniqueViolationError('duplicate key')) is None
