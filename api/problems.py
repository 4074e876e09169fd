"""RFC 9457 problem details: the one table from error classes to HTTP problems."""

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from types import SimpleNamespace
from typing import Any, cast

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import iter_route_contexts
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

from api.routing import app_path, method_label, route_template
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

logger = logging.getLogger('chat_storage.errors')

PROBLEM_MEDIA_TYPE = 'application/problem+json'
# where a problem response leaves its code for the metrics middleware (api/observability.py)
PROBLEM_CODE_SCOPE_KEY = 'chat_storage.problem_code'
# reason phrases RFC 9110 renamed, where Python's `HTTPStatus` keeps the RFC 7233 one
_RFC_9110_PHRASES = {416: 'Range Not Satisfiable'}


def status_phrase(status: int) -> str:
    """The reason phrase of a status, as RFC 9110 names it."""
    return _RFC_9110_PHRASES.get(status) or HTTPStatus(status).phrase


class ApiProblem(Exception):  # noqa: N818 - it is a problem, raised as one
    """An error that only the HTTP layer knows (headers, media types, ranges)."""

    def __init__(
        self,
        code: str,
        status: int,
        detail: str,
        *,
        errors: Sequence[Mapping[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(code)
        self.code = code
        self.status = status
        self.detail = detail
        self.errors = errors
        self.headers = headers


def unauthenticated(detail: str) -> ApiProblem:
    return ApiProblem('unauthenticated', 401, detail, headers={'WWW-Authenticate': 'Bearer'})


def validation_problem(location: list[str], message: str) -> ApiProblem:
    return ApiProblem(
        'validation_error',
        422,
        'The request is not valid.',
        errors=[{'loc': location, 'msg': message, 'type': 'value_error'}],
    )


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


class ValidationIssue(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class Problem(BaseModel):
    """An RFC 9457 problem; `code` is the stable token to branch on."""

    model_config = ConfigDict(
        json_schema_extra={
            'examples': [
                {
                    'type': '/problems/chat-not-found',
                    'title': 'Chat not found',
                    'status': 404,
                    'detail': 'No chat with id 3f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f here.',
                    'instance': '/v1/chats/3f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f',
                    'code': 'chat_not_found',
                }
            ]
        }
    )

    type: str = Field(description='URI reference naming the problem type')
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    code: str = Field(description='Stable machine-readable error code')
    errors: list[ValidationIssue] | None = Field(
        default=None, description='Offending fields (validation_error only)'
    )


def problem_response(
    request: Request,
    *,
    status: int,
    code: str,
    title: str,
    detail: str | None,
    errors: Sequence[Mapping[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {
        'type': f'/problems/{code.replace("_", "-")}',
        'title': title,
        'status': status,
        'detail': detail,
        'instance': request.url.path,
        'code': code,
    }
    if errors is not None:
        body['errors'] = list(errors)
    request.scope[PROBLEM_CODE_SCOPE_KEY] = code
    return JSONResponse(
        {k: v for k, v in body.items() if v is not None},
        status_code=status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=dict(headers) if headers else None,
    )


async def _domain_error(request: Request, exc: Exception) -> Response:
    error = cast('DomainError', exc)
    kind = problem_type_of(error)
    if kind is INTERNAL_ERROR:
        logger.error('unmapped domain error %s', error.code, exc_info=error)
        return problem_response(
            request, status=500, code='internal_error', title=kind.title, detail=kind.detail(error)
        )
    headers = {'Retry-After': '1'} if error.is_retryable else None
    return problem_response(
        request,
        status=kind.status,
        code=error.code,
        title=kind.title,
        detail=kind.detail(error),
        headers=headers,
    )


async def _api_problem(request: Request, exc: Exception) -> Response:
    problem = cast('ApiProblem', exc)
    # one title per problem type (RFC 9457): the one its documented example shows
    known = _all_problem_types().get(problem.code)
    return problem_response(
        request,
        status=problem.status,
        code=problem.code,
        title=known.title if known is not None else status_phrase(problem.status),
        detail=problem.detail,
        errors=problem.errors,
        headers=problem.headers,
    )


def _jsonable_errors(errors: Sequence[Any]) -> list[dict[str, Any]]:
    # pydantic's context may hold exceptions or the raw input: keep location, message, kind
    return [
        {
            'loc': [p if isinstance(p, int) else str(p) for p in e['loc']],
            'msg': e['msg'],
            'type': e['type'],
        }
        for e in errors
    ]


async def _validation_error(request: Request, exc: Exception) -> Response:
    error = cast('RequestValidationError', exc)
    return problem_response(
        request,
        status=422,
        code='validation_error',
        title='Validation error',
        detail='The request is not valid; see errors.',
        errors=_jsonable_errors(error.errors()),
    )


_HTTP_CODES = {
    404: 'not_found',
    405: 'method_not_allowed',
    408: 'request_timeout',
    413: 'request_too_large',
    415: 'unsupported_media_type',
}


# FastAPI's 400 for a JSON body it cannot decode at all (e.g. bytes that are not UTF-8);
# any malformed input is a 422 validation_error by the contract
_UNDECODABLE_BODY = (400, 'There was an error parsing the body')


async def _http_error(request: Request, exc: Exception) -> Response:
    error = cast('StarletteHTTPException', exc)
    if (error.status_code, error.detail) == _UNDECODABLE_BODY:
        return await _validation_error(
            request,
            RequestValidationError(
                [{'loc': ('body',), 'msg': 'The body is not valid JSON', 'type': 'json_invalid'}]
            ),
        )
    code = _HTTP_CODES.get(error.status_code, 'http_error')
    headers = error.headers
    if error.status_code == 405:  # noqa: PLR2004
        headers = {**(headers or {}), 'Allow': _allowed_methods(request)}
    return problem_response(
        request,
        status=error.status_code,
        code=code,
        title=status_phrase(error.status_code),
        detail=str(error.detail) if error.status_code != 404 else 'No such route.',  # noqa: PLR2004
        headers=headers,
    )


def _allowed_methods(request: Request) -> str:
    """Every method a route serves at this path, for a 405's `Allow`: Starlette names only
    those of the first route of the path, and a path's `HEAD` is a route of its own."""
    path = app_path(request.scope)
    methods: set[str] = set()
    for context in iter_route_contexts(request.app.router.routes):
        if context.methods and context.path_regex.match(path):
            methods |= context.methods
    return ', '.join(sorted(methods))


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    # the route template, never the path: it holds ids and file names
    logger.error(
        'unexpected error on %s %s',
        method_label(request.scope),
        route_template(request.scope),
        exc_info=exc,
    )
    return problem_response(
        request,
        status=500,
        code='internal_error',
        title=INTERNAL_ERROR.title,
        detail=INTERNAL_ERROR.detail(exc),
    )


def install_problem_handlers(app: FastAPI) -> None:
    """Every error becomes `application/problem+json`; tracebacks only go to the log."""
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(ApiProblem, _api_problem)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)


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
# codes documented only where a route names them: every route exists, so `not_found` is
# never the 404 of a route unless it says so; only JSON bodies are `request_too_large`;
# only routes with a body are `request_timeout` (added to each by `finish_openapi`)
_ONLY_WHEN_NAMED = frozenset({'not_found', 'request_too_large', 'request_timeout'})

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


def _all_problem_types() -> dict[str, ProblemType]:
    return {cls.code: kind for cls, kind in PROBLEM_TYPES.items()} | HTTP_PROBLEM_TYPES


def problem_example(code: str) -> dict[str, Any]:
    """A realistic problem body of that code, as the handlers above would write it."""
    kind = _all_problem_types()[code]
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


def _described(status: int, codes: Sequence[str]) -> str:
    phrase = status_phrase(status)
    return f'{phrase}: ' + ', '.join(f'`{code}`' for code in codes) if codes else phrase


def problem_responses(*statuses_or_codes: int | str) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: each problem status with the shared `Problem` schema.

    An int documents that status with an example of every code it may carry; a str (a
    code) documents just that code under its status, e.g. `problem_responses(401,
    'chat_not_found')`.
    """
    kinds = _all_problem_types()
    codes_by_status: dict[int, list[str]] = {}
    for item in statuses_or_codes:
        if isinstance(item, str):
            codes_by_status.setdefault(kinds[item].status, []).append(item)
            continue
        named = [c for c, k in kinds.items() if k.status == item and c not in _ONLY_WHEN_NAMED]
        codes_by_status.setdefault(item, []).extend(named)
    return {
        status: {
            'description': _described(status, codes),
            'content': {
                PROBLEM_MEDIA_TYPE: {
                    'schema': {'$ref': '#/components/schemas/Problem'},
                    'examples': {
                        code: {'summary': kinds[code].title, 'value': problem_example(code)}
                        for code in codes
                    },
                }
            },
        }
        for status, codes in codes_by_status.items()
    }
