import logging
from dataclasses import replace
from typing import Final
from uuid import UUID

from domain.chat import Chat, HistorySegment
from domain.content import StagedContent
from domain.error import CommitOutcomeUnknownError
from usecase.common import owned_chat
from usecase.interface import UnitOfWork
from usecase.publish import history_chunks
from usecase.write_history import WriteHistory

logger = logging.getLogger('chat_storage.history')

# every this many revisions, an append folds the base and its segments into a new base
COMPACT_EVERY: Final = 64


class AppendHistory(WriteHistory):
    """Append a block to a chat's history: whole or not at all, never interleaved.

    The block is staged before any lock is taken, as a new segment: in its row when small,
    else as a blob. The commit that adds the segment row is the append; nothing committed
    is ever written again, so a writer that stalls past its lock can leave only garbage.
    Every `COMPACT_EVERY` revisions the history is folded into a new base blob.
    """

    # most appends are a message or two: read whole (in memory) before any lookup
    _read_first_bytes = 16 * 1024
    _inline_bytes = 64 * 1024

    def _freed_bytes(self, chat: Chat) -> int:  # noqa: ARG002
        return 0

    def _new_size(self, chat: Chat, staged: StagedContent) -> int:
        return chat.history_bytes + staged.size_bytes

    async def _record(
        self, uow: UnitOfWork, updated: Chat, staged: StagedContent
    ) -> tuple[Chat, list[UUID]]:
        segment = HistorySegment(
            chat_id=updated.chat_id,
            revision=updated.history_revision,
            size_bytes=staged.size_bytes,
            blob_id=staged.blob_id,
            content=staged.inline,
        )
        await uow.history_segments.add(segment)
        await uow.chats.save(updated)
        return updated, []

    async def _after_commit(self, user_id: UUID, chat: Chat, staged: StagedContent) -> None:
        # a small append is in memory: a history.md that shows what came before it is
        # extended with it, with no read of the segments
        await self._publisher.history(chat.workspace_id, chat, staged.inline)
        if chat.history_revision % COMPACT_EVERY == 0:
            try:
                await self._compact(user_id, chat.chat_id)
            except Exception:
                logger.warning(
                    'compaction of a history failed; a later append retries it', exc_info=True
                )

    async def _compact(self, user_id: UUID, chat_id: UUID) -> None:
        """Fold the base and the segments into a new base blob; the bytes stay the same."""
        async with self._uow(write=False, one_statement=True) as uow:
            _, chat, segments = await uow.history_segments.history_of_user(user_id, chat_id)
        if chat is None or not segments:
            return
        folded = [s.revision for s in segments]
        staged = await self._blobs.stage(
            history_chunks(self._blobs, chat, segments), limit_bytes=chat.history_bytes
        )
        try:
            async with self._uow() as uow:
                _, current = await owned_chat(uow, user_id, chat_id, for_update=True)
                now = await uow.history_segments.list_by_chat_id(chat_id)
                if (
                    current.history_blob_id != chat.history_blob_id
                    or [s.revision for s in now[: len(folded)]] != folded
                ):
                    await self._blobs.discard(staged)  # a put replaced the history meanwhile
                    return
                await uow.chats.save(replace(current, history_blob_id=staged.blob_id))
                await uow.history_segments.delete_up_to(chat_id, folded[-1])
                await uow.commit()
        except CommitOutcomeUnknownError:
            raise
        except BaseException:
            await self._blobs.discard(staged)
            raise
        released = [s.blob_id for s in segments if s.blob_id is not None]
        if chat.history_blob_id is not None:
            released.append(chat.history_blob_id)
        await self._blobs.release(released)
