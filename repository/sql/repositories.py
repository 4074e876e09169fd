"""The metadata repositories for SQLite and PostgreSQL: one code path for both."""

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Self, TypeVar
from uuid import UUID

from sqlalchemy import (
    BigInteger,
    BindParameter,
    Column,
    ColumnElement,
    Executable,
    Integer,
    Select,
    Table,
    and_,
    bindparam,
    cast,
    delete,
    exists,
    func,
    literal,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import RowMapping

from domain.chat import Chat, ChatAttachmentName, ChatFile
from domain.idempotency import IdempotencyRecord, RecordedResponse
from domain.page import PageKey
from domain.sandbox import SandboxSession
from domain.workspace import Workspace
from repository.common import check_limit
from repository.sql.read_plan import RowShape
from repository.sql.session import SqlSession
from repository.sql.tables import (
    chat_files,
    chats,
    idempotency_keys,
    sandbox_sessions,
    workspaces,
)
from usecase.interface import (
    ChatFileRepository,
    ChatRepository,
    IdempotencyKeyRepository,
    SandboxSessionRepository,
    WorkspaceRepository,
)

T = TypeVar('T')


def _insert_ignoring_conflicts(
    dialect_name: str, table: Table, values: Mapping[str, object]
) -> Executable:
    """INSERT … ON CONFLICT DO NOTHING (any unique or primary key)."""
    if dialect_name == 'postgresql':
        return postgresql.insert(table).values(dict(values)).on_conflict_do_nothing()
    return sqlite.insert(table).values(dict(values)).on_conflict_do_nothing()


def _upsert(dialect_name: str, table: Table, values: Mapping[str, object], key: str) -> Executable:
    """INSERT … ON CONFLICT (key) DO UPDATE SET every other column."""
    if dialect_name == 'postgresql':
        pg_stmt = postgresql.insert(table).values(dict(values))
        return pg_stmt.on_conflict_do_update(
            index_elements=[key],
            set_={name: pg_stmt.excluded[name] for name in values if name != key},
        )
    lite_stmt = sqlite.insert(table).values(dict(values))
    return lite_stmt.on_conflict_do_update(
        index_elements=[key],
        set_={name: lite_stmt.excluded[name] for name in values if name != key},
    )


def _after_key(
    created_at: Column[Any],
    item_id: Column[Any],
    key_created_at: datetime | BindParameter[Any],
    key_item_id: UUID | BindParameter[Any],
) -> ColumnElement[bool]:
    """(created_at, id) > (key) as a row-value comparison, which SQLite and PostgreSQL
    both take as a range of the (parent, created_at, id) index: a page deep in a large
    workspace starts where the key is, instead of filtering every row before it (the
    spelled-out `a > x OR (a = x AND b > y)` did that: 13 ms instead of 0.07 ms for a
    page near the end of 100,000 chats on SQLite). The key is a pair of values or of
    bind parameters; values are bound with the columns' types (a tuple does not take
    them from the other side, and SQLite's timestamps are text of our own format)."""
    return tuple_(created_at, item_id) > tuple_(
        _bound(key_created_at, created_at), _bound(key_item_id, item_id)
    )


def _bound(value: object, column: Column[Any]) -> BindParameter[Any]:
    if isinstance(value, BindParameter):
        return value
    return literal(value, column.type)


def _keyset_page(
    statement: Select[Any],
    created_at: Column[Any],
    item_id: Column[Any],
    *,
    limit: int | None,
    after: PageKey | None,
) -> Select[Any]:
    """Order by (created_at, id) and start strictly after `after`."""
    check_limit(limit)
    if after is not None:
        statement = statement.where(
            _after_key(created_at, item_id, after.created_at, after.item_id)
        )
    statement = statement.order_by(created_at, item_id)
    if limit is not None:
        statement = statement.limit(limit)
    return statement


def _chat_ids_of_workspace(workspace_id: UUID) -> Select[tuple[UUID]]:
    return select(chats.c.chat_id).where(chats.c.workspace_id == workspace_id)


def _stored_by_workspace(*where: ColumnElement[bool]) -> Select[Any]:
    """The workspaces (those matching `where`) joined to what their rows account for, as
    the column `stored`: the sums of their chats' `history_bytes` and of their files'
    sizes, each grouped by workspace in one pass over its table."""
    histories = (
        select(
            chats.c.workspace_id.label('workspace_id'),
            func.sum(chats.c.history_bytes).label('stored'),
        )
        .where(*where)
        .group_by(chats.c.workspace_id)
        .subquery()
    )
    files = (
        select(
            chats.c.workspace_id.label('workspace_id'),
            func.sum(chat_files.c.size_bytes).label('stored'),
        )
        .select_from(chat_files.join(chats, chat_files.c.chat_id == chats.c.chat_id))
        .where(*where)
        .group_by(chats.c.workspace_id)
        .subquery()
    )
    # SUM(bigint) is numeric on PostgreSQL: cast back to compare with a bigint
    stored = cast(
        func.coalesce(histories.c.stored, 0) + func.coalesce(files.c.stored, 0), BigInteger
    ).label('stored')
    return (
        select(workspaces, stored)
        .outerjoin(histories, histories.c.workspace_id == workspaces.c.workspace_id)
        .outerjoin(files, files.c.workspace_id == workspaces.c.workspace_id)
    )


def _usage_mismatches() -> Select[Any]:
    """Workspaces whose `used_bytes` is not what their rows account for."""
    every = _stored_by_workspace().subquery()
    return (
        select(*(every.c[column.name] for column in workspaces.c))
        .where(every.c.used_bytes != every.c.stored)
        .order_by(every.c.created_at, every.c.workspace_id)
    )


_USAGE_MISMATCHES = _usage_mismatches()
# chat ids bound in one statement (SQLite takes at most 32,766 values)
_IDS_PER_READ = 500


class SqlWorkspaceRepository(WorkspaceRepository):
    def __init__(self, session: SqlSession) -> None:
        self._session = session

    async def get(self, workspace_id: UUID) -> Workspace | None:
        result = await self._session.execute(
            select(workspaces).where(workspaces.c.workspace_id == workspace_id)
        )
        row = result.mappings().one_or_none()
        return None if row is None else _workspace(row)

    async def get_by_user_id(self, user_id: UUID, *, for_update: bool = False) -> Workspace | None:
        # PostgreSQL locks the row; SQLite ignores the clause, its write units already hold
        # the database's write lock (BEGIN IMMEDIATE)
        statement = _WORKSPACE_BY_USER_FOR_UPDATE if for_update else _WORKSPACE_BY_USER
        rows = await self._session.rows(statement, {'user_id': user_id})
        return _workspace(rows[0]) if rows else None

    async def add(self, workspace: Workspace) -> bool:
        result = await self._session.execute_write(
            _insert_ignoring_conflicts(
                self._session.dialect_name, workspaces, _workspace_values(workspace)
            )
        )
        return result.rowcount == 1

    async def save(self, workspace: Workspace) -> None:
        await self._session.execute_write(
            delete(workspaces).where(
                workspaces.c.user_id == workspace.user_id,
                workspaces.c.workspace_id != workspace.workspace_id,
            )
        )
        await self._session.execute_write(
            _upsert(
                self._session.dialect_name,
                workspaces,
                _workspace_values(workspace),
                'workspace_id',
            )
        )

    async def add_used_bytes(self, workspace_id: UUID, delta: int) -> bool:
        # checked and applied in one statement when growing: no read-modify-write race
        statement = _ADD_USED_BYTES_WITHIN_QUOTA if delta > 0 else _ADD_USED_BYTES
        changed = await self._session.execute_prebuilt_write(
            statement, {'b_workspace_id': workspace_id, 'b_delta': delta}
        )
        return changed == 1

    async def delete(self, workspace_id: UUID) -> None:
        await self._session.execute_write(
            delete(workspaces).where(workspaces.c.workspace_id == workspace_id)
        )

    async def list_all(
        self,
        *,
        limit: int | None = None,
        after: PageKey | None = None,
    ) -> list[Workspace]:
        statement = _keyset_page(
            select(workspaces),
            workspaces.c.created_at,
            workspaces.c.workspace_id,
            limit=limit,
            after=after,
        )
        result = await self._session.execute(statement)
        return [_workspace(row) for row in result.mappings()]

    async def stored_bytes(self, workspace_id: UUID) -> int:
        statement = _stored_by_workspace(chats.c.workspace_id == workspace_id).where(
            workspaces.c.workspace_id == workspace_id
        )
        result = await self._session.execute(statement)
        row = result.mappings().one_or_none()
        return 0 if row is None else int(row['stored'])

    async def list_usage_mismatches(self) -> list[Workspace]:
        result = await self._session.execute(_USAGE_MISMATCHES)
        return [_workspace(row) for row in result.mappings()]


_ADD_USED_BYTES = (
    update(workspaces)
    .where(workspaces.c.workspace_id == bindparam('b_workspace_id'))
    .values(used_bytes=workspaces.c.used_bytes + bindparam('b_delta', type_=BigInteger))
)
_ADD_USED_BYTES_WITHIN_QUOTA = _ADD_USED_BYTES.where(
    workspaces.c.used_bytes + bindparam('b_delta', type_=BigInteger) <= workspaces.c.quota_bytes
)


def _prebuilt_upsert(table: Table, key: str) -> dict[str, Executable]:
    """`_upsert` of every column of `table` with bind parameters `b_<column>`, built once
    per dialect (a column's own name is reserved in VALUES)."""
    values = {column.name: bindparam(f'b_{column.name}', type_=column.type) for column in table.c}
    return {
        dialect_name: _upsert(dialect_name, table, values, key)
        for dialect_name in ('postgresql', 'sqlite')
    }


_CHAT_UPSERT = _prebuilt_upsert(chats, 'chat_id')


@dataclass(frozen=True, slots=True)
class _PrebuiltPage:
    """`_keyset_page` with bind parameters (`b_limit`; after a key also `b_created_at`
    and `b_item_id`), built once: the first page and the pages after a key (ADR 019)."""

    first: Select[Any]
    after: Select[Any]

    @classmethod
    def of(cls, statement: Select[Any], created_at: Column[Any], item_id: Column[Any]) -> Self:
        first = statement.order_by(created_at, item_id).limit(bindparam('b_limit', type_=Integer))
        after = first.where(
            _after_key(
                created_at,
                item_id,
                bindparam('b_created_at', type_=created_at.type),
                bindparam('b_item_id', type_=item_id.type),
            )
        )
        return cls(first, after)

    async def objects(
        self,
        session: SqlSession,
        parameters: dict[str, object],
        shape: RowShape[T],
        *,
        limit: int,
        after: PageKey | None,
    ) -> list[T]:
        check_limit(limit)
        parameters = {**parameters, 'b_limit': limit}
        if after is None:
            return await session.objects(self.first, parameters, shape)
        parameters |= {'b_created_at': after.created_at, 'b_item_id': after.item_id}
        return await session.objects(self.after, parameters, shape)


# a list request's page in one statement (ADR 019): the workspace is the user's, the chat
# only one of that workspace (else the subquery is NULL and the page empty); an empty page
# leaves the use case to tell the end of the list from a missing workspace or chat
_CHAT_PAGE_OF_USER = _PrebuiltPage.of(
    select(chats).where(
        chats.c.workspace_id
        == select(workspaces.c.workspace_id)
        .where(workspaces.c.user_id == bindparam('b_user_id'))
        .scalar_subquery()
    ),
    chats.c.created_at,
    chats.c.chat_id,
)
_FILE_PAGE_OF_USER = _PrebuiltPage.of(
    select(chat_files).where(
        chat_files.c.chat_id
        == select(chats.c.chat_id)
        .join(workspaces, workspaces.c.workspace_id == chats.c.workspace_id)
        .where(
            chats.c.chat_id == bindparam('b_chat_id'),
            workspaces.c.user_id == bindparam('b_user_id'),
        )
        .scalar_subquery()
    ),
    chat_files.c.created_at,
    chat_files.c.file_id,
)

# built once: the two lookups of nearly every request (building a statement costs more
# than running it on SQLite; ADR 019)
_WORKSPACE_BY_USER = select(workspaces).where(workspaces.c.user_id == bindparam('user_id'))
_WORKSPACE_BY_USER_FOR_UPDATE = _WORKSPACE_BY_USER.with_for_update()
_CHAT_BY_ID = select(chats).where(chats.c.chat_id == bindparam('chat_id'))
# the workspace of a user and one of its chats in one statement (the chat's columns are
# NULL when it is missing or in another workspace)
_CHAT_WITH_WORKSPACE = (
    select(*workspaces.c, *(column.label(f'chat_{column.name}') for column in chats.c))
    .select_from(
        workspaces.outerjoin(
            chats,
            and_(
                chats.c.workspace_id == workspaces.c.workspace_id,
                chats.c.chat_id == bindparam('chat_id'),
            ),
        )
    )
    .where(workspaces.c.user_id == bindparam('user_id'))
)
# the chat's columns in _CHAT_WITH_WORKSPACE: each column's name and its label there
_CHAT_LABELS = tuple((column.name, f'chat_{column.name}') for column in chats.c)


class SqlChatRepository(ChatRepository):
    def __init__(self, session: SqlSession) -> None:
        self._session = session

    async def get(self, chat_id: UUID) -> Chat | None:
        rows = await self._session.rows(_CHAT_BY_ID, {'chat_id': chat_id})
        return _chat(rows[0]) if rows else None

    async def get_many(self, chat_ids: Collection[UUID]) -> list[Chat]:
        found: list[Chat] = []
        ids = list(set(chat_ids))
        for start in range(0, len(ids), _IDS_PER_READ):
            result = await self._session.execute(
                select(chats).where(chats.c.chat_id.in_(ids[start : start + _IDS_PER_READ]))
            )
            found.extend(_chat(row) for row in result.mappings())
        return found

    async def get_with_workspace(
        self, user_id: UUID, chat_id: UUID
    ) -> tuple[Workspace | None, Chat | None]:
        rows = await self._session.rows(
            _CHAT_WITH_WORKSPACE, {'user_id': user_id, 'chat_id': chat_id}
        )
        if not rows:
            return None, None
        [row] = rows
        workspace = _workspace(row)
        if row['chat_chat_id'] is None:
            return workspace, None
        return workspace, _chat({name: row[label] for name, label in _CHAT_LABELS})

    async def list_by_workspace_id(
        self,
        workspace_id: UUID,
        *,
        limit: int | None = None,
        after: PageKey | None = None,
    ) -> list[Chat]:
        statement = _keyset_page(
            select(chats).where(chats.c.workspace_id == workspace_id),
            chats.c.created_at,
            chats.c.chat_id,
            limit=limit,
            after=after,
        )
        result = await self._session.execute(statement)
        return [_chat(row) for row in result.mappings()]

    async def list_by_user_id(
        self, user_id: UUID, *, limit: int, after: PageKey | None = None
    ) -> list[Chat]:
        return await _CHAT_PAGE_OF_USER.objects(
            self._session, {'b_user_id': user_id}, _CHAT_SHAPE, limit=limit, after=after
        )

    async def save(self, chat: Chat) -> None:
        values = {
            'chat_id': chat.chat_id,
            'workspace_id': chat.workspace_id,
            'title': chat.title,
            'created_at': chat.created_at,
            'updated_at': chat.updated_at,
            'history_bytes': chat.history_bytes,
            'history_revision': chat.history_revision,
            'file_count': chat.file_count,
        }
        await self._session.execute_prebuilt_write(
            _CHAT_UPSERT[self._session.dialect_name],
            {f'b_{name}': value for name, value in values.items()},
        )

    async def delete(self, chat_id: UUID) -> None:
        await self._session.execute_write(delete(chats).where(chats.c.chat_id == chat_id))

    async def delete_by_workspace_id(self, workspace_id: UUID) -> None:
        await self._session.execute_write(delete(chats).where(chats.c.workspace_id == workspace_id))


class SqlChatFileRepository(ChatFileRepository):
    def __init__(self, session: SqlSession) -> None:
        self._session = session

    async def get(self, file_id: UUID) -> ChatFile | None:
        result = await self._session.execute(
            select(chat_files).where(chat_files.c.file_id == file_id)
        )
        row = result.mappings().one_or_none()
        return None if row is None else _chat_file(row)

    async def get_by_chat_id_and_name(
        self,
        chat_id: UUID,
        name: ChatAttachmentName,
    ) -> ChatFile | None:
        result = await self._session.execute(
            select(chat_files).where(
                chat_files.c.chat_id == chat_id,
                chat_files.c.name == name.value,
            )
        )
        row = result.mappings().one_or_none()
        return None if row is None else _chat_file(row)

    async def list_by_chat_id(
        self,
        chat_id: UUID,
        *,
        limit: int | None = None,
        after: PageKey | None = None,
    ) -> list[ChatFile]:
        statement = _keyset_page(
            select(chat_files).where(chat_files.c.chat_id == chat_id),
            chat_files.c.created_at,
            chat_files.c.file_id,
            limit=limit,
            after=after,
        )
        result = await self._session.execute(statement)
        return [_chat_file(row) for row in result.mappings()]

    async def list_by_chat_of_user(
        self, user_id: UUID, chat_id: UUID, *, limit: int, after: PageKey | None = None
    ) -> list[ChatFile]:
        return await _FILE_PAGE_OF_USER.objects(
            self._session,
            {'b_user_id': user_id, 'b_chat_id': chat_id},
            _CHAT_FILE_SHAPE,
            limit=limit,
            after=after,
        )

    async def total_size_by_chat_id(self, chat_id: UUID) -> int:
        # SUM(bigint) is numeric on PostgreSQL; cast back so the driver returns an int
        total: ColumnElement[int] = cast(
            func.coalesce(func.sum(chat_files.c.size_bytes), 0), BigInteger
        )
        result = await self._session.execute(select(total).where(chat_files.c.chat_id == chat_id))
        return int(result.scalar_one())

    async def save(self, chat_file: ChatFile) -> None:
        await self._session.execute_write(
            delete(chat_files).where(
                chat_files.c.chat_id == chat_file.chat_id,
                chat_files.c.name == chat_file.name.value,
                chat_files.c.file_id != chat_file.file_id,
            )
        )
        values = {
            'file_id': chat_file.file_id,
            'chat_id': chat_file.chat_id,
            'name': chat_file.name.value,
            'content_type': chat_file.content_type,
            'size_bytes': chat_file.size_bytes,
            'sha256': chat_file.sha256,
            'created_at': chat_file.created_at,
        }
        await self._session.execute_write(
            _upsert(self._session.dialect_name, chat_files, values, 'file_id')
        )

    async def delete(self, file_id: UUID) -> None:
        await self._session.execute_write(delete(chat_files).where(chat_files.c.file_id == file_id))

    async def delete_by_chat_id(self, chat_id: UUID) -> None:
        await self._session.execute_write(delete(chat_files).where(chat_files.c.chat_id == chat_id))

    async def delete_by_workspace_id(self, workspace_id: UUID) -> None:
        await self._session.execute_write(
            delete(chat_files).where(chat_files.c.chat_id.in_(_chat_ids_of_workspace(workspace_id)))
        )


class SqlSandboxSessionRepository(SandboxSessionRepository):
    def __init__(self, session: SqlSession) -> None:
        self._session = session

    async def get_active_by_chat_id(self, chat_id: UUID, now: datetime) -> SandboxSession | None:
        result = await self._session.execute(
            select(sandbox_sessions).where(
                sandbox_sessions.c.chat_id == chat_id,
                sandbox_sessions.c.expires_at > now,
            )
        )
        row = result.mappings().one_or_none()
        return None if row is None else _sandbox_session(row)

    async def exists_active_in_workspace(self, workspace_id: UUID, now: datetime) -> bool:
        active = (
            exists()
            .select_from(
                sandbox_sessions.join(chats, chats.c.chat_id == sandbox_sessions.c.chat_id)
            )
            .where(chats.c.workspace_id == workspace_id, sandbox_sessions.c.expires_at > now)
        )
        result = await self._session.execute(select(active))
        return bool(result.scalar_one())

    async def count_active(self, now: datetime) -> int:
        result = await self._session.execute(
            select(func.count())
            .select_from(sandbox_sessions)
            .where(sandbox_sessions.c.expires_at > now)
        )
        return int(result.scalar_one())

    async def save(self, session: SandboxSession) -> None:
        values = {
            'chat_id': session.chat_id,
            'sandbox_session_id': session.sandbox_session_id,
            'started_at': session.started_at,
            'expires_at': session.expires_at,
        }
        await self._session.execute_write(
            _upsert(self._session.dialect_name, sandbox_sessions, values, 'chat_id')
        )

    async def delete_by_chat_id(self, chat_id: UUID) -> None:
        await self._session.execute_write(
            delete(sandbox_sessions).where(sandbox_sessions.c.chat_id == chat_id)
        )

    async def delete_by_workspace_id(self, workspace_id: UUID) -> None:
        await self._session.execute_write(
            delete(sandbox_sessions).where(
                sandbox_sessions.c.chat_id.in_(_chat_ids_of_workspace(workspace_id))
            )
        )


def _workspace_values(workspace: Workspace) -> dict[str, object]:
    return {
        'workspace_id': workspace.workspace_id,
        'user_id': workspace.user_id,
        'created_at': workspace.created_at,
        'quota_bytes': workspace.quota_bytes,
        'used_bytes': workspace.used_bytes,
    }


def _workspace(row: RowMapping | Mapping[str, Any]) -> Workspace:
    return Workspace(
        workspace_id=row['workspace_id'],
        user_id=row['user_id'],
        created_at=row['created_at'],
        quota_bytes=row['quota_bytes'],
        used_bytes=row['used_bytes'],
    )


def _chat_file_of(
    file_id: UUID,
    chat_id: UUID,
    name: str,
    content_type: str | None,
    size_bytes: int,
    created_at: datetime,
    sha256: str,
) -> ChatFile:
    return ChatFile(
        file_id, chat_id, ChatAttachmentName(name), content_type, size_bytes, created_at, sha256
    )


# a row to its domain object, the columns taken in the fields' order: from a mapping
# (`_chat`, `_chat_file`) or, for list pages, straight from the DB-API row (ADR 019)
_CHAT_SHAPE = RowShape(Chat, tuple(field.name for field in fields(Chat)))
_CHAT_FILE_SHAPE = RowShape(_chat_file_of, tuple(field.name for field in fields(ChatFile)))
_chat = _CHAT_SHAPE.of_mapping
_chat_file = _CHAT_FILE_SHAPE.of_mapping


def _sandbox_session(row: RowMapping) -> SandboxSession:
    return SandboxSession(
        sandbox_session_id=row['sandbox_session_id'],
        chat_id=row['chat_id'],
        started_at=row['started_at'],
        expires_at=row['expires_at'],
    )


class SqlIdempotencyKeyRepository(IdempotencyKeyRepository):
    def __init__(self, session: SqlSession) -> None:
        self._session = session

    async def get(self, user_id: UUID, key: str) -> IdempotencyRecord | None:
        result = await self._session.execute(
            select(idempotency_keys).where(
                idempotency_keys.c.user_id == user_id, idempotency_keys.c.key == key
            )
        )
        row = result.mappings().one_or_none()
        return None if row is None else _idempotency_record(row)

    async def add(self, record: IdempotencyRecord, *, expiry_cutoff: datetime) -> bool:
        await self._session.execute_write(
            delete(idempotency_keys).where(
                idempotency_keys.c.user_id == record.user_id,
                idempotency_keys.c.key == record.key,
                idempotency_keys.c.created_at <= expiry_cutoff,
            )
        )
        response = record.response
        values = {
            'user_id': record.user_id,
            'key': record.key,
            'request_hash': record.request_hash,
            'status_code': response.status_code,
            'response_body': response.body,
            'headers': json.dumps([list(pair) for pair in response.headers]),
            'created_at': record.created_at,
        }
        # a concurrent insert of the same key makes PostgreSQL wait for its transaction:
        # committed, this one inserts nothing; rolled back, this one inserts
        result = await self._session.execute_write(
            _insert_ignoring_conflicts(self._session.dialect_name, idempotency_keys, values)
        )
        return result.rowcount == 1

    async def delete_expired(self, expiry_cutoff: datetime, *, limit: int) -> int:
        batch = (
            select(idempotency_keys.c.user_id, idempotency_keys.c.key)
            .where(idempotency_keys.c.created_at <= expiry_cutoff)
            .order_by(idempotency_keys.c.created_at)
            .limit(limit)
            # concurrent cleaners take disjoint batches instead of waiting or deadlocking
            # (PostgreSQL; SQLite writers are serialised and ignore the clause)
            .with_for_update(skip_locked=True)
        )
        result = await self._session.execute_write(
            delete(idempotency_keys).where(
                tuple_(idempotency_keys.c.user_id, idempotency_keys.c.key).in_(batch)
            )
        )
        return int(result.rowcount)


def _idempotency_record(row: RowMapping) -> IdempotencyRecord:
    headers = json.loads(row['headers']) if row['headers'] else []
    return IdempotencyRecord(
        user_id=row['user_id'],
        key=row['key'],
        request_hash=row['request_hash'],
        response=RecordedResponse(
            status_code=row['status_code'],
            body=row['response_body'] or '',
            headers=tuple((str(name), str(value)) for name, value in headers),
        ),
        created_at=row['created_at'],
    )
