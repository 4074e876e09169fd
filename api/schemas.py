"""Request and response bodies; responses are built from domain dataclasses."""

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated
from uuid import UUID

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer
from pydantic_core import to_json

from domain.chat import MAX_CHAT_TITLE_CHARS, Chat, ChatFile
from domain.sandbox import (
    DEFAULT_SANDBOX_TTL_SECONDS,
    MAX_SANDBOX_TTL_SECONDS,
    MIN_SANDBOX_TTL_SECONDS,
    SandboxSession,
)
from domain.workspace import Workspace, WorkspaceUsage


def _rfc3339(value: datetime) -> str:
    # always UTC with microseconds, e.g. 2026-11-23T18:12:10.000000Z
    if value.tzinfo is UTC and value.year >= _FOUR_DIGIT_YEARS:
        # what the stores return; isoformat is several times faster than strftime, and
        # cutting its `+00:00` is faster than a naive copy (`replace`) without it
        return value.isoformat(timespec='microseconds')[:-6] + 'Z'
    return value.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%S.%fZ')


# strftime's %Y does not pad years before 1000, isoformat does
_FOUR_DIGIT_YEARS = 1000


Timestamp = Annotated[
    datetime,
    PlainSerializer(_rfc3339, return_type=str, when_used='json'),
    Field(examples=['2026-11-23T18:12:10.123456Z']),
]


def _whole_float_as_int(value: object) -> object:
    # a float whose fraction is zero (`933.0`, `1e3`) is an integer in JSON Schema's terms
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# a JSON number whose fraction is zero, as the published `type: integer` admits: `933`,
# `933.0`; `933.5`, `true` and `"933"` are refused (strict: `true` is not one second)
WholeNumber = Annotated[int, BeforeValidator(_whole_float_as_int), Field(strict=True)]

WS_ID = '0b7f6c1e-4a9d-4c6b-9d0e-2f1a3b4c5d6e'
USER_ID = '9a1e2b3c-4d5e-4f60-8a7b-1c2d3e4f5a6b'
CHAT_ID = '3f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f'
FILE_ID = '7e8f9a0b-1c2d-4e3f-9a4b-5c6d7e8f9a0b'
SESSION_ID = '5d6e7f80-9a1b-4c2d-8e3f-4a5b6c7d8e9f'
TS = '2026-11-23T18:12:10.123456Z'


class WorkspaceOut(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        title='Workspace',
        json_schema_extra={
            'example': {
                'workspace_id': WS_ID,
                'user_id': USER_ID,
                'created_at': TS,
                'quota_bytes': 1073741824,
                'used_bytes': 2048,
            }
        },
    )

    workspace_id: UUID
    user_id: UUID
    created_at: Timestamp
    quota_bytes: int
    used_bytes: int

    @classmethod
    def of(cls, workspace: Workspace) -> 'WorkspaceOut':
        return cls.model_validate(workspace)


class WorkspaceUsageOut(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        title='WorkspaceUsage',
        json_schema_extra={
            'example': {'workspace_id': WS_ID, 'used_bytes': 2048, 'quota_bytes': 1073741824}
        },
    )

    workspace_id: UUID
    used_bytes: int = Field(description='Every stored byte: all history.md files and attachments')
    quota_bytes: int

    @classmethod
    def of(cls, usage: WorkspaceUsage) -> 'WorkspaceUsageOut':
        return cls.model_validate(usage)


# no NUL: PostgreSQL cannot store one in text, and the backends must answer alike
Title = Annotated[
    str | None,
    Field(max_length=MAX_CHAT_TITLE_CHARS, pattern=r'^[^\x00]*$', examples=['Q3 planning']),
]


class ChatCreate(BaseModel):
    model_config = ConfigDict(extra='forbid', json_schema_extra={'example': {'title': 'Q3'}})

    title: Title = None


class ChatUpdate(BaseModel):
    model_config = ConfigDict(extra='forbid', json_schema_extra={'example': {'title': 'Q4'}})

    title: Title


class ChatOut(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        title='Chat',
        json_schema_extra={
            'example': {
                'chat_id': CHAT_ID,
                'workspace_id': WS_ID,
                'title': 'Q3 planning',
                'created_at': TS,
                'updated_at': TS,
                'history_bytes': 1024,
                'file_count': 2,
            }
        },
    )

    chat_id: UUID
    workspace_id: UUID
    title: str | None
    created_at: Timestamp
    updated_at: Timestamp
    history_bytes: int
    file_count: int

    @classmethod
    def of(cls, chat: Chat) -> 'ChatOut':
        return cls.model_validate(chat)


class ChatPage(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={'example': {'items': [], 'next_cursor': None}},
    )

    items: list[ChatOut]
    next_cursor: str | None = Field(description='Opaque; pass as `cursor` for the next page')


class ChatFileOut(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        title='ChatFile',
        json_schema_extra={
            'example': {
                'file_id': FILE_ID,
                'chat_id': CHAT_ID,
                'name': 'report.pdf',
                'content_type': 'application/pdf',
                'size_bytes': 52113,
                'sha256': 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
                'created_at': TS,
            }
        },
    )

    file_id: UUID
    chat_id: UUID
    name: str
    content_type: str | None
    size_bytes: int
    sha256: str
    created_at: Timestamp

    @classmethod
    def of(cls, chat_file: ChatFile) -> 'ChatFileOut':
        return cls(
            file_id=chat_file.file_id,
            chat_id=chat_file.chat_id,
            name=chat_file.name.value,
            content_type=chat_file.content_type,
            size_bytes=chat_file.size_bytes,
            sha256=chat_file.sha256,
            created_at=chat_file.created_at,
        )


class ChatFilePage(BaseModel):
    model_config = ConfigDict(json_schema_extra={'example': {'items': [], 'next_cursor': None}})

    items: list[ChatFileOut]
    next_cursor: str | None = Field(description='Opaque; pass as `cursor` for the next page')


# The list routes write their pages straight from the domain objects, without a model per
# item (ADR 019): plain dicts in the models' field order, written by pydantic-core's own
# JSON writer, so UUIDs, integers and strings come out as `model_dump_json` writes them.
# test/api/test_page_json.py holds both pages to the models' output.


def _timestamp(value: datetime) -> datetime | str:
    """`value` for `to_json` where it writes what `Timestamp` does, else `Timestamp`'s text.

    pydantic-core writes an aware UTC time as `...T18:12:10.123456Z`, in Rust, unless the
    microseconds are 0 (it drops the fraction); `_rfc3339` keeps the rest identical.
    """
    if value.microsecond and value.tzinfo is UTC and value.year >= _FOUR_DIGIT_YEARS:
        return value
    return _rfc3339(value)


def chat_page_json(chats: Sequence[Chat], next_cursor: str | None) -> bytes:
    """`ChatPage` of `chats` as JSON, byte for byte what the model would write."""
    return to_json(
        {
            'items': [
                {
                    'chat_id': c.chat_id,
                    'workspace_id': c.workspace_id,
                    'title': c.title,
                    'created_at': _timestamp(c.created_at),
                    'updated_at': _timestamp(c.updated_at),
                    'history_bytes': c.history_bytes,
                    'file_count': c.file_count,
                }
                for c in chats
            ],
            'next_cursor': next_cursor,
        }
    )


def file_page_json(files: Sequence[ChatFile], next_cursor: str | None) -> bytes:
    """`ChatFilePage` of `files` as JSON, byte for byte what the model would write."""
    return to_json(
        {
            'items': [
                {
                    'file_id': f.file_id,
                    'chat_id': f.chat_id,
                    'name': f.name.value,
                    'content_type': f.content_type,
                    'size_bytes': f.size_bytes,
                    'sha256': f.sha256,
                    'created_at': _timestamp(f.created_at),
                }
                for f in files
            ],
            'next_cursor': next_cursor,
        }
    )


class HistoryWritten(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={'example': {'etag': '"3-1024"', 'size_bytes': 1024}},
    )

    etag: str = Field(description='Strong ETag of the new history, as in the ETag header')
    size_bytes: int


class SandboxStart(BaseModel):
    model_config = ConfigDict(
        extra='forbid',
        json_schema_extra={'example': {'ttl_seconds': 3600}},
    )

    ttl_seconds: WholeNumber = Field(
        default=DEFAULT_SANDBOX_TTL_SECONDS,
        ge=MIN_SANDBOX_TTL_SECONDS,
        le=MAX_SANDBOX_TTL_SECONDS,
    )
    sandbox_session_id: UUID | None = Field(
        default=None, description='The active session to renew; omit to start a new one'
    )


class SandboxSessionOut(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        title='SandboxSession',
        json_schema_extra={
            'example': {
                'sandbox_session_id': SESSION_ID,
                'chat_id': CHAT_ID,
                'started_at': TS,
                'expires_at': '2026-11-23T19:12:10.123456Z',
            }
        },
    )

    sandbox_session_id: UUID
    chat_id: UUID
    started_at: Timestamp
    expires_at: Timestamp

    @classmethod
    def of(cls, session: SandboxSession) -> 'SandboxSessionOut':
        return cls.model_validate(session)


class Health(BaseModel):
    model_config = ConfigDict(json_schema_extra={'example': {'status': 'ok'}})

    status: str
