import codecs
from collections.abc import AsyncIterator, Collection
from dataclasses import replace
from typing import overload
from uuid import UUID

from domain.chat import Chat
from domain.content import StagedContent
from domain.error import (
    CommitOutcomeUnknownError,
    HistoryPreconditionFailedError,
    InvalidHistoryEncodingError,
)
from domain.idempotency import RecordedResponse
from domain.workspace import Workspace
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
from usecase.interface import ByteStream, Clock, UnitOfWork, UnitOfWorkFactory
from usecase.publish import Publisher, after_commit
from usecase.store_ports import BlobStore


async def utf8_checked(content: ByteStream, chat_id: UUID) -> AsyncIterator[bytes]:
    """Pass the chunks through, failing as soon as they stop being valid UTF-8."""
    decoder = codecs.getincrementaldecoder('utf-8')()
    try:
        async for chunk in content:
            decoder.decode(chunk)
            yield chunk
        decoder.decode(b'', final=True)
    except UnicodeDecodeError:
        raise InvalidHistoryEncodingError(chat_id) from None


def check_version(chat: Chat, if_match: Collection[str] | None) -> None:
    """`If-Match`: the write applies only to one of the named versions of the history."""
    if if_match is not None and chat.history_version not in if_match:
        raise HistoryPreconditionFailedError(chat.chat_id)


class WriteHistory:
    """Replace a chat's whole history, optionally only at a known version.

    The body becomes a new blob before any lock is taken; the commit of the chat row,
    which names it as the history's base, is the write. The chat directory's `history.md`
    follows after the commit (`Publisher`).

    With an `IdempotencyRequest` the answer is recorded with the write and the call
    returns it. A retry whose key is already recorded is read through a hash only (nothing
    is staged, no version is checked: the first write changed it) and gets the recorded
    answer when its bytes are the same.
    """

    # a body declared at most this long is read before the chat is looked up, and
    # checked (chat, `If-Match`, quota) under the lock only: refusing it before reading
    # it would save less than the lookup costs (ADR 019)
    _read_first_bytes = 0
    # content of at most this many bytes is held by its row instead of a blob
    _inline_bytes = 0

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
        content: ByteStream,
        *,
        declared_size: int | None = None,
        if_match: Collection[str] | None = None,
        idempotency: None = None,
    ) -> Chat: ...

    @overload
    async def __call__(
        self,
        user_id: UUID,
        chat_id: UUID,
        content: ByteStream,
        *,
        declared_size: int | None = None,
        if_match: Collection[str] | None = None,
        idempotency: IdempotencyRequest[Chat],
    ) -> RecordedResponse: ...

    async def __call__(
        self,
        user_id: UUID,
        chat_id: UUID,
        content: ByteStream,
        *,
        declared_size: int | None = None,
        if_match: Collection[str] | None = None,
        idempotency: IdempotencyRequest[Chat] | None = None,
    ) -> Chat | RecordedResponse:
        if idempotency is not None:
            # before any check: a retry gets the first answer although the history changed
            async with self._uow(write=False, one_statement=True) as uow:
                earlier = await live_record(uow, user_id, idempotency.key, self._clock.now())
            if earlier is not None:
                return await replay_unstaged(
                    earlier, idempotency, content, declared_size, self._max_file_bytes
                )
        workspace: Workspace | None = None
        credit_bytes = 0
        if declared_size is None or declared_size > self._read_first_bytes:
            async with self._uow(write=False, one_statement=True) as uow:
                workspace, chat = await owned_chat(uow, user_id, chat_id)
            check_version(chat, if_match)  # early, before any byte is read
            credit_bytes = self._freed_bytes(chat)
        staged = await stage_within_limits(
            self._blobs,
            utf8_checked(content, chat_id),
            workspace=workspace,
            max_file_bytes=self._max_file_bytes,
            declared_size=declared_size,
            credit_bytes=credit_bytes,
            inline_bytes=self._inline_bytes,
        )
        try:
            written, released, answer = await self._write(
                user_id, chat_id, staged, if_match, idempotency
            )
        except IdempotencyKeyTakenError as taken:
            await self._blobs.discard(staged)
            return await answer_after_race(self._uow, taken, user_id=user_id, now=self._clock.now())
        except CommitOutcomeUnknownError:
            raise  # the row may name the blob: garbage collection decides, by the rows
        except BaseException:
            await self._blobs.discard(staged)
            raise
        if written is None:
            await self._blobs.discard(staged)  # a recorded answer replayed
        else:
            await after_commit(self._blobs.release(released), 'release of a replaced history')
            await self._after_commit(user_id, written, staged)
        if answer is not None:
            return answer
        assert written is not None  # noqa: S101 - no answer recorded: the write committed
        return written

    async def _write(
        self,
        user_id: UUID,
        chat_id: UUID,
        staged: StagedContent,
        if_match: Collection[str] | None,
        idempotency: IdempotencyRequest[Chat] | None,
    ) -> tuple[Chat | None, list[UUID], RecordedResponse | None]:
        """The chat as committed (None when a recorded answer was replayed instead), the
        blobs no row names any more, and the recorded answer."""
        # ends with its commit: it may be committed with other writers' (group commit)
        async with self._uow(group=True) as uow:
            workspace, chat = await owned_chat(uow, user_id, chat_id, for_update=True)
            if idempotency is not None:
                fingerprint, recorded = await replay_under_lock(
                    uow, user_id, idempotency, staged.sha256, self._clock.now()
                )
                if recorded is not None:
                    return None, [], recorded
            check_version(chat, if_match)  # authoritative, under the lock
            new_size = self._new_size(chat, staged)
            await charge_usage(uow, workspace, new_size - chat.history_bytes)
            now = self._clock.now()
            updated = replace(
                chat,
                history_bytes=new_size,
                history_revision=chat.history_revision + 1,
                updated_at=now,
            )
            updated, released = await self._record(uow, updated, staged)
            answer = None
            if idempotency is not None:
                answer = await record_response(
                    uow,
                    user_id=user_id,
                    request=idempotency,
                    fingerprint=fingerprint,
                    result=updated,
                    now=now,
                )
            await uow.commit()
        return updated, released, answer

    def _freed_bytes(self, chat: Chat) -> int:
        return chat.history_bytes

    def _new_size(self, chat: Chat, staged: StagedContent) -> int:  # noqa: ARG002
        return staged.size_bytes

    async def _record(
        self, uow: UnitOfWork, updated: Chat, staged: StagedContent
    ) -> tuple[Chat, list[UUID]]:
        """Write the rows of the new history: the chat as saved, and the blobs no row
        names any more. The staged blob becomes the base; the old base and segments go."""
        segments = await uow.history_segments.list_by_chat_id(updated.chat_id)
        await uow.history_segments.delete_by_chat_id(updated.chat_id)
        saved = replace(updated, history_blob_id=staged.blob_id)
        await uow.chats.save(saved)
        released = [s.blob_id for s in segments if s.blob_id is not None]
        if updated.history_blob_id is not None:
            released.append(updated.history_blob_id)
        return saved, released

    async def _after_commit(
        self,
        user_id: UUID,  # noqa: ARG002 - an append's compaction needs it
        chat: Chat,
        staged: StagedContent,  # noqa: ARG002 - an append's publication needs it
    ) -> None:
        await self._publisher.history(chat.workspace_id, chat)
