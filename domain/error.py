"""The `DomainError` tree.

Every error carries a stable, machine-readable code as its message and the ids it is
about; none of them knows HTTP. The web layer maps classes to problem responses.
"""

from uuid import UUID


class DomainError(Exception):
    code: str = 'domain_error'
    is_retryable: bool = False

    def __init__(self, code: str | None = None) -> None:
        super().__init__(code or self.code)
        if code is not None:
            self.code = code


class WorkspaceError(DomainError):
    pass


class WorkspaceNotFoundError(WorkspaceError):
    code = 'workspace_not_found'

    def __init__(self, user_id: UUID) -> None:
        super().__init__()
        self.user_id = user_id


class WorkspaceQuotaExceededError(WorkspaceError):
    code = 'workspace_quota_exceeded'

    def __init__(self, workspace_id: UUID, quota_bytes: int) -> None:
        super().__init__()
        self.workspace_id = workspace_id
        self.quota_bytes = quota_bytes


class ChatError(DomainError):
    pass


class ChatNotFoundError(ChatError):
    code = 'chat_not_found'

    def __init__(self, chat_id: UUID) -> None:
        super().__init__()
        self.chat_id = chat_id


class ChatHasActiveSandboxError(ChatError):
    """A chat (or, with no id, some chat of the workspace) has an active sandbox session."""

    code = 'chat_has_active_sandbox'

    def __init__(self, chat_id: UUID | None) -> None:
        super().__init__()
        self.chat_id = chat_id


class HistoryPreconditionFailedError(ChatError):
    """`If-Match` named another version of the history than the current one."""

    code = 'precondition_failed'

    def __init__(self, chat_id: UUID) -> None:
        super().__init__()
        self.chat_id = chat_id


class InvalidHistoryEncodingError(ChatError):
    code = 'invalid_history_encoding'

    def __init__(self, chat_id: UUID) -> None:
        super().__init__()
        self.chat_id = chat_id


class ChatFileError(DomainError):
    pass


class ChatFileNotFoundError(ChatFileError):
    code = 'chat_file_not_found'

    def __init__(self, file_id: UUID) -> None:
        super().__init__()
        self.file_id = file_id


class InvalidAttachmentNameError(ChatFileError, ValueError):
    code = 'invalid_attachment_name'

    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason


class ReservedAttachmentNameError(ChatFileError, ValueError):
    code = 'reserved_attachment_name'

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name


class FileTooLargeError(ChatFileError):
    code = 'file_too_large'

    def __init__(self, max_bytes: int) -> None:
        super().__init__()
        self.max_bytes = max_bytes


class ContentLimitExceededError(DomainError):
    """A stream was longer than the limit it was staged under; nothing was kept."""

    code = 'content_limit_exceeded'

    def __init__(self, limit_bytes: int) -> None:
        super().__init__()
        self.limit_bytes = limit_bytes


class SandboxError(DomainError):
    pass


class SandboxAlreadyActiveError(SandboxError):
    code = 'sandbox_already_active'

    def __init__(self, chat_id: UUID) -> None:
        super().__init__()
        self.chat_id = chat_id


class SandboxSessionNotFoundError(SandboxError):
    code = 'sandbox_session_not_found'

    def __init__(self, chat_id: UUID) -> None:
        super().__init__()
        self.chat_id = chat_id


class IdempotencyKeyReusedError(DomainError):
    code = 'idempotency_key_reused'

    def __init__(self, key: str) -> None:
        super().__init__()
        self.key = key


class InvalidLinkError(DomainError):
    code = 'invalid_link'


class InsufficientStorageError(DomainError):
    """The disk is full; whatever was partly written has been removed."""

    code = 'insufficient_storage'


class ServiceUnavailableError(DomainError):
    """The metadata store or the disk cannot be reached; retrying is safe.

    `reason` says why in a few words for an operator (`connection refused`), never a
    secret; it is not part of a response.
    """

    code = 'service_unavailable'
    is_retryable = True

    def __init__(self, reason: str | None = None) -> None:
        super().__init__()
        self.reason = reason


class CommitOutcomeUnknownError(ServiceUnavailableError):
    """The metadata store went away while committing: the rows may have committed.

    The files are left as the commit would have them, as a crash at that moment would
    leave them, for start-up recovery to settle against the rows (ADR 016).
    """


class StoredContentMissingError(DomainError):
    """A file the metadata points at is not a regular file on disk (gone, or replaced by a
    symlink or something else that is not ours to read)."""

    code = 'stored_content_missing'

    def __init__(self, chat_id: UUID | None = None) -> None:
        super().__init__()
        self.chat_id = chat_id


class StoredVersionChangingError(ServiceUnavailableError):
    """The file at a record's name is a version the record does not describe.

    Another write has put its file there and not committed yet (ADR 011: the swap comes
    before the metadata commit), or committed after the record was read. A read starts over
    with a fresh record; one that does not settle in time is a `503`: retrying is safe.
    """
