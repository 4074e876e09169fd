"""The attachments' records of the SQL backends."""

from dataclasses import fields
from datetime import datetime
from uuid import UUID

from sqlalchemy import bindparam, delete, select

from domain.chat import ChatAttachmentName, ChatFile
from domain.page import PageKey
from repository.sql.read_plan import RowShape
from repository.sql.session import SqlSession
from repository.sql.statements import PrebuiltPage, chat_ids_of_workspace, keyset_page, upsert
from repository.sql.tables import chat_files, chats, workspaces
from usecase.interface import ChatFileRepository

FILE_PAGE_OF_USER = PrebuiltPage.of(
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
        statement = keyset_page(
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
        return await FILE_PAGE_OF_USER.objects(
            self._session,
            {'b_user_id': user_id, 'b_chat_id': chat_id},
            CHAT_FILE_SHAPE,
            limit=limit,
            after=after,
        )

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
            upsert(self._session.dialect_name, chat_files, values, 'file_id')
        )

    async def delete(self, file_id: UUID) -> None:
        await self._session.execute_write(delete(chat_files).where(chat_files.c.file_id == file_id))

    async def delete_by_chat_id(self, chat_id: UUID) -> None:
        await self._session.execute_write(delete(chat_files).where(chat_files.c.chat_id == chat_id))

    async def delete_by_workspace_id(self, workspace_id: UUID) -> None:
        await self._session.execute_write(
            delete(chat_files).where(chat_files.c.chat_id.in_(chat_ids_of_workspace(workspace_id)))
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


CHAT_FILE_SHAPE = RowShape(_chat_file_of, tuple(field.name for field in fields(ChatFile)))


_chat_file = CHAT_FILE_SHAPE.of_mapping
