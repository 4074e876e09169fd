"""The store inventory of the SQL backends: which blobs the rows name, how many bytes they
account for, which chats changed."""

from collections.abc import Collection
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import BigInteger, ColumnElement, CompoundSelect, Select, cast, func, select, union

from domain.chat import Chat
from repository.common import check_limit
from repository.sql.chat import CHAT_SHAPE
from repository.sql.session import SqlSession
from repository.sql.statements import IDS_PER_READ
from repository.sql.tables import chat_files, chats, history_segments, workspaces
from usecase.interface import StoreInventory


def _names(
    files: ColumnElement[bool], bases: ColumnElement[bool], segments: ColumnElement[bool]
) -> CompoundSelect[UUID]:
    """The distinct blob ids of the attachments, history bases and segments matching each
    condition (the joins to `chats` let a condition name the chat's columns)."""
    return union(
        select(chat_files.c.file_id.label('blob_id'))
        .select_from(chat_files.join(chats, chats.c.chat_id == chat_files.c.chat_id))
        .where(files),
        select(chats.c.history_blob_id).where(chats.c.history_blob_id.is_not(None), bases),
        select(history_segments.c.blob_id)
        .select_from(history_segments.join(chats, chats.c.chat_id == history_segments.c.chat_id))
        .where(history_segments.c.blob_id.is_not(None), segments),
    )


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


class SqlStoreInventory(StoreInventory):
    def __init__(self, session: SqlSession) -> None:
        self._session = session

    async def named(self, blob_ids: Collection[UUID]) -> set[UUID]:
        found: set[UUID] = set()
        ids = list(set(blob_ids))
        for start in range(0, len(ids), IDS_PER_READ):
            batch = ids[start : start + IDS_PER_READ]
            result = await self._session.execute(
                union(
                    select(chat_files.c.file_id.label('blob_id')).where(
                        chat_files.c.file_id.in_(batch)
                    ),
                    select(chats.c.history_blob_id).where(chats.c.history_blob_id.in_(batch)),
                    select(history_segments.c.blob_id).where(history_segments.c.blob_id.in_(batch)),
                )
            )
            found.update(result.scalars())
        return found

    async def of_chat(self, chat_id: UUID) -> list[UUID]:
        return await self._ids(_names(*[chats.c.chat_id == chat_id] * 3))

    async def of_workspace(self, workspace_id: UUID) -> list[UUID]:
        return await self._ids(_names(*[chats.c.workspace_id == workspace_id] * 3))

    async def chats_changed_since(
        self, since: datetime, *, after: UUID | None, limit: int
    ) -> list[Chat]:
        check_limit(limit)
        statement = select(chats).where(chats.c.updated_at >= since)
        if after is not None:
            statement = statement.where(chats.c.chat_id > after)
        result = await self._session.execute(statement.order_by(chats.c.chat_id).limit(limit))
        return [CHAT_SHAPE.of_mapping(row) for row in result.mappings()]

    async def chat_file_bytes(self, chat_id: UUID) -> int:
        # SUM(bigint) is numeric on PostgreSQL; cast back so the driver returns an int
        total: ColumnElement[int] = cast(
            func.coalesce(func.sum(chat_files.c.size_bytes), 0), BigInteger
        )
        result = await self._session.execute(select(total).where(chat_files.c.chat_id == chat_id))
        return int(result.scalar_one())

    async def workspace_stored_bytes(self, workspace_id: UUID) -> int:
        statement = _stored_by_workspace(chats.c.workspace_id == workspace_id).where(
            workspaces.c.workspace_id == workspace_id
        )
        result = await self._session.execute(statement)
        row = result.mappings().one_or_none()
        return 0 if row is None else int(row['stored'])

    async def _ids(self, statement: CompoundSelect[UUID]) -> list[UUID]:
        result = await self._session.execute(statement)
        return list(result.scalars())
