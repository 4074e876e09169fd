import contextlib
from typing import overload
from uuid import UUID

from domain.chat import Chat
from domain.error import CommitOutcomeUnknownError, DomainError, WorkspaceNotFoundError
from domain.idempotency import RecordedResponse
from usecase.idempotency import (
    IdempotencyKeyTakenError,
    IdempotencyRequest,
    answer_after_race,
    live_record,
    record_response,
    replay,
)
from usecase.interface import ChatStorage, Clock, IdGenerator, UnitOfWorkFactory


async def remove_new_chat_directory(storage: ChatStorage, chat: Chat) -> None:
    """Take away the directory of a chat whose row never committed.

    Best effort: should this fail too, start-up recovery removes the empty directory.
    """
    with contextlib.suppress(DomainError):
        change = await storage.delete_chat(chat)
        await change.commit()


class CreateChat:
    """Create a chat in the caller's workspace with its directory and an empty history.

    With an `IdempotencyRequest` the answer is recorded with the chat and the call returns
    it; a retry of the same request returns the recorded answer and creates nothing.
    """

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        storage: ChatStorage,
        clock: Clock,
        ids: IdGenerator,
    ) -> None:
        self._uow = uow
        self._storage = storage
        self._clock = clock
        self._ids = ids

    @overload
    async def __call__(
        self, user_id: UUID, title: str | None, *, idempotency: None = None
    ) -> Chat: ...

    @overload
    async def __call__(
        self, user_id: UUID, title: str | None, *, idempotency: IdempotencyRequest[Chat]
    ) -> RecordedResponse: ...

    async def __call__(
        self,
        user_id: UUID,
        title: str | None,
        *,
        idempotency: IdempotencyRequest[Chat] | None = None,
    ) -> Chat | RecordedResponse:
        answer: RecordedResponse | None = None
        try:
            # ends with its commit: it may be committed with other writers' (group commit)
            async with self._uow(group=True) as uow:
                # the lock first: a concurrent request with the same key then finds its record
                workspace = await uow.workspaces.get_by_user_id(user_id, for_update=True)
                now = self._clock.now()
                if idempotency is not None:
                    earlier = await live_record(uow, user_id, idempotency.key, now)
                    if earlier is not None:
                        return replay(earlier, idempotency.fingerprint)
                if workspace is None:
                    raise WorkspaceNotFoundError(user_id)
                chat = Chat(
                    chat_id=self._ids.new(),
                    workspace_id=workspace.workspace_id,
                    created_at=now,
                    updated_at=now,
                    title=title,
                )
                # the directory first: a chat row never exists without its directory
                directory = await self._storage.ensure_chat(chat)
                try:
                    await uow.chats.save(chat)
                    if idempotency is not None:
                        answer = await record_response(
                            uow,
                            user_id=user_id,
                            request=idempotency,
                            fingerprint=idempotency.fingerprint,
                            result=chat,
                            now=now,
                        )
                    await uow.commit(directory)
                except CommitOutcomeUnknownError:
                    # the row may have committed: the directory stays (ADR 016 removes
                    # an empty one that no row names)
                    raise
                except BaseException:
                    # no row will ever point at the new directory: take it away again
                    await remove_new_chat_directory(self._storage, chat)
                    raise
        except IdempotencyKeyTakenError as taken:
            return await answer_after_race(self._uow, taken, user_id=user_id, now=now)
        return chat if answer is None else answer
