from dataclasses import dataclass, replace
from datetime import timedelta
from uuid import UUID

from domain.error import SandboxAlreadyActiveError, SandboxSessionNotFoundError
from domain.sandbox import SandboxSession
from usecase.common import owned_chat
from usecase.interface import Clock, IdGenerator, UnitOfWorkFactory


@dataclass(frozen=True, slots=True)
class StartedSandboxSession:
    session: SandboxSession
    started: bool


class StartSandboxSession:
    """Start a chat's sandbox session, or renew the active one when its id is given."""

    def __init__(self, uow: UnitOfWorkFactory, clock: Clock, ids: IdGenerator) -> None:
        self._uow = uow
        self._clock = clock
        self._ids = ids

    async def __call__(
        self,
        user_id: UUID,
        chat_id: UUID,
        ttl_seconds: int,
        renew_session_id: UUID | None = None,
    ) -> StartedSandboxSession:
        async with self._uow() as uow:
            await owned_chat(uow, user_id, chat_id, for_update=True)
            now = self._clock.now()
            expires_at = now + timedelta(seconds=ttl_seconds)
            active = await uow.sandbox_sessions.get_active_by_chat_id(chat_id, now)
            if active is not None:
                if active.sandbox_session_id != renew_session_id:
                    raise SandboxAlreadyActiveError(chat_id)
                renewed = replace(active, expires_at=expires_at)
                await uow.sandbox_sessions.save(renewed)
                await uow.commit()
                return StartedSandboxSession(renewed, started=False)
            session = SandboxSession(
                sandbox_session_id=self._ids.new(),
                chat_id=chat_id,
                started_at=now,
                expires_at=expires_at,
            )
            await uow.sandbox_sessions.save(session)
            await uow.commit()
        return StartedSandboxSession(session, started=True)


class GetSandboxSession:
    """A chat's active sandbox session, or `SandboxSessionNotFoundError`."""

    def __init__(self, uow: UnitOfWorkFactory, clock: Clock) -> None:
        self._uow = uow
        self._clock = clock

    async def __call__(self, user_id: UUID, chat_id: UUID) -> SandboxSession:
        async with self._uow(write=False) as uow:
            await owned_chat(uow, user_id, chat_id)
            active = await uow.sandbox_sessions.get_active_by_chat_id(chat_id, self._clock.now())
        if active is None:
            raise SandboxSessionNotFoundError(chat_id)
        return active


class EndSandboxSession:
    """End a chat's sandbox session; ending none is no error."""

    def __init__(self, uow: UnitOfWorkFactory) -> None:
        self._uow = uow

    async def __call__(self, user_id: UUID, chat_id: UUID) -> None:
        async with self._uow() as uow:
            await owned_chat(uow, user_id, chat_id, for_update=True)
            await uow.sandbox_sessions.delete_by_chat_id(chat_id)
            await uow.commit()


class CountActiveSandboxSessions:
    """How many sandbox sessions of all workspaces are active now (a metric, not per user)."""

    def __init__(self, uow: UnitOfWorkFactory, clock: Clock) -> None:
        self._uow = uow
        self._clock = clock

    async def __call__(self) -> int:
        async with self._uow(write=False) as uow:
            return await uow.sandbox_sessions.count_active(self._clock.now())
