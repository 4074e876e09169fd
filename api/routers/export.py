import logging
import unicodedata
from uuid import UUID

from fastapi import APIRouter, Response
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from adapter.zip_stream import zip_stream
from api.dependencies import ServicesDep, UserIdDep
from api.download import safety_headers
from api.file_response import HeadersOnlyResponse
from api.http import content_disposition
from api.observability import CUT_SHORT_SCOPE_KEY
from api.openapi_docs import ZIP_RESPONSE
from api.problems import problem_responses
from domain.chat import Chat
from usecase.common import primed
from usecase.export_chat import ExportedContentChangedError

logger = logging.getLogger('chat_storage.export')

router = APIRouter(
    prefix='/v1/chats/{chat_id}',
    tags=['chats'],
    responses=problem_responses(
        401, 'validation_error', 500, 503, 'workspace_not_found', 'chat_not_found'
    ),
)

ZIP_MEDIA_TYPE = 'application/zip'
MAX_ARCHIVE_STEM_CHARS = 100
# path separators, and what Windows refuses in a file name
_UNSAFE_IN_FILE_NAMES = frozenset('/\\<>:"|?*')


def archive_name(chat: Chat) -> str:
    """`<title>.zip`, made safe to save as a file name; `<chat_id>.zip` without a title."""
    cleaned = ''.join(
        '_' if ch in _UNSAFE_IN_FILE_NAMES or unicodedata.category(ch).startswith('C') else ch
        for ch in chat.title or ''
    )
    stem = cleaned.strip().strip('.').strip()[:MAX_ARCHIVE_STEM_CHARS]
    return f'{stem or chat.chat_id}.zip'


@router.get(
    '/export',
    summary='Download a chat as a ZIP archive',
    description='`history.md` and every attachment under its own name, stored without '
    'compression, streamed as it is read (ZIP64 where sizes need it). Each member is '
    'exactly the bytes listed when the export started, whatever is written meanwhile; '
    'when a listed file is gone or damaged before its turn, the stream stops before the '
    'archive is complete (retry); when that happens before the first byte, the answer is '
    '`409 chat_changed_during_export` (retry). `HEAD` answers the same status and headers '
    'without reading anything.',
    response_class=StreamingResponse,
    responses={200: ZIP_RESPONSE, **problem_responses('chat_changed_during_export')},
)
async def export_chat(user_id: UserIdDep, services: ServicesDep, chat_id: UUID) -> Response:
    export = await services.export_chat(user_id, chat_id)
    return ArchiveResponse(
        await primed(zip_stream(export.entries())), headers=_export_headers(export.chat)
    )


class ArchiveResponse(StreamingResponse):
    """The streamed archive. A file that changes while it streams (a race with a write,
    `ExportedContentChangedError`) ends the response without its last message: the server
    closes the connection before the final chunk, so no client takes the partial archive
    for a whole one. That is one warning in the log, and the access log and metrics count
    the response as cut short (`CUT_SHORT_SCOPE_KEY`), not as an error."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._scope = scope
        await super().__call__(scope, receive, send)

    async def stream_response(self, send: Send) -> None:
        await send(
            {'type': 'http.response.start', 'status': self.status_code, 'headers': self.raw_headers}
        )
        try:
            async for chunk in self.body_iterator:
                await send({'type': 'http.response.body', 'body': chunk, 'more_body': True})
        except ExportedContentChangedError as changed:
            logger.warning('export cut short: a file of the chat changed after the export started')
            self._scope[CUT_SHORT_SCOPE_KEY] = changed.code
            return
        await send({'type': 'http.response.body', 'body': b'', 'more_body': False})


@router.head('/export', include_in_schema=False)
async def export_chat_head(user_id: UserIdDep, services: ServicesDep, chat_id: UUID) -> Response:
    """What the GET answers, without the body (RFC 9110 9.3.2): its headers come from the
    chat alone, and it has no `Content-Length` (the archive is streamed chunked), so
    nothing is read or zipped."""
    export = await services.export_chat(user_id, chat_id)
    return HeadersOnlyResponse(_export_headers(export.chat))


def _export_headers(chat: Chat) -> dict[str, str]:
    return {
        'Content-Type': ZIP_MEDIA_TYPE,
        'Content-Disposition': content_disposition(archive_name(chat)),
        **safety_headers(),
    }
