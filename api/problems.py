"""RFC 9457 problem details: the handlers that answer every error with a problem, and the
`responses=` each route declares; the table of problem types is `api.problem_types`."""

import logging
from collections.abc import Mapping, Sequence
from typing import Any, cast

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import iter_route_contexts
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

from api.problem_types import (
    INTERNAL_ERROR,
    all_problem_types,
    problem_example,
    problem_type_of,
    status_phrase,
)
from api.routing import app_path, method_label, route_template
from domain.error import DomainError

logger = logging.getLogger('chat_storage.errors')

PROBLEM_MEDIA_TYPE = 'application/problem+json'
# where a problem response leaves its code for the metrics middleware (api/observability.py)
PROBLEM_CODE_SCOPE_KEY = 'chat_storage.problem_code'


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
    known = all_problem_types().get(problem.code)
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


# codes documented only where a route names them: every route exists, so `not_found` is
# never the 404 of a route unless it says so; only JSON bodies are `request_too_large`;
# only routes with a body are `request_timeout` (added to each by `finish_openapi`)
_ONLY_WHEN_NAMED = frozenset({'not_found', 'request_too_large', 'request_timeout'})


def _described(status: int, codes: Sequence[str]) -> str:
    phrase = status_phrase(status)
    return f'{phrase}: ' + ', '.join(f'`{code}`' for code in codes) if codes else phrase


def problem_responses(*statuses_or_codes: int | str) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: each problem status with the shared `Problem` schema.

    An int documents that status with an example of every code it may carry; a str (a
    code) documents just that code under its status, e.g. `problem_responses(401,
    'chat_not_found')`.
    """
    kinds = all_problem_types()
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
