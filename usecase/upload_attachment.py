from dataclasses import dataclass, replace
from typing import overload
from uuid import UUID

from domain.chat import ChatAttachmentName, ChatFile
from domain.content import StagedContent
from domain.idempotency import RecordedResponse
from usecase.common import (
    charge_usage,
    commit_with,
    owned_chat,
    stage_within_limits,
)
from usecase.idempotency import (
    IdempotencyKeyTakenError,
    IdempotencyRequest,
    answer_after_race,
    live_record,
    record_response,
    replay_under_lock,
    replay_unstaged,
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

    With an `IdempotencyRequest` the answer is recorded with the file and the call returns
    it. A retry whose key is already recorded is read through a hash only (nothing is
    staged) and gets the recorded answer when name, content type and bytes are the same.
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

    @overload
    async def __call__(
        self,
        user_id: UUID,
        chat_id: UUID,
        name: str,
        content_type: str | None,
        content: ByteStream,
        *,
        declared_size: int | None = None,
        idempotency: None = None,
    ) -> UploadedAttachment: ...

    @overload
    async def __call__(
        self,
        user_id: UUID,
        chat_id: UUID,
        name: str,
        content_type: str | None,
        content: ByteStream,
        *,
        declared_size: int | None = None,
        idempotency: IdempotencyRequest[UploadedAttachment],
    ) -> RecordedResponse: ...

    async def __call__(
        self,
        user_id: UUID,
        chat_id: UUID,
        name: str,
        content_type: str | None,
        content: ByteStream,
        *,
        declared_size: int | None = None,
        idempotency: IdempotencyRequest[UploadedAttachment] | None = None,
    ) -> UploadedAttachment | RecordedResponse:
        attachment_name = ChatAttachmentName(name)
        if idempotency is not None:
            # before any check: a retry gets the first answer even if the chat changed since
            async with self._uow(write=False) as uow:
                earlier = await live_record(uow, user_id, idempotency.key, self._clock.now())
            if earlier is not None:
                return await replay_unstaged(
                    earlier, idempotency, content, declared_size, self._max_file_bytes
                )
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
            return await self._store(
                user_id, chat_id, attachment_name, content_type, staged, idempotency
            )
        except IdempotencyKeyTakenError as taken:
            await self._storage.discard(staged)
            return await answer_after_race(self._uow, taken, user_id=user_id, now=self._clock.now())
        except BaseException:
            await self._storage.discard(staged)
            raise

    async def _store(
        self,
        user_id: UUID,
        chat_id: UUID,
        attachment_name: ChatAttachmentName,
        content_type: str | None,
        staged: StagedContent,
        idempotency: IdempotencyRequest[UploadedAttachment] | None,
    ) -> UploadedAttachment | RecordedResponse:
        # ends with its commit: it may be committed with other writers' (group commit)
        async with self._uow(group=True) as uow:
            workspace, chat = await owned_chat(uow, user_id, chat_id, for_update=True)
            if idempotency is not None:
                fingerprint, recorded = await replay_under_lock(
                    uow, user_id, idempotency, staged.sha256, self._clock.now()
                )
                if recorded is not None:
                    await self._storage.discard(staged)
                    return recorded
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
            uploaded = UploadedAttachment(chat_file=chat_file, replaced=old is not None)
            answer = None
            if idempotency is not None:
                # before the disk changes: a lost race then has nothing to undo but staging
                answer = await record_response(
                    uow,
                    user_id=user_id,
                    request=idempotency,
                    fingerprint=fingerprint,
                    result=uploaded,
                    now=now,
                )
            change = await self._storage.put_attachment(chat, attachment_name, staged)
            await commit_with(uow, change)
        await change.commit()
        return uploaded if answer is None else answer
