from dataclasses import dataclass, replace
from uuid import UUID

from domain.chat import ChatAttachmentName, ChatFile
from usecase.common import (
    charge_usage,
    commit_with,
    owned_chat,
    stage_within_limits,
)
from usecase.interface import ByteStream, ChatStorage, Clock, IdGenerator, UnitOfWorkFactory


@dataclass(frozen=True, slots=True)
class UploadedAttachment:
    chat_file: ChatFile
    replaced: bool


class UploadAttachment:
    """Store a file in a chat under its name; a file of the same name is replaced.

    The old file stays readable until the new one is committed, and a refused or failed
    upload leaves it, the usage and the directory as they were.
    """

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        storage: ChatStorage,
        clock: Clock,
        ids: IdGenerator,
        max_file_bytes: int,
    ) -> None:
        self._uow = uow
        self._storage = storage
        self._clock = clock
        self._ids = ids
        self._max_file_bytes = max_file_bytes

    async def __call__(
        self,
        user_id: UUID,
        chat_id: UUID,
        name: str,
        content_type: str | None,
        content: ByteStream,
        *,
        declared_size: int | None = None,
    ) -> UploadedAttachment:
        attachment_name = ChatAttachmentName(name)
        async with self._uow(write=False) as uow:
            workspace, _ = await owned_chat(uow, user_id, chat_id)
            old = await uow.chat_files.get_by_chat_id_and_name(chat_id, attachment_name)
        staged = await stage_within_limits(
            self._storage,
            content,
            workspace=workspace,
            max_file_bytes=self._max_file_bytes,
            declared_size=declared_size,
            credit_bytes=old.size_bytes if old else 0,
        )
        try:
            async with self._uow() as uow:
                workspace, chat = await owned_chat(uow, user_id, chat_id, for_update=True)
                old = await uow.chat_files.get_by_chat_id_and_name(chat_id, attachment_name)
                freed = old.size_bytes if old else 0
                await charge_usage(uow, workspace, staged.size_bytes - freed)
                now = self._clock.now()
                chat_file = ChatFile(
                    file_id=self._ids.new(),
                    chat_id=chat_id,
                    name=attachment_name,
                    content_type=content_type,
                    size_bytes=staged.size_bytes,
                    created_at=now,
                    sha256=staged.sha256,
                )
                await uow.chat_files.save(chat_file)
                file_count = chat.file_count if old else chat.file_count + 1
                await uow.chats.save(replace(chat, file_count=file_count, updated_at=now))
                change = await self._storage.put_attachment(chat, attachment_name, staged)
                await commit_with(uow, change)
            await change.commit()
        except BaseException:
            await self._storage.discard(staged)
            raise
        return UploadedAttachment(chat_file=chat_file, replaced=old is not None)
