from fastapi import APIRouter, Response, status

from api.dependencies import ServicesDep, UserIdDep
from api.problems import problem_responses
from api.schemas import WorkspaceOut, WorkspaceUsageOut

router = APIRouter(prefix='/v1/workspace', tags=['workspace'], responses=problem_responses(401))


@router.put(
    '',
    summary='Ensure the caller has a workspace',
    description='Idempotent: `201` when the workspace was created, `200` when it existed.',
    responses={201: {'model': WorkspaceOut, 'description': 'Created'}},
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
    responses=problem_responses(404),
)
async def get_workspace(user_id: UserIdDep, services: ServicesDep) -> WorkspaceOut:
    return WorkspaceOut.of(await services.get_workspace(user_id))


@router.get(
    '/usage',
    summary='Used and allowed bytes',
    description='`used_bytes` counts every stored byte: all `history.md` files and attachments.',
    responses=problem_responses(404),
)
async def get_workspace_usage(user_id: UserIdDep, services: ServicesDep) -> WorkspaceUsageOut:
    return WorkspaceUsageOut.of(await services.get_workspace_usage(user_id))


@router.delete(
    '',
    summary='Delete the workspace with all chats and files',
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(404, 409),
)
async def delete_workspace(user_id: UserIdDep, services: ServicesDep) -> Response:
    await services.delete_workspace(user_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
