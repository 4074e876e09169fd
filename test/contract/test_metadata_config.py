"""MetadataConfig, the backend factory, and the in-memory repositories used standalone."""

from dataclasses import FrozenInstanceError
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

import pytest

from domain.chat import Chat, ChatAttachmentName, ChatFile
from domain.workspace import Workspace
from repository.chat import InMemoryChatRepository
from repository.chat_file import InMemoryChatFileRepository
from repository.config import MetadataConfig
from repository.factory import create_metadata_backend
from repository.memory import InMemoryMetadataBackend
from repository.sql.backend import PostgresMetadataBackend, SqliteMetadataBackend, asyncpg_url
from repository.sql.dsn import parse_postgres_dsn
from repository.workspace import InMemoryWorkspaceRepository

DSN = 'postgresql://chat:s3cret-pw@db.internal:5432/chat_storage'
USER_A = UUID('aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa')
WS_A = UUID('11111111-1111-1111-1111-111111111111')
CHAT_A = UUID('33333333-3333-3333-3333-333333333333')
FILE_A = UUID('55555555-5555-5555-5555-555555555555')
TS = datetime(2026, 4, 1, 12, 0, 0, tzinfo=UTC)


def test_factory_memory() -> None:
    backend = create_metadata_backend(MetadataConfig(backend='memory'))
    assert isinstance(backend, InMemoryMetadataBackend)
    assert backend.backend_name == 'memory'


def test_factory_sqlite(tmp_path: Path) -> None:
    path = tmp_path / 'metadata.sqlite3'
    backend = create_metadata_backend(MetadataConfig(backend='sqlite', sqlite_path=path))
    assert isinstance(backend, SqliteMetadataBackend)
    assert backend.path == path
    assert not path.exists()  # nothing is created or opened before use


def test_factory_postgres_does_not_connect() -> None:
    backend = create_metadata_backend(MetadataConfig(backend='postgres', postgres_dsn=DSN))
    assert isinstance(backend, PostgresMetadataBackend)
    assert backend.backend_name == 'postgres'


def test_config_is_frozen() -> None:
    config = MetadataConfig(backend='memory')
    with pytest.raises(FrozenInstanceError):
        config.pool_size = 3  # type: ignore[misc]


def test_config_repr_hides_postgres_dsn() -> None:
    assert 's3cret-pw' not in repr(MetadataConfig(backend='postgres', postgres_dsn=DSN))


@pytest.mark.parametrize(
    ('backend', 'options'),
    [
        ('sqlite', {}),
        ('postgres', {}),
        ('memory', {'pool_size': 0}),
        ('memory', {'connect_timeout_seconds': 0.0}),
    ],
)
def test_config_rejects_incomplete_settings(backend: str, options: dict[str, int | float]) -> None:
    with pytest.raises(ValueError, match=r'.'):
        MetadataConfig(backend=backend, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    'dsn',
    [
        'postgresql://u:p@h:5432/d',
        'postgres://u:p@h:5432/d',
        'postgresql+asyncpg://u:p@h:5432/d',
    ],
)
def test_postgres_dsn_schemes_become_asyncpg(dsn: str) -> None:
    url = asyncpg_url(dsn)
    assert url.drivername == 'postgresql+asyncpg'
    assert (url.host, url.port, url.database) == ('h', 5432, 'd')


def test_postgres_dsn_of_another_driver_is_refused_without_echoing_it() -> None:
    with pytest.raises(ValueError, match='postgresql://') as raised:
        asyncpg_url('mysql://u:s3cret-pw@h/d')
    assert 's3cret-pw' not in str(raised.value)


# --- the in-memory repositories keep working standalone, as in the seed --------------------


async def test_standalone_workspace_repository() -> None:
    repo = InMemoryWorkspaceRepository()
    ws = Workspace(workspace_id=WS_A, user_id=USER_A, created_at=TS, quota_bytes=10)
    await repo.save(ws)
    assert await repo.get_by_user_id(USER_A) == ws


async def test_standalone_chat_repository() -> None:
    repo = InMemoryChatRepository()
    chat = Chat(chat_id=CHAT_A, workspace_id=WS_A, created_at=TS, updated_at=TS)
    await repo.save(chat)
    assert await repo.list_by_workspace_id(WS_A) == [chat]


async def test_standalone_chat_file_repository() -> None:
    repo = InMemoryChatFileRepository()
    chat_file = ChatFile(
        file_id=FILE_A,
        chat_id=CHAT_A,
        name=ChatAttachmentName('a.txt'),
        content_type=None,
        size_bytes=1,
        created_at=TS,
        sha256='0' * 64,
    )
    await repo.save(chat_file)
    assert await repo.get_by_chat_id_and_name(CHAT_A, ChatAttachmentName('a.txt')) == chat_file


# --- libpq options of the DSN (`?sslmode=` must not crash every connection) ---------------


def test_libpq_options_become_asyncpg_arguments_and_leave_the_url() -> None:
    target = parse_postgres_dsn(
        f'{DSN}?sslmode=verify-full&connect_timeout=3&application_name=chat-a'
    )

    assert target.ssl == 'verify-full'
    assert target.connect_timeout_seconds == 3.0
    assert target.application_name == 'chat-a'
    assert dict(target.url.query) == {}
    assert target.url.drivername == 'postgresql+asyncpg'
    assert target.address == 'db.internal:5432'


def test_asyncpg_spelling_of_sslmode_is_accepted() -> None:
    assert parse_postgres_dsn(f'{DSN}?ssl=require').ssl == 'require'


def test_a_dsn_without_options_sets_none() -> None:
    target = parse_postgres_dsn(DSN)

    assert (target.ssl, target.connect_timeout_seconds, target.application_name) == (
        None,
        None,
        None,
    )


@pytest.mark.parametrize(
    ('options', 'message'),
    [
        ('?sslmode=maybe', 'sslmode must be one of'),
        ('?sslmode=require&ssl=disable', 'different values'),
        ('?connect_timeout=0', 'connect_timeout must be a positive'),
        ('?connect_timeout=soon', 'connect_timeout must be a positive'),
        ('?options=-c%20search_path%3Dx', "unsupported option 'options'"),
        ('?application_name=a&application_name=b', 'more than once'),
    ],
)
def test_a_dsn_option_that_cannot_be_honoured_is_refused_without_echoing_the_dsn(
    options: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message) as raised:
        parse_postgres_dsn(DSN + options)

    assert 's3cret-pw' not in str(raised.value)
    assert 'postgres_dsn' in str(raised.value)


def test_the_backend_connects_with_the_dsn_options() -> None:
    backend = PostgresMetadataBackend(
        f'{DSN}?sslmode=disable&connect_timeout=2&application_name=chat-b',
        connect_timeout_seconds=9.0,
    )

    args = backend._connect_args()  # what reaches asyncpg.connect()

    assert args['ssl'] == 'disable'
    assert args['timeout'] == 2.0
    assert args['server_settings']['application_name'] == 'chat-b'
    assert 's3cret-pw' not in repr(backend)
