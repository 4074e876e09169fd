"""The table of problem types: each error class or code with its status, title and
detail, and the realistic examples the OpenAPI document shows of each."""

from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from types import SimpleNamespace
from typing import Any, cast

from domain.error import (
    ChatFileNotFoundError,
    ChatHasActiveSandboxError,
    ChatNotFoundError,
    DomainError,
    FileTooLargeError,
    HistoryPreconditionFailedError,
    IdempotencyKeyReusedError,
    InsufficientStorageError,
    InvalidAttachmentNameError,
    InvalidHistoryEncodingError,
    InvalidLinkError,
    ReservedAttachmentNameError,
    SandboxAlreadyActiveError,
    SandboxSessionNotFoundError,
    ServiceUnavailableError,
    WorkspaceNotFoundError,
    WorkspaceQuotaExceededError,
)
from usecase.export_chat import ExportedContentChangedError

# reason phrases RFC 9110 renamed, where Python's `HTTPStatus` keeps the RFC 7233 one
_RFC_9110_PHRASES = {416: 'Range Not Satisfiable'}


def status_phrase(status: int) -> str:
    """The reason phrase of a status, as RFC 9110 names it."""
    return _RFC_9110_PHRASES.get(status) or HTTPStatus(status).phrase


@dataclass(frozen=True, slots=True)
class ProblemType:
    status: int
    title: str
    detail: Callable[[Any], str]


def _id_of(attr: str, noun: str) -> Callable[[Any], str]:
    return lambda error: f'No {noun} with id {getattr(error, attr)} here.'


PROBLEM_TYPES: dict[type[DomainError], ProblemType] = {
    WorkspaceNotFoundError: ProblemType(
        404, 'Workspace not found', lambda _: 'You have no workspace yet: PUT /v1/workspace.'
    ),
    ChatNotFoundError: ProblemType(404, 'Chat not found', _id_of('chat_id', 'chat')),
    ChatFileNotFoundError: ProblemType(404, 'Chat file not found', _id_of('file_id', 'file')),
    SandboxSessionNotFoundError: ProblemType(
        404, 'Sandbox session not found', lambda _: 'The chat has no active sandbox session.'
    ),
    ChatHasActiveSandboxError: ProblemType(
        409,
        'Chat has an active sandbox',
        lambda _: 'End the active sandbox session before deleting.',
    ),
    SandboxAlreadyActiveError: ProblemType(
        409,
        'Sandbox already active',
        lambda _: 'Another sandbox session is active in this chat; renew it by its id or end it.',
    ),
    InvalidLinkError: ProblemType(
        403, 'Invalid link', lambda _: 'The link is invalid, expired, or its file changed.'
    ),
    ExportedContentChangedError: ProblemType(
        409,
        'Chat changed during export',
        lambda _: (
            'A file the export listed is no longer stored as it was listed; '
            'export it again to get the chat as it is now.'
        ),
    ),
    HistoryPreconditionFailedError: ProblemType(
        412,
        'Precondition failed',
        lambda _: 'If-Match does not name the current version of the history.',
    ),
    FileTooLargeError: ProblemType(
        413, 'File too large', lambda e: f'One upload may have at most {e.max_bytes} bytes.'
    ),
    WorkspaceQuotaExceededError: ProblemType(
        413,
        'Workspace quota exceeded',
        lambda e: f'The write would take the workspace over its quota of {e.quota_bytes} bytes.',
    ),
    InvalidAttachmentNameError: ProblemType(
        422,
        'Invalid attachment name',
        lambda e: (
            f'The file name is not allowed ({e.reason}): it must be 1-255 UTF-8 bytes, '
            'not . or .., without / \\ NUL or control characters.'
        ),
    ),
    ReservedAttachmentNameError: ProblemType(
        422, 'Reserved attachment name', lambda _: 'history.md is reserved for the chat history.'
    ),
    InvalidHistoryEncodingError: ProblemType(
        422, 'Invalid history encoding', lambda _: 'The history must be valid UTF-8 text.'
    ),
    IdempotencyKeyReusedError: ProblemType(
        422,
        'Idempotency key reused',
        lambda _: 'This Idempotency-Key was used before with a different request.',
    ),
    InsufficientStorageError: ProblemType(
        507, 'Insufficient storage', lambda _: 'The disk is full; nothing was written.'
    ),
    ServiceUnavailableError: ProblemType(
        503,
        'Service unavailable',
        lambda _: 'Storage is unreachable for the moment; retrying is safe.',
    ),
}

INTERNAL_ERROR = ProblemType(500, 'Internal error', lambda _: 'An unexpected error occurred.')


def problem_type_of(error: DomainError) -> ProblemType:
    for cls in type(error).__mro__:
        found = PROBLEM_TYPES.get(cast('type[DomainError]', cls))
        if found is not None:
            return found
    return INTERNAL_ERROR


# one sentence for every 415, so that the example in the document is what each route says
UNSUPPORTED_MEDIA_TYPE_DETAIL = (
    'This route does not take a body of this Content-Type: a JSON body goes as '
    'application/json, an upload to the multipart route as multipart/form-data with one '
    'part named "file".'
)

# problems raised by the HTTP layer itself (ApiProblem, validation, Starlette); with the
# domain table above, the codes the OpenAPI document shows examples of
HTTP_PROBLEM_TYPES: dict[str, ProblemType] = {
    'unauthenticated': ProblemType(
        401, HTTPStatus(401).phrase, lambda _: 'The X-User-Id header is required.'
    ),
    'not_found': ProblemType(404, HTTPStatus(404).phrase, lambda _: 'No such route.'),
    'request_timeout': ProblemType(
        408,
        HTTPStatus(408).phrase,
        lambda _: 'No part of the request body arrived within 30 s.',
    ),
    'request_too_large': ProblemType(
        413, HTTPStatus(413).phrase, lambda _: 'This request body may have at most 65536 bytes.'
    ),
    'unsupported_media_type': ProblemType(
        415,
        HTTPStatus(415).phrase,
        lambda _: UNSUPPORTED_MEDIA_TYPE_DETAIL,
    ),
    'range_not_satisfiable': ProblemType(
        416,
        status_phrase(416),
        lambda _: 'The file has 52113 bytes; the range asked for lies outside it.',
    ),
    'validation_error': ProblemType(
        422, 'Validation error', lambda _: 'The request is not valid; see errors.'
    ),
    'internal_error': INTERNAL_ERROR,
}

_EXAMPLE_CHAT_ID = '3f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f'
_EXAMPLE_FILE_ID = '7e8f9a0b-1c2d-4e3f-9a4b-5c6d7e8f9a0b'
# what the detail templates read from an error, with realistic values
_EXAMPLE_ERROR = SimpleNamespace(
    chat_id=_EXAMPLE_CHAT_ID,
    file_id=_EXAMPLE_FILE_ID,
    max_bytes=104_857_600,
    quota_bytes=1_073_741_824,
    reason='path_separator',
)
_EXAMPLE_INSTANCES = {
    'unauthenticated': '/v1/chats',
    'workspace_not_found': '/v1/workspace',
    'chat_file_not_found': f'/v1/chats/{_EXAMPLE_CHAT_ID}/files/{_EXAMPLE_FILE_ID}',
    'range_not_satisfiable': f'/v1/chats/{_EXAMPLE_CHAT_ID}/files/{_EXAMPLE_FILE_ID}/content',
    'invalid_link': f'/links/{_EXAMPLE_FILE_ID}',
    'precondition_failed': f'/v1/chats/{_EXAMPLE_CHAT_ID}/history',
    'invalid_history_encoding': f'/v1/chats/{_EXAMPLE_CHAT_ID}/history',
    'file_too_large': f'/v1/chats/{_EXAMPLE_CHAT_ID}/files/by-name/video.mp4',
    'workspace_quota_exceeded': f'/v1/chats/{_EXAMPLE_CHAT_ID}/files/by-name/video.mp4',
    'invalid_attachment_name': f'/v1/chats/{_EXAMPLE_CHAT_ID}/files',
    'reserved_attachment_name': f'/v1/chats/{_EXAMPLE_CHAT_ID}/files/by-name/history.md',
    'unsupported_media_type': '/v1/chats',
    'insufficient_storage': f'/v1/chats/{_EXAMPLE_CHAT_ID}/files',
    'sandbox_already_active': f'/v1/chats/{_EXAMPLE_CHAT_ID}/sandbox',
    'chat_changed_during_export': f'/v1/chats/{_EXAMPLE_CHAT_ID}/export',
    'sandbox_session_not_found': f'/v1/chats/{_EXAMPLE_CHAT_ID}/sandbox',
    'service_unavailable': '/v1/chats',
}


def all_problem_types() -> dict[str, ProblemType]:
    return {cls.code: kind for cls, kind in PROBLEM_TYPES.items()} | HTTP_PROBLEM_TYPES


def problem_example(code: str) -> dict[str, Any]:
    """A realistic problem body of that code, as the handlers of `api.problems` write it."""
    kind = all_problem_types()[code]
    body: dict[str, Any] = {
        'type': f'/problems/{code.replace("_", "-")}',
        'title': kind.title,
        'status': kind.status,
        'detail': kind.detail(_EXAMPLE_ERROR),
        'instance': _EXAMPLE_INSTANCES.get(code, f'/v1/chats/{_EXAMPLE_CHAT_ID}'),
        'code': code,
    }
    if code == 'validation_error':
        body['errors'] = [
            {
                'loc': ['query', 'limit'],
                'msg': 'Input should be less than or equal to 200',
                'type': 'less_than_equal',
            }
        ]
    return body
