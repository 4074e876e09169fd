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
from usecase.interface import Clock, IdGenerator, UnitOfWorkFactory
from usecase.store_ports import ChatViews


class CreateChat:
    """Create a chat in the caller's workspace with its directory and an empty history.

    The directory is made before the row commits, so that a chat is never listed without
    it; a directory whose row never committed is taken away again (or by the sweep).

    With an `IdempotencyRequest` the answer is recorded with the chat and the call returns
    it; a retry of the same request returns the recorded answer and creates nothing.
    """

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        views: ChatViews,
        clock: Clock,
        ids: IdGenerator,
    ) -> None:
        self._uow = uow
        self._views = views
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
        chat_id = self._ids.new()
        async with self._uow(write=False, one_statement=True) as uow:
            found = await uow.workspaces.get_by_user_id(user_id)
        if found is not None:
            # before the transaction, which never waits on the disk
            await self._views.ensure_chat(found.workspace_id, chat_id)
        try:
            # ends with its commit: it may be committed with other writers' (group commit)
            async with self._uow(group=True) as uow:
                # the lock first: a concurrent request with the same key then finds its record
                workspace = await uow.workspaces.get_by_user_id(user_id, for_update=True)
                now = self._clock.now()
                if idempotency is not None:
                    earlier = await live_record(uow, user_id, idempotency.key, now)
                    if earlier is not None:
                        if found is not None:
                            await self._views.remove_chat(found.workspace_id, chat_id)
                        return replay(earlier, idempotency.fingerprint)
                if workspace is None or found is None:
                    raise WorkspaceNotFoundError(user_id)
                chat = Chat(
                    chat_id=chat_id,
                    workspace_id=workspace.workspace_id,
                    created_at=now,
                    updated_at=now,
                    title=title,
                )
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
                    await uow.commit()
                except CommitOutcomeUnknownError:
                    raise  # the row may have committed: the sweep decides, by the rows
                except BaseException:
                    # no row will ever name the new directory: take it away again
                    with contextlib.suppress(DomainError):
                        await self._views.remove_chat(found.workspace_id, chat_id)
                    raise
        except IdempotencyKeyTakenError as taken:
            return await answer_after_race(self._uow, taken, user_id=user_id, now=now)
        return chat if answer is None else answer
