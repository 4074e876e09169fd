"""`repository/sql/read_plan.py`: prebuilt SELECTs run on the DB-API connection (SQLite's
cursor, asyncpg in PostgreSQL's autocommit read units) give the rows SQLAlchemy gives,
and the UUID shortcut reads what `UUID()` reads."""

import inspect
import re
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from sqlalchemy import Executable, Select, bindparam, delete, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import SQLAlchemyError

from domain.chat import Chat, ChatAttachmentName, ChatFile
from domain.workspace import Workspace
from repository.sql import read_plan
from repository.sql.asyncpg_reads import AsyncpgAutocommitConnection
from repository.sql.backend import (
    PostgresMetadataBackend,
    SqliteMetadataBackend,
    SqlMetadataBackend,
)
from repository.sql.chat import (
    CHAT_BY_ID,
    CHAT_PAGE_OF_USER,
    CHAT_SHAPE,
    CHAT_UPSERT,
    CHAT_WITH_WORKSPACE,
)
from repository.sql.chat_file import CHAT_FILE_SHAPE, FILE_PAGE_OF_USER
from repository.sql.loop_sqlite import AutocommitReadConnection, LoopConnection
from repository.sql.read_plan import RowShape
from repository.sql.tables import chats
from repository.sql.workspace import ADD_USED_BYTES, ADD_USED_BYTES_WITHIN_QUOTA, WORKSPACE_BY_USER

USER = UUID('12345678-1234-5678-1234-567812345678')
OTHER_USER = UUID('87654321-4321-8765-4321-876543218765')
WORKSPACE = UUID('11111111-1111-1111-1111-111111111111')
START = datetime(2026, 4, 1, 12, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture(params=['sqlite', pytest.param('postgres', marks=pytest.mark.postgres)])
def make_backend(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Callable[[], SqlMetadataBackend]:
    """A SQL backend on a new SQLite file or a new PostgreSQL database (made here, out of
    any event loop)."""
    if request.param == 'sqlite':
        return partial(SqliteMetadataBackend, tmp_path / 'metadata.sqlite3')
    return partial(PostgresMetadataBackend, request.getfixturevalue('fresh_postgres_dsn'))


@pytest.fixture
async def backend(
    make_backend: Callable[[], SqlMetadataBackend],
) -> AsyncIterator[SqlMetadataBackend]:
    backend = make_backend()
    await backend.migrate()
    chat_ids = sorted(uuid4() for _ in range(7))
    async with backend.unit_of_work() as uow:
        await uow.workspaces.add(
            Workspace(WORKSPACE, USER, created_at=START, quota_bytes=10**12, used_bytes=42)
        )
        for index, chat_id in enumerate(chat_ids):
            # two chats share a timestamp: the page's order falls back to the id
            created = START + timedelta(seconds=index // 2)
            await uow.chats.save(
                Chat(
                    chat_id,
                    WORKSPACE,
                    title=f'chat {index}' if index % 3 else None,
                    created_at=created,
                    updated_at=created + timedelta(microseconds=index),
                    history_bytes=index * 100,
                    history_revision=index,
                    file_count=index % 2,
                )
            )
        for index in range(5):
            # two files share a timestamp: the page's order falls back to the id
            await uow.chat_files.save(
                ChatFile(
                    uuid4(),
                    chat_ids[0],
                    ChatAttachmentName(f'file-{index}.txt'),
                    content_type='text/plain' if index % 2 else None,
                    size_bytes=index * 1000,
                    created_at=START + timedelta(seconds=index // 2),
                    sha256=f'{index:064x}',
                )
            )
        await uow.commit()
    try:
        yield backend
    finally:
        await backend.close()


async def _rows(
    connection: LoopConnection | AutocommitReadConnection | AsyncpgAutocommitConnection,
    statement: Select[Any],
    parameters: dict[str, Any],
) -> list[dict[str, Any]]:
    """`rows` of either connection (SQLite's is synchronous)."""
    rows = connection.rows(statement, parameters)
    return await rows if inspect.isawaitable(rows) else rows


async def _both_ways(
    backend: SqlMetadataBackend,
    statement: Select[Any],
    parameters: dict[str, Any],
    shape: RowShape[Any] | None = None,
) -> tuple[list[Any], list[Any]]:
    """The rows by the connection's `rows` and by SQLAlchemy, in one read unit (a
    one-statement one: on PostgreSQL only those run in autocommit); with a `shape`, the
    objects by the connection's `objects` and of SQLAlchemy's rows."""
    async with backend.unit_of_work(write=False, one_statement=True) as uow:
        connection = uow._session.connection
        assert isinstance(
            connection, LoopConnection | AutocommitReadConnection | AsyncpgAutocommitConnection
        )
        if shape is None:
            fast: list[Any] = await _rows(connection, statement, parameters)
        else:
            objects = connection.objects(statement, parameters, shape)
            fast = await objects if inspect.isawaitable(objects) else objects
        result = await connection.execute(statement, parameters)
        mappings = result.mappings()
        slow = [dict(row) if shape is None else shape.of_mapping(row) for row in mappings]
    return fast, slow


async def test_rows_of_every_prebuilt_statement_equal_sqlalchemys(
    backend: SqlMetadataBackend,
) -> None:
    async with backend.unit_of_work(write=False) as uow:
        page = await uow.chats.list_by_workspace_id(WORKSPACE)
    middle = page[3]
    async with backend.unit_of_work(write=False) as uow:
        files = await uow.chat_files.list_by_chat_id(page[0].chat_id)
    file = files[2]
    cases: list[tuple[Select[Any], dict[str, Any], int]] = [
        (WORKSPACE_BY_USER, {'user_id': USER}, 1),
        (WORKSPACE_BY_USER, {'user_id': OTHER_USER}, 0),
        (CHAT_BY_ID, {'chat_id': middle.chat_id}, 1),
        (CHAT_WITH_WORKSPACE, {'user_id': USER, 'chat_id': middle.chat_id}, 1),
        # the chat's columns are NULL: a missing chat of an existing workspace
        (CHAT_WITH_WORKSPACE, {'user_id': USER, 'chat_id': uuid4()}, 1),
        # the one-statement pages of a list request: the user's, else none
        (CHAT_PAGE_OF_USER.first, {'b_user_id': USER, 'b_limit': 5}, 5),
        (CHAT_PAGE_OF_USER.first, {'b_user_id': OTHER_USER, 'b_limit': 5}, 0),
        (
            CHAT_PAGE_OF_USER.after,
            {
                'b_user_id': USER,
                'b_limit': 50,
                'b_created_at': middle.created_at,
                'b_item_id': middle.chat_id,
            },
            3,
        ),
        (
            FILE_PAGE_OF_USER.first,
            {'b_user_id': USER, 'b_chat_id': page[0].chat_id, 'b_limit': 4},
            4,
        ),
        (
            FILE_PAGE_OF_USER.first,
            {'b_user_id': OTHER_USER, 'b_chat_id': page[0].chat_id, 'b_limit': 4},
            0,
        ),
        # a chat of the user without files
        (
            FILE_PAGE_OF_USER.first,
            {'b_user_id': USER, 'b_chat_id': page[1].chat_id, 'b_limit': 4},
            0,
        ),
        (
            FILE_PAGE_OF_USER.after,
            {
                'b_user_id': USER,
                'b_chat_id': page[0].chat_id,
                'b_limit': 10,
                'b_created_at': file.created_at,
                'b_item_id': file.file_id,
            },
            2,
        ),
    ]
    for statement, parameters, count in cases:
        fast, slow = await _both_ways(backend, statement, parameters)
        assert len(fast) == count
        assert fast == slow
        for fast_row, slow_row in zip(fast, slow, strict=True):
            # same values of the same types: UUIDs as UUID, timestamps aware, NULLs as None
            assert [type(value) for value in fast_row.values()] == [
                type(value) for value in slow_row.values()
            ]


async def test_objects_of_the_list_pages_equal_those_of_sqlalchemys_rows(
    backend: SqlMetadataBackend,
) -> None:
    async with backend.unit_of_work(write=False) as uow:
        page = await uow.chats.list_by_workspace_id(WORKSPACE)
    chat_page = {'b_user_id': USER, 'b_limit': 50}
    file_page = {'b_user_id': USER, 'b_chat_id': page[0].chat_id, 'b_limit': 50}
    # a statement built per call has no plan: `objects` falls back to SQLAlchemy's rows
    per_call = select(chats).where(chats.c.workspace_id == WORKSPACE).limit(2)
    cases: list[tuple[Select[Any], dict[str, Any], RowShape[Any], int, type]] = [
        (CHAT_PAGE_OF_USER.first, chat_page, CHAT_SHAPE, len(page), Chat),
        (FILE_PAGE_OF_USER.first, file_page, CHAT_FILE_SHAPE, 5, ChatFile),
        (per_call, {}, CHAT_SHAPE, 2, Chat),
    ]
    for statement, parameters, shape, count, kind in cases:
        fast, slow = await _both_ways(backend, statement, parameters, shape)
        assert len(fast) == count
        assert all(type(item) is kind for item in fast)
        assert fast == slow
    assert fast == page[:2]


async def test_a_missing_parameter_is_refused_as_sqlalchemy_refuses_it(
    backend: SqlMetadataBackend,
) -> None:
    async with backend.unit_of_work(write=False, one_statement=True) as uow:
        connection = uow._session.connection
        assert isinstance(
            connection, LoopConnection | AutocommitReadConnection | AsyncpgAutocommitConnection
        )
        with pytest.raises(SQLAlchemyError, match="value is required for bind parameter 'chat_id'"):
            await _rows(connection, CHAT_BY_ID, {})
        with pytest.raises(SQLAlchemyError, match="value is required for bind parameter 'chat_id'"):
            await connection.execute(CHAT_BY_ID, {})


async def test_a_statement_built_per_call_is_run_as_well(backend: SqlMetadataBackend) -> None:
    # not a module constant: compiled each time, with its literal bind parameters
    statement = select(chats).where(chats.c.workspace_id == WORKSPACE).limit(2)
    fast, slow = await _both_ways(backend, statement, {})
    assert len(fast) == 2
    assert fast == slow


async def test_an_expanding_statement_falls_back_to_sqlalchemy(
    backend: SqlMetadataBackend,
) -> None:
    async with backend.unit_of_work(write=False) as uow:
        page = await uow.chats.list_by_workspace_id(WORKSPACE)
    wanted = [page[0].chat_id, page[2].chat_id]
    statement = select(chats.c.chat_id).where(chats.c.chat_id.in_(wanted))
    fast, slow = await _both_ways(backend, statement, {})
    assert sorted(row['chat_id'] for row in fast) == sorted(wanted)
    assert fast == slow


async def _count_both_ways(
    connection: LoopConnection, statement: Executable, parameters: dict[str, Any]
) -> tuple[int, int]:
    """The row count of `statement` run by `write` and by SQLAlchemy, each undone after."""
    savepoint = connection.savepoint()
    fast = connection.write(statement, parameters)
    savepoint.rollback()
    slow = (await connection.execute(statement, parameters)).rowcount
    return fast, slow


async def test_prebuilt_writes_count_and_store_what_sqlalchemy_does(tmp_path: Path) -> None:
    # on the DB-API cursor on SQLite only: PostgreSQL's writes go through SQLAlchemy
    backend = SqliteMetadataBackend(tmp_path / 'metadata.sqlite3')
    await backend.migrate()
    chat_id = uuid4()
    new_chat = {f'b_{column.name}': None for column in chats.c} | {
        'b_chat_id': chat_id,
        'b_workspace_id': WORKSPACE,
        'b_title': 'written',
        'b_created_at': START,
        'b_updated_at': START + timedelta(seconds=1),
        'b_history_bytes': 7,
        'b_history_revision': 2,
        'b_file_count': 1,
    }
    try:
        async with backend.unit_of_work() as uow:
            await uow.workspaces.add(
                Workspace(WORKSPACE, USER, created_at=START, quota_bytes=100, used_bytes=42)
            )
            connection = uow._session.connection
            assert isinstance(connection, LoopConnection)
            within = {'b_workspace_id': WORKSPACE, 'b_delta': 58}
            beyond = {'b_workspace_id': WORKSPACE, 'b_delta': 59}
            quota_checked = ADD_USED_BYTES_WITHIN_QUOTA
            assert await _count_both_ways(connection, quota_checked, within) == (1, 1)
            assert await _count_both_ways(connection, quota_checked, beyond) == (0, 0)
            assert await _count_both_ways(connection, ADD_USED_BYTES, beyond) == (1, 1)
            # each count above was undone but SQLAlchemy's: 42 + 58 + 59
            assert connection.write(ADD_USED_BYTES, {**within, 'b_delta': -1}) == 1
            assert connection.write(CHAT_UPSERT['sqlite'], new_chat) == 1
            # the upsert of an existing chat updates it: still one row
            assert connection.write(CHAT_UPSERT['sqlite'], {**new_chat, 'b_title': None}) == 1
            await uow.commit()
        async with backend.unit_of_work(write=False) as uow:
            workspace = await uow.workspaces.get(WORKSPACE)
            chat = await uow.chats.get(chat_id)
        assert workspace is not None
        assert workspace.used_bytes == 42 + 58 + 59 - 1
        assert chat == Chat(
            chat_id,
            WORKSPACE,
            title=None,
            created_at=START,
            updated_at=START + timedelta(seconds=1),
            history_bytes=7,
            history_revision=2,
            file_count=1,
        )
    finally:
        await backend.close()


def test_a_write_rendered_at_execution_has_no_plan() -> None:
    statement = delete(chats).where(chats.c.chat_id.in_(bindparam('b_ids', expanding=True)))
    assert read_plan.WritePlan.of(statement, sqlite.dialect()) is None
    assert read_plan.WritePlan.of(ADD_USED_BYTES, sqlite.dialect()) is not None


@settings(max_examples=300)
@given(st.uuids())
def test_uuid_of_hex_reads_what_uuid_reads(value: UUID) -> None:
    read = read_plan.uuid_of_hex(value.hex)
    assert read == value
    assert hash(read) == hash(value)
    assert str(read) == str(value)
    assert read.is_safe == UUID(value.hex).is_safe


def _outcome(read: Any, text: str) -> object:
    try:
        return read(text)
    except ValueError:
        return ValueError


@settings(max_examples=300)
# an Arabic-Indic three and a fullwidth a: a digit and a letter outside ASCII that
# `int(..., 16)` or `isalnum` take
@given(st.text(alphabet='0123456789abcdefABCDEF-+_ {}xg\u0663\uff41', min_size=30, max_size=36))
@example('0' * 32)
@example('F' * 32)
@example('+' + '0' * 31)
@example('0x' + '0' * 30)
@example('_'.join(['0' * 16, '0' * 15]))
@example(' ' + '0' * 31)
@example('g' * 32)
@example('\u0663' * 32)
def test_uuid_of_hex_reads_any_text_as_uuid_does(text: str) -> None:
    assert _outcome(read_plan.uuid_of_hex, text) == _outcome(UUID, text)


async def _plan_text(
    backend: SqlMetadataBackend, statement: Select[Any], parameters: dict[str, Any]
) -> str:
    """The query plan of a prebuilt statement as the backend's database prints it
    (PostgreSQL with sequential scans off: these test tables are small enough for one to
    win)."""
    # on SQLite a unit of more than one statement: its connection is SQLAlchemy's
    async with backend.unit_of_work(
        write=False, one_statement=not isinstance(backend, SqliteMetadataBackend)
    ) as uow:
        connection = uow._session.connection
        if isinstance(connection, LoopConnection):
            sqlite_connection = connection._connection
            plan = read_plan.ReadPlan.of(statement, sqlite_connection.dialect)
            assert plan is not None
            cursor = sqlite_connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            try:
                rows = cursor.execute(
                    f'EXPLAIN QUERY PLAN {plan.sql}', plan.arguments(parameters)
                ).fetchall()
            finally:
                cursor.close()
            return '\n'.join(str(row[-1]) for row in rows)
        assert isinstance(connection, AsyncpgAutocommitConnection)
        plan = read_plan.ReadPlan.of(statement, connection.dialect)
        assert plan is not None
        driver = await connection.driver()
        await driver.execute('SET enable_seqscan = off')
        try:
            records = await driver.fetch(f'EXPLAIN {plan.sql}', *plan.arguments(parameters))
        finally:
            await driver.execute('RESET enable_seqscan')
        return '\n'.join(record[0] for record in records)


async def test_a_page_after_a_key_starts_at_the_key_in_the_index(
    backend: SqlMetadataBackend,
) -> None:
    # a deep page of a large workspace must not filter every row before its key
    async with backend.unit_of_work(write=False) as uow:
        page = await uow.chats.list_by_workspace_id(WORKSPACE)
    # any timestamp and UUID will do as the key: the plan is what is checked
    key = {'b_created_at': page[3].created_at, 'b_item_id': page[3].chat_id}
    for statement, parameters, index in (
        (
            CHAT_PAGE_OF_USER.after,
            {'b_user_id': USER, 'b_limit': 2},
            'ix_chats_workspace_id_created_at_chat_id',
        ),
        (
            FILE_PAGE_OF_USER.after,
            {'b_user_id': USER, 'b_chat_id': page[0].chat_id, 'b_limit': 2},
            'ix_chat_files_chat_id_created_at_file_id',
        ),
    ):
        text = await _plan_text(backend, statement, parameters | key)
        assert index in text
        # the key is part of the index condition: SQLite's `(created_at,chat_id)>(?,?)`,
        # PostgreSQL's `ROW(created_at, chat_id) > ROW($3, $4)`
        assert re.search(r'\(created_at, ?(chat|file)_id\) ?>', text), text
