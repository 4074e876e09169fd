"""The dictionaries behind the in-memory repositories."""

from dataclasses import dataclass, field
from uuid import UUID

from domain.chat import Chat, ChatFile, HistorySegment
from domain.idempotency import IdempotencyRecord
from domain.sandbox import SandboxSession
from domain.workspace import Workspace
from repository.common import ReadOnlyUnitOfWorkError


@dataclass(slots=True)
class MemoryStore:
    """All metadata of one in-memory store; values are frozen, so shallow copies suffice."""

    workspaces: dict[UUID, Workspace] = field(default_factory=dict)
    workspace_id_by_user_id: dict[UUID, UUID] = field(default_factory=dict)
    chats: dict[UUID, Chat] = field(default_factory=dict)
    chat_files: dict[UUID, ChatFile] = field(default_factory=dict)
    file_id_by_chat_and_name: dict[tuple[UUID, str], UUID] = field(default_factory=dict)
    sandbox_sessions: dict[UUID, SandboxSession] = field(default_factory=dict)
    idempotency_keys: dict[tuple[UUID, str], IdempotencyRecord] = field(default_factory=dict)
    # each chat's segments by revision, as a tuple: a copy of the dict shares no list
    history_segments: dict[UUID, tuple[HistorySegment, ...]] = field(default_factory=dict)

    def copy(self) -> 'MemoryStore':
        return MemoryStore(
            workspaces=dict(self.workspaces),
            workspace_id_by_user_id=dict(self.workspace_id_by_user_id),
            chats=dict(self.chats),
            chat_files=dict(self.chat_files),
            file_id_by_chat_and_name=dict(self.file_id_by_chat_and_name),
            sandbox_sessions=dict(self.sandbox_sessions),
            idempotency_keys=dict(self.idempotency_keys),
            history_segments=dict(self.history_segments),
        )

    def load(self, other: 'MemoryStore') -> None:
        """Replace this store's content with a copy of `other`'s."""
        copied = other.copy()
        self.workspaces = copied.workspaces
        self.workspace_id_by_user_id = copied.workspace_id_by_user_id
        self.chats = copied.chats
        self.chat_files = copied.chat_files
        self.file_id_by_chat_and_name = copied.file_id_by_chat_and_name
        self.sandbox_sessions = copied.sandbox_sessions
        self.idempotency_keys = copied.idempotency_keys
        self.history_segments = copied.history_segments


class MemoryRepository:
    """Base of the in-memory repositories.

    Constructed without arguments a repository owns a private store (unit tests); the
    in-memory backend hands the repositories of one unit of work a shared store.
    """

    def __init__(self, store: MemoryStore | None = None, *, writable: bool = True) -> None:
        self._store = store if store is not None else MemoryStore()
        self._writable = writable

    def _for_write(self) -> MemoryStore:
        if not self._writable:
            raise ReadOnlyUnitOfWorkError
        return self._store
