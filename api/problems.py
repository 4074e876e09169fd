"""RFC 9457 problem details: the one table from error classes to HTTP problems."""

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, cast

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

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

logger = logging.getLogger('chat_storage.errors')

PROBLEM_MEDIA_TYPE = 'application/problem+json'


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
            'example': {
                'type': '/problems/chat-not-found',
                'title': 'Chat not found',
                'status': 404,
                'detail': 'No chat with id 3f1c… here.',
                'instance': '/v1/chats/3f1c…',
                'code': 'chat_not_found',
            }
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
    return problem_response(
        request,
        status=problem.status,
        code=problem.code,
        title=HTTPStatus(problem.status).phrase,
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


_HTTP_CODES = {404: 'not_found', 405: 'method_not_allowed'}


async def _http_error(request: Request, exc: Exception) -> Response:
    error = cast('StarletteHTTPException', exc)
    code = _HTTP_CODES.get(error.status_code, 'http_error')
    return problem_response(
        request,
        status=error.status_code,
        code=code,
        title=HTTPStatus(error.status_code).phrase,
        detail=str(error.detail) if error.status_code != 404 else 'No such route.',  # noqa: PLR2004
        headers=error.headers,
    )


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    logger.error('unexpected error on %s %s', request.method, request.url.path, exc_info=exc)
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


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: each listed status documented with the problem schema."""
    return {
        status: {
            'model': Problem,
            'description': HTTPStatus(status).phrase,
            'content': {PROBLEM_MEDIA_TYPE: {'schema': {'$ref': '#/components/schemas/Problem'}}},
        }
        for status in statuses
    }
