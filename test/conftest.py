"""Fixtures shared by all test packages."""

import asyncio
import os
import secrets
from collections.abc import Callable, Iterator

import asyncpg
import pytest
from sqlalchemy.engine import make_url

DEFAULT_TEST_POSTGRES_DSN = 'postgresql://postgres@127.0.0.1:5432/postgres'


async def _run_admin_statement(server_dsn: str, statement: str) -> None:
    connection = await asyncpg.connect(server_dsn, timeout=5)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@pytest.fixture(scope='session')
def postgres_server_dsn() -> str:
    """DSN of a PostgreSQL server the tests may create databases on (env TEST_POSTGRES_DSN).

    Skips when it cannot be reached, but fails under CI (env CI set): CI must run them.
    """
    dsn = os.environ.get('TEST_POSTGRES_DSN', DEFAULT_TEST_POSTGRES_DSN)
    try:
        asyncio.run(_run_admin_statement(dsn, 'SELECT 1'))
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        reason = (
            f'PostgreSQL for tests is unreachable ({type(error).__name__}); '
            'start it or point TEST_POSTGRES_DSN at one'
        )
        if os.environ.get('CI'):
            pytest.fail(reason)
        pytest.skip(reason)
    return dsn


@pytest.fixture(scope='session')
def make_postgres_database(postgres_server_dsn: str) -> Iterator[Callable[[], str]]:
    """Creates empty databases of random names (returns a DSN); drops them after the session."""
    names: list[str] = []

    def create() -> str:
        name = f'chat_storage_test_{secrets.token_hex(6)}'
        asyncio.run(_run_admin_statement(postgres_server_dsn, f'CREATE DATABASE "{name}"'))
        names.append(name)
        url = make_url(postgres_server_dsn).set(database=name)
        return url.render_as_string(hide_password=False)

    yield create
    for name in names:
        asyncio.run(
            _run_admin_statement(
                postgres_server_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
            )
        )


@pytest.fixture(scope='session')
def postgres_dsn(make_postgres_database: Callable[[], str]) -> str:
    """DSN (postgresql://) of an empty database of this session."""
    return make_postgres_database()
