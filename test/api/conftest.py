"""The app in-process over httpx's ASGI transport, on a real data directory."""

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg
import httpx
import pytest
from asgi_lifespan import LifespanManager

from api.app import create_app
from api.settings import Settings

USER_A = UUID('aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa')
USER_B = UUID('bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb')


class StepClock:
    """A clock that moves by one millisecond each time it is read."""

    def __init__(self) -> None:
        self.current = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)

    def now(self) -> datetime:
        self.current += timedelta(milliseconds=1)
        return self.current

    def advance(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)


def headers_for(user_id: UUID) -> dict[str, str]:
    return {'X-User-Id': str(user_id)}


@pytest.fixture
def other_user() -> dict[str, str]:
    """Headers of a second caller, user B."""
    return headers_for(USER_B)


@pytest.fixture
def clock() -> StepClock:
    return StepClock()


@pytest.fixture
def backend_name() -> str:
    """The app in-process on SQLite: the contract suite (test/contract) proves the
    metadata backends equal."""
    return 'sqlite'


@pytest.fixture
def metadata_overrides(backend_name: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    """Settings of the metadata store; PostgreSQL gets the session's throwaway database."""
    if backend_name != 'postgres':
        return {}
    return {'postgres_dsn': request.getfixturevalue('postgres_dsn')}


async def _empty_postgres(dsn: str) -> None:
    """No rows of an earlier test: start-up publishes every chat the rows name."""
    connection = await asyncpg.connect(dsn, timeout=5)
    try:
        await connection.execute(
            'TRUNCATE workspaces, chats, chat_files, sandbox_sessions, idempotency_keys, '
            'history_segments'
        )
    except asyncpg.UndefinedTableError:
        pass  # not migrated yet: the app's start-up creates the tables empty
    finally:
        await connection.close()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / 'data'


@pytest.fixture
def make_settings(
    data_dir: Path, backend_name: str, metadata_overrides: dict[str, Any]
) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            'data_dir': data_dir,
            'metadata_backend': backend_name,
            'default_quota_bytes': 10_000,
            'max_file_bytes': 4_000,
            **metadata_overrides,
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture
async def client(settings: Settings, clock: StepClock) -> AsyncIterator[httpx.AsyncClient]:
    if settings.postgres_dsn is not None:  # emptied for this test before start-up
        await _empty_postgres(settings.postgres_dsn.get_secret_value())
    app = create_app(settings, clock=clock)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(
            transport=transport, base_url='http://testserver', headers=headers_for(USER_A)
        ) as http:
            yield http


@pytest.fixture
async def chat_id(client: httpx.AsyncClient) -> str:
    assert (await client.put('/v1/workspace')).status_code == 201
    response = await client.post('/v1/chats', json={'title': 'first'})
    assert response.status_code == 201
    return str(response.json()['chat_id'])
