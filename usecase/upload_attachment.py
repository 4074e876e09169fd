from dataclasses import dataclass, replace
from typing import overload
from uuid import UUID

from domain.chat import ChatAttachmentName, ChatFile
from domain.content import StagedContent
from domain.error import CommitOutcomeUnknownError
from domain.idempotency import RecordedResponse
from usecase.common import charge_usage, owned_chat, stage_within_limits
from usecase.idempotency import (
    IdempotencyKeyTakenError,
    IdempotencyRequest,
    answer_after_race,
    live_record,
    record_response,
    replay_under_lock,
    replay_unstaged,
)
from usecase.interface import ByteStream, Clock, UnitOfWorkFactory
from usecase.publish import Publisher, after_commit
from usecase.store_ports import BlobStore


@dataclass(frozen=True, slots=True)
class UploadedAttachment:
    chat_file: ChatFile
    replaced: bool


def staged_blob_id(staged: StagedContent) -> UUID:
    """The id of a staged blob (attachments are always staged as blobs)."""
    if staged.blob_id is None:
        raise ValueError('content kept in memory has no blob')
    return staged.blob_id


class UploadAttachment:
    """Store a file in a chat under its name; a file of the same name is replaced.

    The body becomes a new blob (its id is the new `file_id`) before any lock is taken;
    the commit of its row is the upload. The chat directory follows after the commit
    (`Publisher`). A refused or failed upload leaves the rows, the usage and the
    directory as they were.

    With an `IdempotencyRequest` the answer is recorded with the file and the call returns
    it. A retry whose key is already recorded is read through a hash only (nothing is
    staged) and gets the recorded answer when name, content type and bytes are the same.
    """

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        blobs: BlobStore,
        publisher: Publisher,
        clock: Clock,
        max_file_bytes: int,
    ) -> None:
        self._uow = uow
        self._blobs = blobs
        self._publisher = publisher
        self._clock = clock
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
            self._blobs,
            content,
            workspace=workspace,
            max_file_bytes=self._max_file_bytes,
            declared_size=declared_size,
            credit_bytes=old.size_bytes if old else 0,
        )
        try:
            stored, released, answer = await self._store(
                user_id, chat_id, attachment_name, content_type, staged, idempotency
            )
        except IdempotencyKeyTakenError as taken:
            await self._blobs.discard(staged)
            return await answer_after_race(self._uow, taken, user_id=user_id, now=self._clock.now())
        except CommitOutcomeUnknownError:
            raise  # the row may name the blob: garbage collection decides, by the rows
        except BaseException:
            await self._blobs.discard(staged)
            raise
        if stored is None:
            await self._blobs.discard(staged)  # a recorded answer replayed
        else:
            chat_file = stored.chat_file
            await self._publisher.file(workspace.workspace_id, chat_id, chat_file.name)
            await after_commit(self._blobs.release(released), 'release of a replaced file')
        if answer is not None:
            return answer
        assert stored is not None  # noqa: S101 - no answer recorded: the upload committed
        return stored

    async def _store(
        self,
        user_id: UUID,
        chat_id: UUID,
        attachment_name: ChatAttachmentName,
        content_type: str | None,
        staged: StagedContent,
        idempotency: IdempotencyRequest[UploadedAttachment] | None,
    ) -> tuple[UploadedAttachment | None, list[UUID], RecordedResponse | None]:
        """What was stored (None when a recorded answer was replayed), the blob no row
        names any more (a replaced file's), and the recorded answer."""
        # ends with its commit: it may be committed with other writers' (group commit)
        async with self._uow(group=True) as uow:
            workspace, chat = await owned_chat(uow, user_id, chat_id, for_update=True)
            if idempotency is not None:
                fingerprint, recorded = await replay_under_lock(
                    uow, user_id, idempotency, staged.sha256, self._clock.now()
                )
                if recorded is not None:
                    return None, [], recorded
            old = await uow.chat_files.get_by_chat_id_and_name(chat_id, attachment_name)
            freed = old.size_bytes if old else 0
            await charge_usage(uow, workspace, staged.size_bytes - freed)
            now = self._clock.now()
            chat_file = ChatFile(
                file_id=staged_blob_id(staged),
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
                answer = await record_response(
                    uow,
                    user_id=user_id,
                    request=idempotency,
                    fingerprint=fingerprint,
                    result=uploaded,
                    now=now,
                )
            await uow.commit()
        return uploaded, [] if old is None else [old.file_id], answer
