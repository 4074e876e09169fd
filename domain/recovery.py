"""What start-up recovery and the offline check see of the data directory (ADR 016)."""

from dataclasses import dataclass
from enum import Enum
from uuid import UUID


class PendingOperation(Enum):
    """The kind of file system change a sidecar in the trash describes."""

    PUT_ATTACHMENT = 'put_attachment'
    PUT_HISTORY = 'put_history'
    DELETE_ATTACHMENT = 'delete_attachment'
    DELETE_CHAT = 'delete_chat'
    DELETE_WORKSPACE = 'delete_workspace'


@dataclass(frozen=True, slots=True)
class PendingChange:
    """A change applied on disk whose settling (commit or rollback) never happened."""

    token: str
    operation: PendingOperation
    workspace_id: UUID
    chat_id: UUID | None
    created_ns: int
    name: str | None = None
    sha256: str | None = None
    history_revision: int | None = None
    # a put: whether a file was in place before (then the backup holds it)
    replaced: bool = False


@dataclass(frozen=True, slots=True)
class ChatDirectory:
    """A directory `workspaces/<workspace_id>/chats/<chat_id>/` on disk."""

    workspace_id: UUID
    chat_id: UUID


@dataclass(frozen=True, slots=True)
class StoredEntry:
    """One entry of a chat directory, as `lstat` sees it."""

    name: str
    is_regular_file: bool
    size_bytes: int


@dataclass(frozen=True, slots=True)
class Leftover:
    """An entry of `.staging` or `.trash`; `in_use` when a live process may still own it."""

    area: str
    name: str
    in_use: bool
