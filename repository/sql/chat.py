"""The chats of the SQL backends."""

from collections.abc import Collection
from dataclasses import fields
from uuid import UUID

from sqlalchemy import and_, bindparam, delete, select

from domain.chat import Chat
from domain.page import PageKey
from domain.workspace import Workspace
from repository.sql.read_plan import RowShape
from repository.sql.session import SqlSession
from repository.sql.statements import IDS_PER_READ, PrebuiltPage, keyset_page, prebuilt_upsert
from repository.sql.tables import chats, workspaces
from repository.sql.workspace import workspace_of
from usecase.interface import ChatRepository

CHAT_UPSERT = prebuilt_upsert(chats, 'chat_id')


# a list request's page in one statement (ADR 019): the workspace is the user's, the chat
# only one of that workspace (else the subquery is NULL and the page empty); an empty page
# leaves the use case to tell the end of the list from a missing workspace or chat
CHAT_PAGE_OF_USER = PrebuiltPage.of(
    select(chats).where(
        chats.c.workspace_id
        == select(workspaces.c.workspace_id)
        .where(workspaces.c.user_id == bindparam('b_user_id'))
        .scalar_subquery()
    ),
    chats.c.created_at,
    chats.c.chat_id,
)


CHAT_BY_ID = select(chats).where(chats.c.chat_id == bindparam('chat_id'))
# the workspace of a user and one of its chats in one statement (the chat's columns are
# NULL when it is missing or in another workspace)
CHAT_WITH_WORKSPACE = (
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
# the chat's columns in CHAT_WITH_WORKSPACE: each column's name and its label there
_CHAT_LABELS = tuple((column.name, f'chat_{column.name}') for column in chats.c)


class SqlChatRepository(ChatRepository):
    def __init__(self, session: SqlSession) -> None:
        self._session = session

    async def get(self, chat_id: UUID) -> Chat | None:
        rows = await self._session.rows(CHAT_BY_ID, {'chat_id': chat_id})
        return _chat(rows[0]) if rows else None

    async def get_many(self, chat_ids: Collection[UUID]) -> list[Chat]:
        found: list[Chat] = []
        ids = list(set(chat_ids))
        for start in range(0, len(ids), IDS_PER_READ):
            result = await self._session.execute(
                select(chats).where(chats.c.chat_id.in_(ids[start : start + IDS_PER_READ]))
            )
            found.extend(_chat(row) for row in result.mappings())
        return found

    async def get_with_workspace(
        self, user_id: UUID, chat_id: UUID
    ) -> tuple[Workspace | None, Chat | None]:
        rows = await self._session.rows(
            CHAT_WITH_WORKSPACE, {'user_id': user_id, 'chat_id': chat_id}
        )
        if not rows:
            return None, None
        [row] = rows
        workspace = workspace_of(row)
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
        statement = keyset_page(
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
        return await CHAT_PAGE_OF_USER.objects(
            self._session, {'b_user_id': user_id}, CHAT_SHAPE, limit=limit, after=after
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
            'history_blob_id': chat.history_blob_id,
        }
        await self._session.execute_prebuilt_write(
            CHAT_UPSERT[self._session.dialect_name],
            {f'b_{name}': value for name, value in values.items()},
        )

    async def delete(self, chat_id: UUID) -> None:
        await self._session.execute_write(delete(chats).where(chats.c.chat_id == chat_id))

    async def delete_by_workspace_id(self, workspace_id: UUID) -> None:
        await self._session.execute_write(delete(chats).where(chats.c.workspace_id == workspace_id))


# a row to its domain object, the columns taken in the fields' order: from a mapping
# (`_chat`, `_chat_file`) or, for list pages, straight from the DB-API row (ADR 019)
CHAT_SHAPE = RowShape(Chat, tuple(field.name for field in fields(Chat)))


_chat = CHAT_SHAPE.of_mapping
