from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Body, Response, status

from api.dependencies import ServicesDep, UserIdDep
from api.openapi_docs import SANDBOX_START_EXAMPLES
from api.problems import problem_responses
from api.schemas import SandboxSessionOut, SandboxStart

router = APIRouter(
    prefix='/v1/chats/{chat_id}/sandbox',
    tags=['sandbox'],
    responses=problem_responses(
        401,
        'validation_error',
        500,
        503,
        'workspace_not_found',
        'chat_not_found',
    ),
)


@router.put(
    '',
    summary='Start or renew the sandbox session of a chat',
    description='`201` when a session started; `200` when the active session named by '
    '`sandbox_session_id` was renewed; `409` when another session is active. A session is '
    'active until it is ended or `expires_at` passes. The body may be empty.',
    status_code=status.HTTP_201_CREATED,
    responses={
        201: {'description': 'Started'},
        200: {'model': SandboxSessionOut, 'description': 'Renewed'},
        **problem_responses(
            'sandbox_already_active', 'request_too_large', 'unsupported_media_type'
        ),
    },
)
async def start_sandbox(
    user_id: UserIdDep,
    services: ServicesDep,
    chat_id: UUID,
    response: Response,
    body: Annotated[SandboxStart | None, Body(openapi_examples=SANDBOX_START_EXAMPLES)] = None,
) -> SandboxSessionOut:
    request = body or SandboxStart()
    started = await services.start_sandbox_session(
        user_id, chat_id, request.ttl_seconds, request.sandbox_session_id
    )
    response.status_code = status.HTTP_201_CREATED if started.started else status.HTTP_200_OK
    return SandboxSessionOut.of(started.session)


@router.get(
    '',
    summary='The active sandbox session',
    response_description='The active session',
    description='`404 sandbox_session_not_found` when no session is active (none started, '
    'ended, or expired).',
    responses=problem_responses('sandbox_session_not_found'),
)
async def get_sandbox(
    user_id: UserIdDep, services: ServicesDep, chat_id: UUID
) -> SandboxSessionOut:
    return SandboxSessionOut.of(await services.get_sandbox_session(user_id, chat_id))


@router.delete(
    '',
    summary='End the sandbox session',
    description='Idempotent: `204` also when no session is active.',
    status_code=status.HTTP_204_NO_CONTENT,
    responses={204: {'description': 'Ended, or none was active'}},
)
async def end_sandbox(user_id: UserIdDep, services: ServicesDep, chat_id: UUID) -> Response:
    await services.end_sandbox_session(user_id, chat_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
