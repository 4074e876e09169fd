from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Body, Response, status

from api.dependencies import ServicesDep, UserIdDep
from api.problems import problem_responses
from api.schemas import SandboxSessionOut, SandboxStart

router = APIRouter(
    prefix='/v1/chats/{chat_id}/sandbox',
    tags=['sandbox'],
    responses=problem_responses(401, 404, 422),
)


@router.put(
    '',
    summary='Start or renew the sandbox session of a chat',
    description='`201` when a session started; `200` when the active session named by '
    '`sandbox_session_id` was renewed; `409` when another session is active. A session is '
    'active until it is ended or `expires_at` passes. The body may be empty.',
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {'model': SandboxSessionOut, 'description': 'Renewed'},
        **problem_responses(409),
    },
)
async def start_sandbox(
    user_id: UserIdDep,
    services: ServicesDep,
    chat_id: UUID,
    response: Response,
    body: Annotated[SandboxStart | None, Body()] = None,
) -> SandboxSessionOut:
    request = body or SandboxStart()
    started = await services.start_sandbox_session(
        user_id, chat_id, request.ttl_seconds, request.sandbox_session_id
    )
    response.status_code = status.HTTP_201_CREATED if started.started else status.HTTP_200_OK
    return SandboxSessionOut.of(started.session)


@router.get('', summary='The active sandbox session')
async def get_sandbox(
    user_id: UserIdDep, services: ServicesDep, chat_id: UUID
) -> SandboxSessionOut:
    return SandboxSessionOut.of(await services.get_sandbox_session(user_id, chat_id))


@router.delete('', summary='End the sandbox session', status_code=status.HTTP_204_NO_CONTENT)
async def end_sandbox(user_id: UserIdDep, services: ServicesDep, chat_id: UUID) -> Response:
    await services.end_sandbox_session(user_id, chat_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
