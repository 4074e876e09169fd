"""Which driver errors answer 503 (retry is safe) rather than 500."""

import asyncpg
import pytest

from repository.sql.errors import is_unavailable


@pytest.mark.parametrize(
    ('error', 'unavailable'),
    [
        # a pooled connection the server closed (a restart, an idle kill): found in review
        (asyncpg.InterfaceError('connection is closed'), True),
        (asyncpg.ConnectionDoesNotExistError('connection was closed'), True),
        (asyncpg.CannotConnectNowError('the database system is starting up'), True),
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
