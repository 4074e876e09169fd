from dataclasses import replace
from uuid import UUID

from usecase.common import owned_chat
from usecase.get_attachment import owned_file
from usecase.interface import Clock, UnitOfWorkFactory
from usecase.publish import Publisher, after_commit
from usecase.store_ports import BlobStore


class DeleteAttachment:
    """Delete one file of a chat and give its bytes back to the workspace."""

    def __init__(
        self, uow: UnitOfWorkFactory, blobs: BlobStore, publisher: Publisher, clock: Clock
    ) -> None:
        self._uow = uow
        self._blobs = blobs
        self._publisher = publisher
        self._clock = clock

    async def __call__(self, user_id: UUID, chat_id: UUID, file_id: UUID) -> None:
        async with self._uow() as uow:
            chat, chat_file = await owned_file(uow, user_id, chat_id, file_id, for_update=True)
            await uow.chat_files.delete(file_id)
            await uow.workspaces.add_used_bytes(chat.workspace_id, -chat_file.size_bytes)
            updated = replace(chat, file_count=chat.file_count - 1, updated_at=self._clock.now())
            await uow.chats.save(updated)
            await uow.commit()
        await self._publisher.file(chat.workspace_id, chat_id, chat_file.name)
        await after_commit(self._blobs.release([file_id]), 'release of a deleted file')


class ClearAttachments:
    """Delete every file of a chat; `history.md` stays."""

    def __init__(
        self, uow: UnitOfWorkFactory, blobs: BlobStore, publisher: Publisher, clock: Clock
    ) -> None:
        self._uow = uow
        self._blobs = blobs
        self._publisher = publisher
        self._clock = clock

    async def __call__(self, user_id: UUID, chat_id: UUID) -> None:
        async with self._uow() as uow:
            workspace, chat = await owned_chat(uow, user_id, chat_id, for_update=True)
            files = await uow.chat_files.list_by_chat_id(chat_id)
            await uow.chat_files.delete_by_chat_id(chat_id)
            freed = sum(f.size_bytes for f in files)
            await uow.workspaces.add_used_bytes(workspace.workspace_id, -freed)
            await uow.chats.save(replace(chat, file_count=0, updated_at=self._clock.now()))
            await uow.commit()
        await self._publisher.chat_quietly(workspace.workspace_id, chat_id)
        released = [f.file_id for f in files]
        await after_commit(self._blobs.release(released), 'release of deleted files')
