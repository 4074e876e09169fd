from fastapi import APIRouter, Response, status

from api.dependencies import ServicesDep, UserIdDep
from api.problems import problem_responses
from api.schemas import WorkspaceOut, WorkspaceUsageOut

router = APIRouter(
    prefix='/v1/workspace', tags=['workspace'], responses=problem_responses(401, 500, 503)
)


@router.put(
    '',
    summary='Ensure the caller has a workspace',
    description='Idempotent: `201` when the workspace was created, `200` when it existed.',
    responses={
        200: {'description': 'It existed already'},
        201: {'model': WorkspaceOut, 'description': 'Created, with the default quota'},
    },
)
async def ensure_workspace(
    user_id: UserIdDep, services: ServicesDep, response: Response
) -> WorkspaceOut:
    ensured = await services.ensure_workspace(user_id)
    response.status_code = status.HTTP_201_CREATED if ensured.created else status.HTTP_200_OK
    return WorkspaceOut.of(ensured.workspace)


@router.get(
    '',
    summary="The caller's workspace",
    response_description='The workspace',
    description='With its quota and the bytes used. `404 workspace_not_found` until '
    '`PUT /v1/workspace` created it.',
    responses=problem_responses('workspace_not_found'),
)
async def get_workspace(user_id: UserIdDep, services: ServicesDep) -> WorkspaceOut:
    return WorkspaceOut.of(await services.get_workspace(user_id))


@router.get(
    '/usage',
    summary='Used and allowed bytes',
    response_description='Used, allowed and available bytes',
    description='`used_bytes` counts every stored byte: all `history.md` files and attachments.',
    responses=problem_responses('workspace_not_found'),
)
async def get_workspace_usage(user_id: UserIdDep, services: ServicesDep) -> WorkspaceUsageOut:
    return WorkspaceUsageOut.of(await services.get_workspace_usage(user_id))


@router.delete(
    '',
    summary='Delete the workspace with all chats and files',
    description='Everything of the caller goes. `409 chat_has_active_sandbox` while any chat '
    'has an active sandbox session.',
    status_code=status.HTTP_204_NO_CONTENT,
    responses={
        204: {'description': 'Deleted'},
        **problem_responses('workspace_not_found', 'chat_has_active_sandbox'),
    },
)
async def delete_workspace(user_id: UserIdDep, services: ServicesDep) -> Response:
    await services.delete_workspace(user_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
